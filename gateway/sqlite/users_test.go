package sqlite

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
)

// userRecord returns a user record whose times and hash are derived from n.
func userRecord(name string, n int) gateway.UserRecord {
	at := t0.Add(time.Duration(n) * time.Second)
	return gateway.UserRecord{
		Username: name, Groups: []string{"reviewers"}, PasswordHash: fmt.Sprintf("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$%d", n),
		Created: at, Updated: at,
	}
}

// usersVersion returns the users version, failing the test on an error.
func usersVersion(t *testing.T, us gateway.UserStore) int64 {
	t.Helper()
	v, err := us.UsersVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestUserStore(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	us := db.Users()

	alice := userRecord("alice", 1)
	bob := userRecord("bob", 2)
	bob.Groups = nil
	carol := userRecord("carol", 3)
	carol.Groups = []string{"ops", "reviewers", "émoji-🔑", `quote"d`}
	dave := userRecord("dave", 4)
	disabledAt := t0.Add(time.Minute)
	dave.Disabled = &disabledAt

	t.Run("the users version starts at zero", func(t *testing.T) {
		if v := usersVersion(t, us); v != 0 {
			t.Errorf("UsersVersion = %d", v)
		}
	})
	t.Run("inserted users are listed by username with their groups and hashes", func(t *testing.T) {
		before := usersVersion(t, us)
		for _, r := range []gateway.UserRecord{dave, carol, bob, alice} {
			if err := us.InsertUser(ctx, r); err != nil {
				t.Fatal(err)
			}
			if v := usersVersion(t, us); v <= before {
				t.Errorf("version %d after an insert, was %d", v, before)
			} else {
				before = v
			}
		}
		got, err := us.Users(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantBob := bob
		wantBob.Groups = []string{} // nil groups come back empty
		if want := []gateway.UserRecord{alice, wantBob, carol, dave}; !reflect.DeepEqual(got, want) {
			t.Errorf("Users =\n%#v\nwant\n%#v", got, want)
		}
		for _, r := range got {
			if r.Created.Location() != time.UTC || r.Updated.Location() != time.UTC {
				t.Errorf("%s: times in %v, %v", r.Username, r.Created.Location(), r.Updated.Location())
			}
		}
	})
	t.Run("one user is read by username", func(t *testing.T) {
		got, err := us.User(ctx, "carol")
		if err != nil || !reflect.DeepEqual(got, carol) {
			t.Errorf("User = %#v, %v", got, err)
		}
	})
	t.Run("usernames are case-sensitive", func(t *testing.T) {
		if _, err := us.User(ctx, "Alice"); !errors.Is(err, gateway.ErrUserNotFound) {
			t.Errorf("User(Alice) = %v", err)
		}
	})

	t.Run("inserting a taken username is ErrUserExists and changes nothing", func(t *testing.T) {
		before := usersVersion(t, us)
		again := userRecord("alice", 99)
		if err := us.InsertUser(ctx, again); !errors.Is(err, gateway.ErrUserExists) {
			t.Errorf("InsertUser = %v", err)
		}
		if v := usersVersion(t, us); v != before {
			t.Errorf("version moved from %d to %d", before, v)
		}
		if got, _ := us.User(ctx, "alice"); got.PasswordHash != alice.PasswordHash {
			t.Errorf("hash replaced by %q", got.PasswordHash)
		}
	})

	later := t0.Add(time.Hour)
	tests := []struct {
		name    string
		op      func() error
		err     error
		changed bool
		check   func(gateway.UserRecord) bool
	}{
		{
			name:    "setting a password replaces the hash and the updated time",
			op:      func() error { return us.SetPassword(ctx, "alice", "$argon2id$new", later) },
			changed: true,
			check: func(r gateway.UserRecord) bool {
				return r.PasswordHash == "$argon2id$new" && r.Updated.Equal(later) && r.Created.Equal(alice.Created)
			},
		},
		{
			name:    "disabling sets the time and the updated time",
			op:      func() error { return us.SetDisabled(ctx, "alice", true, later.Add(time.Second)) },
			changed: true,
			check: func(r gateway.UserRecord) bool {
				return r.Disabled != nil && r.Disabled.Equal(later.Add(time.Second)) && r.Updated.Equal(later.Add(time.Second))
			},
		},
		{
			name: "disabling twice keeps the first time and changes nothing",
			op:   func() error { return us.SetDisabled(ctx, "alice", true, later.Add(time.Hour)) },
			check: func(r gateway.UserRecord) bool {
				return r.Disabled.Equal(later.Add(time.Second)) && r.Updated.Equal(later.Add(time.Second))
			},
		},
		{
			name:    "enabling clears the time",
			op:      func() error { return us.SetDisabled(ctx, "alice", false, later.Add(2*time.Second)) },
			changed: true,
			check: func(r gateway.UserRecord) bool {
				return r.Disabled == nil && r.Updated.Equal(later.Add(2*time.Second))
			},
		},
		{
			name:  "enabling an enabled user changes nothing",
			op:    func() error { return us.SetDisabled(ctx, "alice", false, later.Add(time.Hour)) },
			check: func(r gateway.UserRecord) bool { return r.Updated.Equal(later.Add(2 * time.Second)) },
		},
		{
			name:  "setting the password of an unknown user is ErrUserNotFound",
			op:    func() error { return us.SetPassword(ctx, "mallory", "$argon2id$x", later) },
			err:   gateway.ErrUserNotFound,
			check: func(r gateway.UserRecord) bool { return r.PasswordHash == "$argon2id$new" },
		},
		{
			name:  "disabling an unknown user is ErrUserNotFound",
			op:    func() error { return us.SetDisabled(ctx, "mallory", true, later) },
			err:   gateway.ErrUserNotFound,
			check: func(r gateway.UserRecord) bool { return r.Disabled == nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := usersVersion(t, us)
			if err := tt.op(); !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			if v := usersVersion(t, us); (v != before) != tt.changed {
				t.Errorf("version moved from %d to %d", before, v)
			}
			got, err := us.User(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(got) {
				t.Errorf("alice is now %v (hash %q)", got, got.PasswordHash)
			}
		})
	}

	t.Run("an unknown user is ErrUserNotFound", func(t *testing.T) {
		if _, err := us.User(ctx, "mallory"); !errors.Is(err, gateway.ErrUserNotFound) {
			t.Errorf("User = %v", err)
		}
	})
	t.Run("another handle on the file sees the changes and its own", func(t *testing.T) {
		other := openDB(t, db.Path(), Options{}).Users()
		if v1, v2 := usersVersion(t, us), usersVersion(t, other); v1 != v2 {
			t.Errorf("versions %d and %d", v1, v2)
		}
		before := usersVersion(t, us)
		if err := other.SetDisabled(ctx, "bob", true, later); err != nil {
			t.Fatal(err)
		}
		if v := usersVersion(t, us); v == before {
			t.Error("version unchanged by another handle's change")
		}
		if got, _ := us.User(ctx, "bob"); got.Disabled == nil {
			t.Errorf("bob = %v", got)
		}
	})
	t.Run("a read-only handle reads users and refuses writes", func(t *testing.T) {
		ro := openDB(t, db.Path(), Options{ReadOnly: true}).Users()
		if got, err := ro.Users(ctx); err != nil || len(got) != 4 {
			t.Errorf("Users = %d, %v", len(got), err)
		}
		for name, err := range map[string]error{
			"InsertUser":  ro.InsertUser(ctx, userRecord("erin", 5)),
			"SetPassword": ro.SetPassword(ctx, "alice", "x", later),
			"SetDisabled": ro.SetDisabled(ctx, "alice", true, later),
		} {
			if err == nil || !strings.Contains(err.Error(), "read-only") {
				t.Errorf("%s = %v", name, err)
			}
		}
	})
	t.Run("a cancelled context is an error", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := us.InsertUser(cctx, userRecord("erin", 5)); err == nil {
			t.Error("InsertUser succeeded")
		}
		if _, err := us.Users(cctx); err == nil {
			t.Error("Users succeeded")
		}
		if _, err := us.User(cctx, "alice"); err == nil || errors.Is(err, gateway.ErrUserNotFound) {
			t.Errorf("User = %v", err)
		}
	})
	t.Run("groups that are not a list of strings are an error naming the user", func(t *testing.T) {
		if _, err := db.w.ExecContext(ctx, "UPDATE users SET groups = '{}' WHERE username = 'carol'"); err != nil {
			t.Fatal(err)
		}
		if _, err := us.Users(ctx); err == nil || !strings.Contains(err.Error(), "carol") {
			t.Errorf("Users = %v", err)
		}
		if _, err := us.User(ctx, "carol"); err == nil || !strings.Contains(err.Error(), "carol") {
			t.Errorf("User = %v", err)
		}
	})
}

func TestUserWritesInterleaveWithTokenWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := openDB(t, dbPath(t), Options{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 10 {
				n := 10*i + j
				if err := db.Users().InsertUser(ctx, userRecord(fmt.Sprintf("user%02d", n), n)); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			for j := range 10 {
				n := 10*i + j
				if err := db.Tokens().InsertToken(ctx, tokenRecord(fmt.Sprintf("tok_%08x", n), n)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	users, err := db.Users().Users(ctx)
	if err != nil || len(users) != 40 {
		t.Errorf("%d users, %v", len(users), err)
	}
	// Each store bumps its own counter only.
	if v := usersVersion(t, db.Users()); v != 40 {
		t.Errorf("users version %d, want 40", v)
	}
	if v := version(t, db.Tokens()); v != 40 {
		t.Errorf("tokens version %d, want 40", v)
	}
}
