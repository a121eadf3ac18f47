package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/auth"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// cliRun is one run of the command line.
type cliRun struct {
	code           int
	stdout, stderr string
}

// runMain runs the command line with args and stdin, as the binary would.
func runMain(t *testing.T, stdin string, args ...string) cliRun {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(stdin), &stdout, &stderr)
	return cliRun{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// usersConfig writes a configuration whose database is in a temporary
// directory and returns its path and the database's.
func usersConfig(t *testing.T) (cfgPath, dbPath string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath = filepath.Join(dir, "sallyport.yaml")
	if err := os.WriteFile(cfgPath, []byte("database: users.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, filepath.Join(dir, "users.db")
}

// verifyUser checks a password as a gateway process would, with a fresh
// Users over its own handle on the database.
func verifyUser(t *testing.T, dbPath, username, password string) (gateway.Principal, bool) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), dbPath, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	users, err := auth.NewUsers(db.Users())
	if err != nil {
		t.Fatal(err)
	}
	return users.Verify(username, password)
}

func TestUsersCommand(t *testing.T) {
	cfg, dbPath := usersConfig(t)
	var password string

	t.Run("add generates a password and prints it once", func(t *testing.T) {
		r := runMain(t, "", "users", "add", "-c", cfg, "alice", "--groups", "reviewers, ops")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		password = strings.TrimSuffix(r.stdout, "\n")
		if len(password) != 20 || strings.ContainsAny(password, " \n") {
			t.Fatalf("stdout %q is not one generated password", r.stdout)
		}
		if !strings.Contains(r.stderr, "alice") || !strings.Contains(r.stderr, "only this once") || strings.Contains(r.stderr, password) {
			t.Errorf("stderr %q", r.stderr)
		}
	})
	t.Run("the generated password verifies as alice with her groups", func(t *testing.T) {
		p, ok := verifyUser(t, dbPath, "alice", password)
		want := gateway.Principal{ID: "alice", Groups: []string{"reviewers", "ops"}, TokenID: "user:alice"}
		if !ok || !reflect.DeepEqual(p, want) {
			t.Errorf("Verify = %+v, %v; want %+v", p, ok, want)
		}
	})
	t.Run("add reads a password from stdin, flags before the username", func(t *testing.T) {
		r := runMain(t, "bob's long password\n", "users", "add", "--db", dbPath, "--password-stdin", "bob")
		if r.code != 0 || r.stdout != "added bob\n" {
			t.Fatalf("exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
		}
		if _, ok := verifyUser(t, dbPath, "bob", "bob's long password"); !ok {
			t.Error("bob refused")
		}
	})
	t.Run("list shows the users without their hashes", func(t *testing.T) {
		r := runMain(t, "", "users", "list", "-c", cfg)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "USERNAME") ||
			!strings.HasPrefix(lines[1], "alice") || !strings.Contains(lines[1], "reviewers,ops") || !strings.HasPrefix(lines[2], "bob") {
			t.Errorf("list:\n%s", r.stdout)
		}
		if strings.Contains(r.stdout, "argon2") || strings.Contains(r.stdout, "$") || strings.Contains(r.stdout, password) {
			t.Errorf("list shows a hash or password:\n%s", r.stdout)
		}
	})
	t.Run("the database holds an argon2id hash, not the password", func(t *testing.T) {
		raw, err := os.ReadFile(dbPath)
		if err != nil {
			t.Fatal(err)
		}
		wal, _ := os.ReadFile(dbPath + "-wal")
		if bytes.Contains(append(raw, wal...), []byte(password)) {
			t.Error("the password is in the database file")
		}
		if !bytes.Contains(append(raw, wal...), []byte("$argon2id$v=19$m=65536,t=3,p=4$")) {
			t.Error("no argon2id hash in the database file")
		}
	})
	t.Run("passwd replaces the password", func(t *testing.T) {
		r := runMain(t, "alice's new password", "users", "passwd", "-c", cfg, "alice", "--password-stdin")
		if r.code != 0 || r.stdout != "changed the password of alice\n" {
			t.Fatalf("exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
		}
		if _, ok := verifyUser(t, dbPath, "alice", password); ok {
			t.Error("the old password is still accepted")
		}
		if _, ok := verifyUser(t, dbPath, "alice", "alice's new password"); !ok {
			t.Error("the new password is refused")
		}
	})
	t.Run("disable makes Verify refuse the right password", func(t *testing.T) {
		r := runMain(t, "", "users", "disable", "-c", cfg, "alice")
		if r.code != 0 || r.stdout != "disabled alice\n" {
			t.Fatalf("exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
		}
		if _, ok := verifyUser(t, dbPath, "alice", "alice's new password"); ok {
			t.Error("a disabled user is accepted")
		}
		list := runMain(t, "", "users", "list", "-c", cfg)
		if fields := strings.Fields(strings.Split(list.stdout, "\n")[1]); len(fields) != 5 {
			t.Errorf("alice's line has no disabled time:\n%s", list.stdout)
		}
	})
	t.Run("enable lets the user in again", func(t *testing.T) {
		if r := runMain(t, "", "users", "enable", "-c", cfg, "alice"); r.code != 0 || r.stdout != "enabled alice\n" {
			t.Fatalf("exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
		}
		if _, ok := verifyUser(t, dbPath, "alice", "alice's new password"); !ok {
			t.Error("an enabled user is refused")
		}
	})

	tests := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		stderr string
	}{
		{name: "users alone is a usage error", args: []string{"users"}, code: 2, stderr: "users needs add, list, passwd, disable or enable"},
		{name: "an unknown users command is a usage error", args: []string{"users", "remove", "-c", cfg, "alice"}, code: 2, stderr: `unknown users command "remove"`},
		{name: "add without a username is a usage error", args: []string{"users", "add", "-c", cfg}, code: 2, stderr: "users add needs one username"},
		{name: "add with two usernames is a usage error", args: []string{"users", "add", "-c", cfg, "carol", "dave"}, code: 2, stderr: "users add needs one username"},
		{name: "an unknown flag is a usage error", args: []string{"users", "add", "-c", cfg, "carol", "--admin"}, code: 2, stderr: "flag provided but not defined"},
		{name: "groups on passwd are a usage error", args: []string{"users", "passwd", "-c", cfg, "alice", "--groups", "x"}, code: 2, stderr: "--groups is for users add"},
		{name: "a password from stdin on disable is a usage error", args: []string{"users", "disable", "-c", cfg, "alice", "--password-stdin"}, code: 2, stderr: "--password-stdin is for users add and passwd"},
		{name: "list with a username is a usage error", args: []string{"users", "list", "-c", cfg, "alice"}, code: 2, stderr: "users list takes no username"},
		{name: "adding a taken username fails", args: []string{"users", "add", "-c", cfg, "alice"}, code: 1, stderr: "add user alice: user already exists"},
		{name: "adding an invalid username fails", args: []string{"users", "add", "-c", cfg, "al ice"}, code: 1, stderr: `invalid username "al ice"`},
		{name: "adding an invalid group fails", args: []string{"users", "add", "-c", cfg, "carol", "--groups", "a b"}, code: 1, stderr: `invalid group "a b"`},
		{name: "a short password fails", stdin: "eleven char\n", args: []string{"users", "add", "-c", cfg, "carol", "--password-stdin"}, code: 1, stderr: "password must have at least 12 characters"},
		{name: "an empty stdin fails", args: []string{"users", "passwd", "-c", cfg, "alice", "--password-stdin"}, code: 1, stderr: "no password given"},
		{name: "two lines on stdin fail", stdin: "a long password\nanother line\n", args: []string{"users", "passwd", "-c", cfg, "alice", "--password-stdin"}, code: 1, stderr: "control character"},
		{name: "passwd of an unknown user fails", stdin: "a long password", args: []string{"users", "passwd", "-c", cfg, "mallory", "--password-stdin"}, code: 1, stderr: "set password of mallory: no such user"},
		{name: "disabling an unknown user fails", args: []string{"users", "disable", "-c", cfg, "mallory"}, code: 1, stderr: "disable user mallory: no such user"},
		{name: "enabling an unknown user fails", args: []string{"users", "enable", "-c", cfg, "mallory"}, code: 1, stderr: "enable user mallory: no such user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runMain(t, tt.stdin, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("exit %d, stderr %q; want %d with %q", r.code, r.stderr, tt.code, tt.stderr)
			}
			if r.code == 1 && r.stdout != "" {
				t.Errorf("stdout %q on failure", r.stdout)
			}
		})
	}
	t.Run("the failures changed nothing", func(t *testing.T) {
		r := runMain(t, "", "users", "list", "-c", cfg)
		if n := strings.Count(r.stdout, "\n"); n != 3 {
			t.Errorf("list:\n%s", r.stdout)
		}
		if _, ok := verifyUser(t, dbPath, "alice", "alice's new password"); !ok {
			t.Error("alice's password changed")
		}
	})
}
