package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
)

// testParams are cheap argon2id parameters, so that tests run quickly;
// what they check does not depend on the cost.
var testParams = hashParams{memory: 64, time: 1, threads: 1, saltLen: 16, keyLen: 32}

// newUsers returns a Users over us with cheap parameters on a fake clock.
func newUsers(t *testing.T, us gateway.UserStore) (*Users, *clock) {
	t.Helper()
	u, err := NewUsers(us)
	if err != nil {
		t.Fatalf("NewUsers: %v", err)
	}
	c := newClock()
	u.now = c.now
	u.params = testParams
	u.nextCheck.Store(c.now().Add(checkInterval).UnixNano())
	return u, c
}

// add adds a user, failing the test on an error.
func add(t *testing.T, u *Users, username string, groups []string, password string) gateway.UserRecord {
	t.Helper()
	rec, err := u.Add(username, groups, password)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// countingStore counts the look-ups of single users, and fails every
// call while fail is set.
type countingStore struct {
	gateway.UserStore
	lookups atomic.Int64
	fail    atomic.Bool
}

var errUsersUnreadable = errors.New("store unreadable")

func (s *countingStore) User(ctx context.Context, username string) (gateway.UserRecord, error) {
	s.lookups.Add(1)
	if s.fail.Load() {
		return gateway.UserRecord{}, errUsersUnreadable
	}
	return s.UserStore.User(ctx, username)
}

func (s *countingStore) UsersVersion(ctx context.Context) (int64, error) {
	if s.fail.Load() {
		return 0, errUsersUnreadable
	}
	return s.UserStore.UsersVersion(ctx)
}

const (
	alicePassword = "correct horse battery"
	bobPassword   = "tr0ub4dor&3-staple"
)

func TestPasswordHashing(t *testing.T) {
	good := hashPassword(testParams, alicePassword)
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	with := func(i int, v string) string {
		p := strings.Split(good, "$")
		p[i] = v
		return strings.Join(p, "$")
	}
	// Another base64 character in the key's place 3 (XOR of two letters
	// could give a character outside the alphabet: a format error, not a
	// mismatch).
	flipped := []byte(key)
	if flipped[3] == 'A' {
		flipped[3] = 'B'
	} else {
		flipped[3] = 'A'
	}

	t.Run("a default hash is argon2id v19 with RFC 9106's second parameters in PHC format", func(t *testing.T) {
		h := hashPassword(defaultParams, alicePassword)
		re := regexp.MustCompile(`^\$argon2id\$v=19\$m=65536,t=3,p=4\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
		if !re.MatchString(h) {
			t.Errorf("hash %q", h)
		}
		if ok, err := verifyPassword(h, alicePassword); !ok || err != nil {
			t.Errorf("verifyPassword = %v, %v", ok, err)
		}
	})
	t.Run("two hashes of one password differ by their salt", func(t *testing.T) {
		if h := hashPassword(testParams, alicePassword); h == good || strings.Split(h, "$")[4] == salt {
			t.Errorf("%q and %q", h, good)
		}
	})

	tests := []struct {
		name     string
		hash     string
		password string
		match    bool
		err      bool
	}{
		{name: "the password matches its hash", hash: good, password: alicePassword, match: true},
		{name: "the parameters are read back from the string", hash: hashPassword(hashParams{memory: 128, time: 2, threads: 2, saltLen: 8, keyLen: 16}, alicePassword), password: alicePassword, match: true},
		{name: "a wrong password does not match", hash: good, password: bobPassword},
		{name: "a password differing in case does not match", hash: good, password: strings.ToUpper(alicePassword)},
		{name: "the empty password does not match", hash: good, password: ""},
		{name: "a changed byte of the hash does not match", hash: with(5, string(flipped)), password: alicePassword},
		{name: "another salt does not match", hash: with(4, "AAAAAAAAAAAAAAAAAAAAAA"), password: alicePassword},
		{name: "other parameters do not match", hash: with(3, "m=128,t=1,p=1"), password: alicePassword},
		{name: "argon2i is refused", hash: with(1, "argon2i"), password: alicePassword, err: true},
		{name: "argon2d is refused", hash: with(1, "argon2d"), password: alicePassword, err: true},
		{name: "version 16 is refused", hash: with(2, "v=16"), password: alicePassword, err: true},
		{name: "a missing version is refused", hash: "$argon2id$m=64,t=1,p=1$" + salt + "$" + key, password: alicePassword, err: true},
		{name: "an unknown parameter is refused", hash: with(3, "m=64,t=1,p=1,keyid=abc"), password: alicePassword, err: true},
		{name: "an unknown parameter instead of one is refused", hash: with(3, "m=64,t=1,x=1"), password: alicePassword, err: true},
		{name: "parameters in another order are refused", hash: with(3, "t=1,m=64,p=1"), password: alicePassword, err: true},
		{name: "a missing parameter is refused", hash: with(3, "m=64,t=1"), password: alicePassword, err: true},
		{name: "zero passes are refused", hash: with(3, "m=64,t=0,p=1"), password: alicePassword, err: true},
		{name: "zero lanes are refused", hash: with(3, "m=64,t=1,p=0"), password: alicePassword, err: true},
		{name: "less memory than 8 KiB a lane is refused", hash: with(3, "m=8,t=1,p=2"), password: alicePassword, err: true},
		{name: "more memory than the limit is refused", hash: with(3, "m=4194304,t=1,p=1"), password: alicePassword, err: true},
		{name: "more passes than the limit are refused", hash: with(3, "m=64,t=11,p=1"), password: alicePassword, err: true},
		{name: "more lanes than the limit are refused", hash: with(3, "m=256,t=1,p=17"), password: alicePassword, err: true},
		{name: "a number with a leading zero is refused", hash: with(3, "m=064,t=1,p=1"), password: alicePassword, err: true},
		{name: "a number with a sign is refused", hash: with(3, "m=+64,t=1,p=1"), password: alicePassword, err: true},
		{name: "a number past 32 bits is refused", hash: with(3, "m=4294967360,t=1,p=1"), password: alicePassword, err: true},
		{name: "padded base64 is refused", hash: with(5, key+"="), password: alicePassword, err: true},
		{name: "a line break in the base64 is refused", hash: with(5, key[:20]+"\n"+key[20:]), password: alicePassword, err: true},
		{name: "URL base64 is refused", hash: with(4, strings.Repeat("_", 22)), password: alicePassword, err: true},
		{name: "a salt shorter than 8 bytes is refused", hash: with(4, "AAAA"), password: alicePassword, err: true},
		{name: "a hash shorter than 16 bytes is refused", hash: with(5, key[:20]), password: alicePassword, err: true},
		{name: "an empty hash is refused", hash: with(5, ""), password: alicePassword, err: true},
		{name: "a trailing field is refused", hash: good + "$", password: alicePassword, err: true},
		{name: "a missing leading dollar is refused", hash: good[1:], password: alicePassword, err: true},
		{name: "an empty string is refused", hash: "", password: alicePassword, err: true},
		{name: "a token hash is refused", hash: strings.Repeat("ab", 32), password: alicePassword, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			match, err := verifyPassword(tt.hash, tt.password)
			if match != tt.match || (err != nil) != tt.err {
				t.Errorf("verifyPassword(%q) = %v, %v", tt.hash, match, err)
			}
		})
	}
}

func TestCheckPassword(t *testing.T) {
	tests := []struct {
		name     string
		password string
		err      string // "" when accepted
	}{
		{name: "twelve characters are enough", password: "abcdefghijkl"},
		{name: "twelve characters of several bytes each are enough", password: strings.Repeat("é", 12)},
		{name: "spaces and colons are allowed", password: "a long: pass phrase"},
		{name: "eleven characters are too short", password: "abcdefghijk", err: ErrPasswordTooShort.Error()},
		{name: "eleven characters of several bytes each are too short", password: strings.Repeat("🔑", 11), err: ErrPasswordTooShort.Error()},
		{name: "the empty password is too short", password: "", err: ErrPasswordTooShort.Error()},
		{name: "1024 bytes are allowed", password: strings.Repeat("a", 1024)},
		{name: "1025 bytes are too long", password: strings.Repeat("a", 1025), err: "longer than 1024 bytes"},
		{name: "a newline is refused", password: "abcdefghijkl\n", err: "control character"},
		{name: "a NUL is refused", password: "abcdef\x00ghijkl", err: "control character"},
		{name: "invalid UTF-8 is refused", password: "abcdefghijkl\xff", err: "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPassword(tt.password)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("checkPassword = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		p := GeneratePassword()
		if len(p) != generatedLen || strings.Trim(p, base58) != "" {
			t.Fatalf("password %q is not 20 base58 characters", p)
		}
		if err := checkPassword(p); err != nil {
			t.Fatalf("password %q: %v", p, err)
		}
		if seen[p] {
			t.Fatalf("password %q twice", p)
		}
		seen[p] = true
	}
	if len(base58) != 58 {
		t.Errorf("alphabet of %d characters", len(base58))
	}
}

func TestUsersAddAndVerify(t *testing.T) {
	store := &countingStore{UserStore: openDB(t, dbPath(t)).Users()}
	u, clk := newUsers(t, store)
	rec := add(t, u, "alice", []string{"reviewers", "ops"}, alicePassword)
	add(t, u, "bob", nil, bobPassword)
	add(t, u, "carol", nil, "carol's password")
	if err := u.Disable("carol"); err != nil {
		t.Fatal(err)
	}

	t.Run("the added record has no hash and the creation second", func(t *testing.T) {
		want := gateway.UserRecord{Username: "alice", Groups: []string{"reviewers", "ops"}, Created: clk.now().Truncate(time.Second), Updated: clk.now().Truncate(time.Second)}
		if !reflect.DeepEqual(rec, want) {
			t.Errorf("Add = %#v, want %#v", rec, want)
		}
	})
	t.Run("the stored hash is argon2id with the parameters in use", func(t *testing.T) {
		stored, err := store.User(context.Background(), "alice")
		if err != nil || !strings.HasPrefix(stored.PasswordHash, "$argon2id$v=19$m=64,t=1,p=1$") {
			t.Errorf("stored %q, %v", stored.PasswordHash, err)
		}
	})
	t.Run("List leaves the hashes out", func(t *testing.T) {
		list, err := u.List()
		if err != nil || len(list) != 3 {
			t.Fatalf("List = %v, %v", list, err)
		}
		for _, r := range list {
			if r.PasswordHash != "" {
				t.Errorf("%s: hash %q listed", r.Username, r.PasswordHash)
			}
		}
		if list[0].Username != "alice" || list[1].Groups == nil || list[2].Disabled == nil {
			t.Errorf("List = %v", list)
		}
	})

	alice := gateway.Principal{ID: "alice", Groups: []string{"reviewers", "ops"}, TokenID: "user:alice"}
	bob := gateway.Principal{ID: "bob", Groups: []string{}, TokenID: "user:bob"}
	tests := []struct {
		name     string
		username string
		password string
		want     *gateway.Principal
		hashes   int64 // argon2id computations
	}{
		{name: "the right password gives the user's principal", username: "alice", password: alicePassword, want: &alice, hashes: 1},
		{name: "the right password again is remembered", username: "alice", password: alicePassword, want: &alice, hashes: 0},
		{name: "a user without groups has none", username: "bob", password: bobPassword, want: &bob, hashes: 1},
		{name: "a wrong password is refused", username: "alice", password: bobPassword, hashes: 1},
		{name: "another user's password is refused", username: "bob", password: alicePassword, hashes: 1},
		{name: "the password with a trailing newline is refused", username: "alice", password: alicePassword + "\n", hashes: 1},
		{name: "an unknown user costs a hash and is refused", username: "mallory", password: alicePassword, hashes: 1},
		{name: "a disabled user costs a hash and is refused", username: "carol", password: "carol's password", hashes: 1},
		{name: "a username in other case is another, unknown user", username: "Alice", password: alicePassword, hashes: 1},
		{name: "a malformed username is refused without a hash", username: "alice:x", password: alicePassword},
		{name: "the empty username is refused without a hash", username: "", password: alicePassword},
		{name: "the empty password is refused without a hash", username: "alice", password: ""},
		{name: "an overlong password is refused without a hash", username: "alice", password: strings.Repeat("a", maxPasswordLen+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := hashed.Load()
			p, ok := u.Verify(tt.username, tt.password)
			if tt.want == nil && (ok || !reflect.DeepEqual(p, gateway.Principal{})) {
				t.Errorf("Verify = %+v, %v; want a refusal", p, ok)
			}
			if tt.want != nil && (!ok || !reflect.DeepEqual(p, *tt.want)) {
				t.Errorf("Verify = %+v, %v; want %+v", p, ok, *tt.want)
			}
			if n := hashed.Load() - before; n != tt.hashes {
				t.Errorf("%d hashes computed, want %d", n, tt.hashes)
			}
		})
	}

	t.Run("the principal's groups are a copy", func(t *testing.T) {
		p, _ := u.Verify("alice", alicePassword)
		p.Groups[0] = "admin"
		if p2, _ := u.Verify("alice", alicePassword); p2.Groups[0] != "reviewers" {
			t.Errorf("groups %v", p2.Groups)
		}
	})
	t.Run("a remembered verification expires after five minutes", func(t *testing.T) {
		before := store.lookups.Load()
		clk.advance(verifyTTL - time.Second)
		if _, ok := u.Verify("alice", alicePassword); !ok || store.lookups.Load() != before {
			t.Errorf("Verify = %v after %d look-ups", ok, store.lookups.Load()-before)
		}
		clk.advance(time.Second)
		if _, ok := u.Verify("alice", alicePassword); !ok || store.lookups.Load() != before+1 {
			t.Errorf("Verify = %v after %d look-ups", ok, store.lookups.Load()-before)
		}
	})
	t.Run("a stored hash that cannot be read costs a hash and is refused", func(t *testing.T) {
		if err := store.SetPassword(context.Background(), "bob", "$argon2id$v=19$m=64,t=0,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", clk.now()); err != nil {
			t.Fatal(err)
		}
		clk.advance(checkInterval)
		before := hashed.Load()
		if _, ok := u.Verify("bob", bobPassword); ok {
			t.Error("Verify succeeded")
		}
		if n := hashed.Load() - before; n != 1 {
			t.Errorf("%d hashes computed, want 1", n)
		}
	})
}

func TestUsersRefuseBadInput(t *testing.T) {
	u, _ := newUsers(t, openDB(t, dbPath(t)).Users())
	add(t, u, "alice", nil, alicePassword)
	tests := []struct {
		name string
		op   func() error
		is   error
		msg  string
	}{
		{name: "add / an invalid username", op: func() error { _, err := u.Add("al ice", nil, alicePassword); return err }, msg: `invalid username "al ice"`},
		{name: "add / a username with a colon", op: func() error { _, err := u.Add("al:ice", nil, alicePassword); return err }, msg: "invalid username"},
		{name: "add / an invalid group", op: func() error { _, err := u.Add("bob", []string{"ok", "b@d!"}, alicePassword); return err }, msg: `invalid group "b@d!"`},
		{name: "add / a short password", op: func() error { _, err := u.Add("bob", nil, "short"); return err }, is: ErrPasswordTooShort},
		{name: "add / a taken username", op: func() error { _, err := u.Add("alice", nil, bobPassword); return err }, is: gateway.ErrUserExists},
		{name: "set password / a short password", op: func() error { return u.SetPassword("alice", "short") }, is: ErrPasswordTooShort},
		{name: "set password / an unknown user", op: func() error { return u.SetPassword("mallory", bobPassword) }, is: gateway.ErrUserNotFound},
		{name: "disable / an unknown user", op: func() error { return u.Disable("mallory") }, is: gateway.ErrUserNotFound},
		{name: "enable / an unknown user", op: func() error { return u.Enable("mallory") }, is: gateway.ErrUserNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if err == nil || tt.is != nil && !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v, want %v %q", err, tt.is, tt.msg)
			}
		})
	}
	t.Run("nothing was stored and the password is unchanged", func(t *testing.T) {
		if list, _ := u.List(); len(list) != 1 {
			t.Errorf("List = %v", list)
		}
		if _, ok := u.Verify("alice", alicePassword); !ok {
			t.Error("alice refused")
		}
	})
}

func TestUsersChangesAreSeen(t *testing.T) {
	path := dbPath(t)
	// u serves the gateway; admin is `sallyport users` in another process.
	u, clk := newUsers(t, openDB(t, path).Users())
	admin, _ := newUsers(t, openDB(t, path).Users())
	add(t, admin, "alice", []string{"reviewers"}, alicePassword)
	add(t, admin, "bob", nil, bobPassword)
	verify := func(t *testing.T, username, password string, want bool) {
		t.Helper()
		if _, ok := u.Verify(username, password); ok != want {
			t.Errorf("Verify(%s) = %v, want %v", username, ok, want)
		}
	}
	verify(t, "alice", alicePassword, true) // remembered from now on

	t.Run("a user disabled by another process is refused within a second", func(t *testing.T) {
		if err := admin.Disable("alice"); err != nil {
			t.Fatal(err)
		}
		clk.advance(checkInterval)
		verify(t, "alice", alicePassword, false)
	})
	t.Run("a user enabled again by another process is accepted again", func(t *testing.T) {
		if err := admin.Enable("alice"); err != nil {
			t.Fatal(err)
		}
		verify(t, "alice", alicePassword, true)
	})
	t.Run("a password changed by another process is refused within a second, the new one accepted", func(t *testing.T) {
		verify(t, "alice", alicePassword, true)
		if err := admin.SetPassword("alice", bobPassword); err != nil {
			t.Fatal(err)
		}
		clk.advance(checkInterval)
		verify(t, "alice", alicePassword, false)
		verify(t, "alice", bobPassword, true)
	})
	t.Run("a change to another user drops what is remembered too", func(t *testing.T) {
		verify(t, "alice", bobPassword, true)
		before := hashed.Load()
		if err := admin.Disable("bob"); err != nil {
			t.Fatal(err)
		}
		clk.advance(checkInterval)
		verify(t, "alice", bobPassword, true)
		if hashed.Load() == before {
			t.Error("alice's verification was still remembered")
		}
	})
	t.Run("a user disabled through the same Users is refused at once", func(t *testing.T) {
		verify(t, "alice", bobPassword, true)
		if err := u.Disable("alice"); err != nil {
			t.Fatal(err)
		}
		verify(t, "alice", bobPassword, false)
	})
	t.Run("a password changed through the same Users is refused at once", func(t *testing.T) {
		if err := u.Enable("alice"); err != nil {
			t.Fatal(err)
		}
		verify(t, "alice", bobPassword, true)
		if err := u.SetPassword("alice", alicePassword); err != nil {
			t.Fatal(err)
		}
		verify(t, "alice", bobPassword, false)
		verify(t, "alice", alicePassword, true)
	})
}

func TestUsersUnreadableStoreFailsClosed(t *testing.T) {
	store := &countingStore{UserStore: openDB(t, dbPath(t)).Users()}
	u, clk := newUsers(t, store)
	add(t, u, "alice", nil, alicePassword)
	if _, ok := u.Verify("alice", alicePassword); !ok {
		t.Fatal("alice refused")
	}
	store.fail.Store(true)
	t.Run("a remembered user is refused once the version cannot be read", func(t *testing.T) {
		clk.advance(checkInterval)
		before := hashed.Load()
		if _, ok := u.Verify("alice", alicePassword); ok {
			t.Error("Verify succeeded")
		}
		if n := hashed.Load() - before; n != 1 {
			t.Errorf("%d hashes computed, want 1", n)
		}
	})
	t.Run("users are accepted again once the store can be read", func(t *testing.T) {
		store.fail.Store(false)
		if _, ok := u.Verify("alice", alicePassword); !ok {
			t.Error("Verify refused")
		}
	})
	t.Run("NewUsers over an unreadable store is an error", func(t *testing.T) {
		store.fail.Store(true)
		if _, err := NewUsers(store); !errors.Is(err, errUsersUnreadable) {
			t.Errorf("NewUsers = %v", err)
		}
	})
}

func TestUsersRememberABoundedNumber(t *testing.T) {
	u, clk := newUsers(t, openDB(t, dbPath(t)).Users())
	v := u.current()
	now := clk.now()
	for i := range 2 * maxVerified {
		u.remember(v, u.cacheKey(fmt.Sprint("user", i), alicePassword), gateway.Principal{ID: "x"}, now)
		if i == maxVerified/2 {
			clk.advance(verifyTTL) // the first half has expired
			now = clk.now()
		}
	}
	if n := len(v.entries); n > maxVerified || n < maxVerified/2 {
		t.Errorf("%d remembered", n)
	}
	t.Run("expired ones are dropped first", func(t *testing.T) {
		for i := range maxVerified / 2 {
			if _, ok := v.entries[u.cacheKey(fmt.Sprint("user", i), alicePassword)]; ok {
				t.Fatalf("user%d still remembered", i)
			}
		}
	})
	t.Run("keys differ where the NUL separates username and password", func(t *testing.T) {
		if u.cacheKey("ab", "c") == u.cacheKey("a", "bc") {
			t.Error("same key")
		}
		other, _ := newUsers(t, openDB(t, dbPath(t)).Users())
		if u.cacheKey("a", "b") == other.cacheKey("a", "b") {
			t.Error("two processes share a key")
		}
	})
}

func TestUsersConcurrentUse(t *testing.T) {
	path := dbPath(t)
	u, clk := newUsers(t, openDB(t, path).Users())
	admin, _ := newUsers(t, openDB(t, path).Users())
	for i := range 4 {
		add(t, admin, fmt.Sprint("user", i), []string{"reviewers"}, fmt.Sprintf("password number %d", i))
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 20 {
				p, ok := u.Verify(fmt.Sprint("user", i), fmt.Sprintf("password number %d", i))
				if ok && p.ID != fmt.Sprint("user", i) {
					t.Errorf("Verify(user%d) = %+v", i, p)
				}
				if j%5 == 0 {
					clk.advance(checkInterval)
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if err := admin.Disable("user0"); err != nil {
				t.Error(err)
			}
			if err := admin.Enable("user0"); err != nil {
				t.Error(err)
			}
		}
		if err := admin.Disable("user0"); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	clk.advance(checkInterval)
	if _, ok := u.Verify("user0", "password number 0"); ok {
		t.Error("disabled user0 accepted after the changes settled")
	}
	if _, ok := u.Verify("user1", "password number 1"); !ok {
		t.Error("user1 refused")
	}
}

func TestUserRecordNeverPrintsTheHash(t *testing.T) {
	disabled := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	r := gateway.UserRecord{Username: "alice", Groups: []string{"reviewers"}, PasswordHash: hashPassword(testParams, alicePassword),
		Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Updated: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), Disabled: &disabled}
	secret := strings.Split(r.PasswordHash, "$")[5]
	var logged, text bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("user", "rec", r)
	slog.New(slog.NewTextHandler(&text, nil)).Info("user", "rec", &r, "recs", []gateway.UserRecord{r})
	outputs := map[string]string{
		"Sprint": fmt.Sprint(r), "%v": fmt.Sprintf("%v", r), "%+v": fmt.Sprintf("%+v", r), "%#v": fmt.Sprintf("%#v", r),
		//lint:ignore S1025 the %s verb itself is what is under test
		"%s": fmt.Sprintf("%s", r), "pointer": fmt.Sprint(&r), "slice": fmt.Sprint([]gateway.UserRecord{r}), "%+v slice": fmt.Sprintf("%+v", []gateway.UserRecord{r}),
		"slog JSON": logged.String(), "slog text": text.String(),
	}
	for name, out := range outputs {
		t.Run(name+" leaves the hash out", func(t *testing.T) {
			if strings.Contains(out, secret) || strings.Contains(out, "argon2id") {
				t.Errorf("output shows the hash: %s", out)
			}
			if !strings.Contains(out, "alice") || !strings.Contains(out, "reviewers") {
				t.Errorf("output lacks username or groups: %s", out)
			}
		})
	}
	t.Run("String describes the record", func(t *testing.T) {
		if want := "alice groups=[reviewers] created=2026-01-01T00:00:00Z updated=2026-01-02T00:00:00Z disabled=2026-02-01T00:00:00Z"; r.String() != want {
			t.Errorf("String() = %q, want %q", r.String(), want)
		}
	})
}

// FuzzParseHash checks that no stored string makes parsing or verifying
// panic, and that every string accepted is one hashPassword could have
// written: the parser is exact.
func FuzzParseHash(f *testing.F) {
	good := hashPassword(testParams, alicePassword)
	f.Add(good)
	f.Add(hashPassword(hashParams{memory: 128, time: 2, threads: 2, saltLen: 8, keyLen: 16}, alicePassword))
	f.Add(strings.Replace(good, "t=1", "t=0", 1))
	f.Add(strings.Replace(good, "p=1", "p=0", 1))
	f.Add(strings.Replace(good, "m=64", "m=4294967295", 1))
	f.Add(strings.Replace(good, "argon2id", "argon2i", 1))
	f.Add(good + "$")
	f.Add("")
	f.Add("$argon2id$v=19$m=10,t=1,p=1$00000000000$000000000000000000\r00000")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := parseHash(s)
		if err != nil {
			return
		}
		again := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.memory, p.time, p.threads, b64.EncodeToString(salt), b64.EncodeToString(key))
		if again != s {
			t.Fatalf("parsed %q, which writes back as %q", s, again)
		}
		if p.time < 1 || p.threads < 1 || p.memory < 8*uint32(p.threads) || p.memory > maxMemory || p.time > maxTime || p.threads > maxThreads {
			t.Fatalf("parameters %+v accepted", p)
		}
		if p.memory <= 1024 && p.time <= 2 {
			verifyPassword(s, alicePassword)
		}
	})
}

func TestReservedUsernames(t *testing.T) {
	u, _ := newUsers(t, openDB(t, dbPath(t)).Users())
	for _, name := range []string{"sallyport", "Sallyport", "anonymous", "system"} {
		if _, err := u.Add(name, []string{"reviewers"}, "a long enough password"); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("Add(%q) = %v, want a reserved-name error", name, err)
		}
	}
}
