package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// clock is a fake time source that is safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// dbPath returns the path of a new database in a temporary directory.
func dbPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "sallyport.db")
}

// openDB opens a real SQLite database at path, as one process would.
func openDB(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newStore returns a Store over ts on a fake clock.
func newStore(t *testing.T, ts gateway.TokenStore) (*Store, *clock) {
	t.Helper()
	s, err := New(ts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c := newClock()
	s.now = c.now
	s.nextCheck.Store(c.now().Add(checkInterval).UnixNano())
	return s, c
}

// openStore opens a database at path and a Store over it.
func openStore(t *testing.T, path string) (*Store, *clock) {
	t.Helper()
	return newStore(t, openDB(t, path).Tokens())
}

// rawDB opens path with the plain sqlite3 driver, as a person tampering
// with the file would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// tokenFor returns a well-formed token made from n and its hash.
func tokenFor(n byte) (token, hash string) {
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{n}, tokenBytes))
	sum := sha256.Sum256([]byte(token))
	return token, hex.EncodeToString(sum[:])
}

func TestCreateAuthenticateRevoke(t *testing.T) {
	s, clk := openStore(t, dbPath(t))
	token, rec, err := s.Create("alice", []string{"dev", "ops"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the token is spt_ and 32 random bytes in base64url", func(t *testing.T) {
		raw, ok := strings.CutPrefix(token, "spt_")
		if !ok {
			t.Fatalf("token %q lacks the spt_ prefix", token)
		}
		b, err := base64.RawURLEncoding.DecodeString(raw)
		if err != nil || len(b) != 32 {
			t.Fatalf("token body decodes to %d bytes, %v", len(b), err)
		}
		if !wellFormed(token) {
			t.Error("a created token is not well-formed")
		}
	})
	t.Run("the record holds the hash of the token and the creation second", func(t *testing.T) {
		sum := sha256.Sum256([]byte(token))
		if rec.Hash != hex.EncodeToString(sum[:]) {
			t.Errorf("hash = %s", rec.Hash)
		}
		if !idRE.MatchString(rec.ID) || rec.Principal != "alice" || !reflect.DeepEqual(rec.Groups, []string{"dev", "ops"}) || rec.Revoked != nil {
			t.Errorf("record = %#v", rec)
		}
		if want := clk.now().Truncate(time.Second); !rec.Created.Equal(want) {
			t.Errorf("created %v, want %v", rec.Created, want)
		}
	})
	t.Run("the stored record is the one returned", func(t *testing.T) {
		if got := s.List(); !reflect.DeepEqual(got, []Record{rec}) || got[0].Hash != rec.Hash {
			t.Errorf("List = %#v, want %#v", got, rec)
		}
	})
	t.Run("the token authenticates as its principal at once", func(t *testing.T) {
		p, ok := s.Authenticate(token)
		want := gateway.Principal{ID: "alice", Groups: []string{"dev", "ops"}, TokenID: rec.ID}
		if !ok || !reflect.DeepEqual(p, want) {
			t.Errorf("Authenticate = %+v, %v; want %+v", p, ok, want)
		}
	})
	t.Run("the principal's groups are a copy", func(t *testing.T) {
		p, _ := s.Authenticate(token)
		p.Groups[0] = "admin"
		if p2, _ := s.Authenticate(token); p2.Groups[0] != "dev" {
			t.Errorf("groups changed to %q", p2.Groups)
		}
	})
	t.Run("another token of the same shape fails", func(t *testing.T) {
		other, _ := tokenFor(1)
		if p, ok := s.Authenticate(other); ok {
			t.Errorf("Authenticate(other) = %+v", p)
		}
	})
	t.Run("the hash itself is not a token", func(t *testing.T) {
		if p, ok := s.Authenticate(rec.Hash); ok {
			t.Errorf("Authenticate(hash) = %+v", p)
		}
	})
	t.Run("a second token has its own id and empty groups", func(t *testing.T) {
		clk.advance(time.Second) // listed after alice's, which is older
		token2, rec2, err := s.Create("bob", nil)
		if err != nil {
			t.Fatal(err)
		}
		if rec2.ID == rec.ID || token2 == token || rec2.Groups == nil || len(rec2.Groups) != 0 {
			t.Errorf("second record = %#v", rec2)
		}
		if p, ok := s.Authenticate(token2); !ok || p.ID != "bob" || p.TokenID != rec2.ID || len(p.Groups) != 0 {
			t.Errorf("Authenticate(token2) = %+v, %v", p, ok)
		}
	})
	revokedAt := clk.now().Truncate(time.Second)
	t.Run("a revoked token fails at once in the store that revoked it", func(t *testing.T) {
		if err := s.Revoke(rec.ID); err != nil {
			t.Fatal(err)
		}
		if p, ok := s.Authenticate(token); ok {
			t.Errorf("Authenticate after Revoke = %+v", p)
		}
		list := s.List()
		if len(list) != 2 || list[0].ID != rec.ID || list[0].Revoked == nil || !list[0].Revoked.Equal(revokedAt) || list[1].Revoked != nil {
			t.Errorf("List = %v", list)
		}
	})
	t.Run("revoking twice keeps the first revocation time", func(t *testing.T) {
		clk.advance(time.Hour)
		if err := s.Revoke(rec.ID); err != nil {
			t.Fatal(err)
		}
		if after := *s.List()[0].Revoked; !after.Equal(revokedAt) {
			t.Errorf("revoked time moved from %v to %v", revokedAt, after)
		}
	})
	t.Run("revoking an unknown id is ErrNotFound", func(t *testing.T) {
		err := s.Revoke("tok_00000000")
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "revoke token tok_00000000") {
			t.Errorf("Revoke = %v", err)
		}
	})
	t.Run("List returns copies", func(t *testing.T) {
		l := s.List()
		l[0].Groups[0] = "admin"
		l[1].Groups = append(l[1].Groups, "x")
		l[1].Principal = "mallory"
		if got := s.List(); got[0].Groups[0] != "dev" || got[1].Principal != "bob" || len(got[1].Groups) != 0 {
			t.Errorf("List shares state: %v", got)
		}
	})
	t.Run("no warnings", func(t *testing.T) {
		if w := s.Warnings(); len(w) != 0 {
			t.Errorf("Warnings = %q", w)
		}
	})
}

func TestAuthenticateRefusesMalformedTokens(t *testing.T) {
	s, _ := openStore(t, dbPath(t))
	valid, _, err := s.Create("alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
	}{
		{name: "empty", token: ""},
		{name: "the prefix alone", token: "spt_"},
		{name: "a token with the Bearer scheme left on", token: "Bearer " + valid},
		{name: "a wrong prefix", token: "spx_" + valid[4:]},
		{name: "an upper-case prefix", token: "SPT_" + valid[4:]},
		{name: "one character short", token: valid[:len(valid)-1]},
		{name: "one character long", token: valid + "A"},
		{name: "padding", token: valid[:len(valid)-1] + "="},
		{name: "standard base64 characters", token: valid[:len(valid)-1] + "+"},
		{name: "a slash", token: valid[:len(valid)-1] + "/"},
		{name: "surrounding space", token: " " + valid[:len(valid)-1]},
		{name: "a trailing newline", token: valid[:len(valid)-1] + "\n"},
		{name: "a NUL byte", token: valid[:len(valid)-1] + "\x00"},
		{name: "a non-ASCII letter", token: valid[:len(valid)-2] + "é"},
	}
	for _, tt := range tests {
		t.Run("a malformed token fails: "+tt.name, func(t *testing.T) {
			// Even a record for exactly this string must not match: the
			// shape is checked before any lookup.
			sum := sha256.Sum256([]byte(tt.token))
			snap := s.snap.Load()
			recs := append(append([]Record(nil), snap.records...), Record{ID: "tok_ffffffff", Principal: "mallory", Hash: hex.EncodeToString(sum[:])})
			s.snap.Store(newSnapshot(snap.version, recs))
			defer s.snap.Store(snap)
			if p, ok := s.Authenticate(tt.token); ok {
				t.Errorf("Authenticate(%q) = %+v", tt.token, p)
			}
		})
	}
	t.Run("the valid token still works", func(t *testing.T) {
		if _, ok := s.Authenticate(valid); !ok {
			t.Error("valid token refused")
		}
	})
}

func TestCreateRefusesBadNames(t *testing.T) {
	s, _ := openStore(t, dbPath(t))
	tests := []struct {
		name      string
		principal string
		groups    []string
	}{
		{name: "an empty principal", principal: ""},
		{name: "a principal with a space", principal: "alice smith"},
		{name: "a principal with a newline", principal: "alice\nadmin"},
		{name: "a principal starting with a dot", principal: ".alice"},
		{name: "a principal of 129 characters", principal: strings.Repeat("a", 129)},
		{name: "a principal in unicode", principal: "alicé"},
		{name: "an empty group", principal: "alice", groups: []string{""}},
		{name: "a group with a comma", principal: "alice", groups: []string{"a,b"}},
		{name: "a bad group after a good one", principal: "alice", groups: []string{"dev", "ops team"}},
	}
	for _, tt := range tests {
		t.Run("Create refuses "+tt.name, func(t *testing.T) {
			token, rec, err := s.Create(tt.principal, tt.groups)
			if err == nil || !strings.Contains(err.Error(), "create token: invalid") {
				t.Errorf("Create = %v", err)
			}
			if token != "" || rec.ID != "" {
				t.Errorf("Create returned %q, %v", token, rec)
			}
		})
	}
	if got := s.List(); len(got) != 0 {
		t.Errorf("List = %v", got)
	}
	for _, p := range []string{"alice", "alice@example.com", "svc_1.build+ci=x", strings.Repeat("a", 128), "0"} {
		t.Run("Create accepts the principal "+p[:min(len(p), 20)], func(t *testing.T) {
			if _, _, err := s.Create(p, []string{p}); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestReloadFromAnotherStore(t *testing.T) {
	path := dbPath(t)
	gw, clk := openStore(t, path) // the running gateway
	cli, _ := openStore(t, path)  // `sallyport tokens create` in another process
	raw := rawDB(t, path)         // someone editing the file
	bump := func(t *testing.T) {
		t.Helper()
		if _, err := raw.Exec("UPDATE counters SET value = value + 1 WHERE name = 'tokens_version'"); err != nil {
			t.Fatal(err)
		}
	}

	token, rec, err := cli.Create("alice", []string{"dev"})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a new token is not looked for more than once a second", func(t *testing.T) {
		clk.advance(checkInterval - time.Nanosecond)
		if _, ok := gw.Authenticate(token); ok {
			t.Fatal("the gateway looked at the store before a second passed")
		}
	})
	t.Run("a new token is seen once a second has passed", func(t *testing.T) {
		clk.advance(time.Nanosecond)
		if p, ok := gw.Authenticate(token); !ok || p.ID != "alice" || p.TokenID != rec.ID {
			t.Fatalf("Authenticate = %+v, %v", p, ok)
		}
	})
	if err := cli.Revoke(rec.ID); err != nil {
		t.Fatal(err)
	}
	t.Run("a revocation reaches a valid token within a second", func(t *testing.T) {
		if _, ok := gw.Authenticate(token); !ok {
			t.Fatal("the gateway looked at the store again before a second passed")
		}
		clk.advance(checkInterval)
		if p, ok := gw.Authenticate(token); ok {
			t.Fatalf("revoked token still authenticates: %+v", p)
		}
		if l := gw.List(); len(l) != 1 || l[0].Revoked == nil {
			t.Errorf("List = %v", l)
		}
	})
	t.Run("an unchanged store is not read again", func(t *testing.T) {
		before := gw.snap.Load()
		clk.advance(checkInterval)
		gw.Authenticate(token)
		if gw.snap.Load() != before {
			t.Error("snapshot replaced although the tokens version did not change")
		}
	})
	t.Run("a store that turns malformed fails closed and recovers when fixed", func(t *testing.T) {
		token2, rec2, err := cli.Create("bob", nil)
		if err != nil {
			t.Fatal(err)
		}
		clk.advance(checkInterval)
		if _, ok := gw.Authenticate(token2); !ok {
			t.Fatal("token2 not seen")
		}
		if _, err := raw.Exec("UPDATE tokens SET hash = 'XYZ' WHERE id = ?", rec.ID); err != nil {
			t.Fatal(err)
		}
		bump(t)
		clk.advance(checkInterval)
		if p, ok := gw.Authenticate(token2); ok {
			t.Fatalf("Authenticate with a malformed store = %+v", p)
		}
		if w := gw.Warnings(); len(w) != 1 || !strings.Contains(w[0], "refusing every token") || !strings.Contains(w[0], "malformed hash") {
			t.Errorf("Warnings = %q", w)
		}
		if l := gw.List(); len(l) != 0 {
			t.Errorf("List while failing closed = %v", l)
		}
		if _, err := raw.Exec("UPDATE tokens SET hash = ? WHERE id = ?", rec.Hash, rec.ID); err != nil {
			t.Fatal(err)
		}
		bump(t)
		clk.advance(checkInterval)
		if p, ok := gw.Authenticate(token2); !ok || p.TokenID != rec2.ID {
			t.Fatal("token2 not accepted after the store was fixed")
		}
		if w := gw.Warnings(); len(w) != 0 {
			t.Errorf("Warnings after the fix = %q", w)
		}
	})
	t.Run("a token deleted from the store is refused", func(t *testing.T) {
		if _, err := raw.Exec("DELETE FROM tokens"); err != nil {
			t.Fatal(err)
		}
		bump(t)
		clk.advance(checkInterval)
		if got := gw.List(); len(got) != 0 {
			t.Errorf("List = %v", got)
		}
	})
}

// flakyStore is a real token store that can be made to fail reads.
type flakyStore struct {
	gateway.TokenStore
	fail atomic.Bool
}

var errUnreadable = errors.New("disk I/O error")

func (f *flakyStore) TokensVersion(ctx context.Context) (int64, error) {
	if f.fail.Load() {
		return 0, errUnreadable
	}
	return f.TokenStore.TokensVersion(ctx)
}

func (f *flakyStore) Tokens(ctx context.Context) ([]gateway.TokenRecord, error) {
	if f.fail.Load() {
		return nil, errUnreadable
	}
	return f.TokenStore.Tokens(ctx)
}

func TestUnreadableStoreFailsClosed(t *testing.T) {
	t.Run("New over an unreadable store is an error", func(t *testing.T) {
		fs := &flakyStore{TokenStore: openDB(t, dbPath(t)).Tokens()}
		fs.fail.Store(true)
		if s, err := New(fs); !errors.Is(err, errUnreadable) || s != nil {
			t.Errorf("New = %v, %v", s, err)
		}
	})
	t.Run("every token is refused while the store cannot be read, and accepted again after", func(t *testing.T) {
		fs := &flakyStore{TokenStore: openDB(t, dbPath(t)).Tokens()}
		s, clk := newStore(t, fs)
		token, _, err := s.Create("alice", nil)
		if err != nil {
			t.Fatal(err)
		}
		fs.fail.Store(true)
		if _, ok := s.Authenticate(token); !ok {
			t.Fatal("the store was read before a second passed")
		}
		clk.advance(checkInterval)
		if p, ok := s.Authenticate(token); ok {
			t.Fatalf("Authenticate with an unreadable store = %+v", p)
		}
		if w := s.Warnings(); len(w) != 1 || !strings.Contains(w[0], errUnreadable.Error()) || !strings.Contains(w[0], "refusing every token") {
			t.Errorf("Warnings = %q", w)
		}
		fs.fail.Store(false)
		clk.advance(checkInterval)
		if _, ok := s.Authenticate(token); !ok {
			t.Error("token refused after the store became readable")
		}
		if w := s.Warnings(); len(w) != 0 {
			t.Errorf("Warnings = %q", w)
		}
	})
	t.Run("a closed database fails closed", func(t *testing.T) {
		db := openDB(t, dbPath(t))
		s, clk := newStore(t, db.Tokens())
		token, _, err := s.Create("alice", nil)
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		clk.advance(checkInterval)
		if p, ok := s.Authenticate(token); ok {
			t.Fatalf("Authenticate with a closed database = %+v", p)
		}
		if _, _, err := s.Create("bob", nil); err == nil {
			t.Error("Create succeeded on a closed database")
		}
	})
}

func TestImport(t *testing.T) {
	s, clk := openStore(t, dbPath(t))
	created := time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)
	token1, hash1 := tokenFor(1)
	rec1 := Record{ID: "tok_00000001", Principal: "alice", Groups: []string{"dev"}, Hash: hash1, Created: created}

	t.Run("an imported record authenticates its token", func(t *testing.T) {
		added, err := s.Import(rec1)
		if err != nil || !added {
			t.Fatalf("Import = %v, %v", added, err)
		}
		if p, ok := s.Authenticate(token1); !ok || p.ID != "alice" || p.TokenID != rec1.ID {
			t.Errorf("Authenticate = %+v, %v", p, ok)
		}
		if got := s.List(); !reflect.DeepEqual(got, []Record{rec1}) {
			t.Errorf("List = %#v", got)
		}
	})
	t.Run("importing the same record again is skipped", func(t *testing.T) {
		added, err := s.Import(rec1)
		if err != nil || added {
			t.Errorf("Import = %v, %v", added, err)
		}
	})
	t.Run("another store skips a record it has not seen yet", func(t *testing.T) {
		// A second process importing the same legacy file: its snapshot
		// predates the first's import.
		path := dbPath(t)
		a, _ := openStore(t, path)
		b, _ := openStore(t, path)
		if added, err := a.Import(rec1); err != nil || !added {
			t.Fatalf("first Import = %v, %v", added, err)
		}
		if added, err := b.Import(rec1); err != nil || added {
			t.Errorf("second Import = %v, %v", added, err)
		}
	})
	_, hash2 := tokenFor(2)
	for _, tt := range []struct {
		name string
		rec  Record
	}{
		{name: "a stored id with another hash", rec: Record{ID: rec1.ID, Principal: "alice", Hash: hash2, Created: created}},
		{name: "a stored hash under another id", rec: Record{ID: "tok_00000002", Principal: "mallory", Hash: hash1, Created: created}},
	} {
		t.Run("importing "+tt.name+" is ErrTokenExists", func(t *testing.T) {
			added, err := s.Import(tt.rec)
			if added || !errors.Is(err, gateway.ErrTokenExists) || !strings.Contains(err.Error(), tt.rec.ID) {
				t.Errorf("Import = %v, %v", added, err)
			}
			if strings.Contains(fmt.Sprint(err), tt.rec.Hash) {
				t.Errorf("error shows the hash: %v", err)
			}
		})
	}
	t.Run("a revoked record is imported revoked", func(t *testing.T) {
		token3, hash3 := tokenFor(3)
		revoked := created.Add(time.Hour)
		added, err := s.Import(Record{ID: "tok_00000003", Principal: "bob", Hash: hash3, Created: created, Revoked: &revoked})
		if err != nil || !added {
			t.Fatalf("Import = %v, %v", added, err)
		}
		if p, ok := s.Authenticate(token3); ok {
			t.Errorf("revoked import authenticates: %+v", p)
		}
		l := s.List()
		if len(l) != 2 || l[1].ID != "tok_00000003" || l[1].Revoked == nil || !l[1].Revoked.Equal(revoked) {
			t.Errorf("List = %v", l)
		}
	})
	t.Run("importing a revocation of a stored token takes effect at once", func(t *testing.T) {
		revoked := created.Add(2 * time.Hour)
		r := rec1
		r.Revoked = &revoked
		added, err := s.Import(r)
		if err != nil || added {
			t.Fatalf("Import = %v, %v", added, err)
		}
		// The clock has not moved: the store must not wait for its next
		// check to refuse the token.
		if p, ok := s.Authenticate(token1); ok {
			t.Errorf("token revoked by import still authenticates: %+v", p)
		}
		clk.advance(checkInterval)
		if l := s.List(); l[0].Revoked == nil || !l[0].Revoked.Equal(revoked) {
			t.Errorf("List = %v", l)
		}
	})

	valid := Record{ID: "tok_0000000a", Principal: "carol", Groups: []string{}, Hash: hash2, Created: created}
	bad := []struct {
		name string
		edit func(r *Record)
		err  string
	}{
		{name: "an id without the tok_ prefix", edit: func(r *Record) { r.ID = "0000000a" }, err: "invalid id"},
		{name: "an id with upper-case hex", edit: func(r *Record) { r.ID = "tok_0000000A" }, err: "invalid id"},
		{name: "an id too long", edit: func(r *Record) { r.ID = "tok_0000000aa" }, err: "invalid id"},
		{name: "an empty hash", edit: func(r *Record) { r.Hash = "" }, err: "hash must be"},
		{name: "an upper-case hash", edit: func(r *Record) { r.Hash = strings.ToUpper(hash2) }, err: "hash must be"},
		{name: "a short hash", edit: func(r *Record) { r.Hash = hash2[:62] }, err: "hash must be"},
		{name: "a bad principal", edit: func(r *Record) { r.Principal = "carol smith" }, err: "invalid principal"},
		{name: "a bad group", edit: func(r *Record) { r.Groups = []string{"dev", ""} }, err: "invalid group"},
	}
	for _, tt := range bad {
		t.Run("importing "+tt.name+" is refused", func(t *testing.T) {
			r := valid
			tt.edit(&r)
			added, err := s.Import(r)
			if added || err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Import = %v, %v; want %q", added, err, tt.err)
			}
		})
	}
	t.Run("nothing refused was stored", func(t *testing.T) {
		if l := s.List(); len(l) != 2 {
			t.Errorf("List = %v", l)
		}
	})
}

func TestReadLegacyFile(t *testing.T) {
	_, hash1 := tokenFor(1)
	_, hash2 := tokenFor(2)
	entry := func(id, principal, groups, hash string) string {
		return fmt.Sprintf(`{"id":%q,"principal":%q,"groups":%s,"hash":%q,"created":"2026-01-01T00:00:00Z"}`, id, principal, groups, hash)
	}
	good := `{"version":1,"tokens":[` + entry("tok_00000001", "alice", `["dev","ops"]`, hash1) + `,` +
		`{"id":"tok_00000002","principal":"bob","groups":null,"hash":"` + hash2 + `","created":"2026-01-01T00:00:00+02:00","revoked":"2026-02-01T12:30:00Z"}` + "]}\n"
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	revoked := time.Date(2026, 2, 1, 12, 30, 0, 0, time.UTC)

	t.Run("a good file yields its records", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tokens.json")
		if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
			t.Fatal(err)
		}
		recs, err := ReadLegacyFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 {
			t.Fatalf("%d records", len(recs))
		}
		if r := recs[0]; r.ID != "tok_00000001" || r.Principal != "alice" || !reflect.DeepEqual(r.Groups, []string{"dev", "ops"}) ||
			r.Hash != hash1 || !r.Created.Equal(created) || r.Revoked != nil {
			t.Errorf("record 0 = %#v", r)
		}
		if r := recs[1]; r.ID != "tok_00000002" || r.Groups == nil || len(r.Groups) != 0 || r.Hash != hash2 ||
			!r.Created.Equal(created.Add(-2*time.Hour)) || r.Revoked == nil || !r.Revoked.Equal(revoked) {
			t.Errorf("record 1 = %#v", r)
		}
	})
	t.Run("a missing file is fs.ErrNotExist", func(t *testing.T) {
		_, err := ReadLegacyFile(filepath.Join(t.TempDir(), "missing.json"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadLegacyFile = %v", err)
		}
	})
	t.Run("a file larger than the limit is refused unread", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tokens.json")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(maxFileBytes + 1); err != nil { // sparse
			t.Fatal(err)
		}
		f.Close()
		if _, err := ReadLegacyFile(path); err == nil || !strings.Contains(err.Error(), "larger than") {
			t.Errorf("ReadLegacyFile = %v", err)
		}
	})

	tests := []struct {
		name string
		file string
		err  string
	}{
		{name: "malformed JSON", file: `{"version":1,"tokens":[`, err: "malformed"},
		{name: "an empty file", file: ``, err: "malformed"},
		{name: "an unknown field", file: `{"version":1,"tokens":[],"extra":1}`, err: "unknown field"},
		{name: "an unknown field in a token", file: `{"version":1,"tokens":[` + strings.TrimSuffix(entry("tok_00000001", "a", `[]`, hash1), "}") + `,"token":"spt_x"}]}`, err: "unknown field"},
		{name: "another version", file: `{"version":2,"tokens":[]}`, err: "unsupported version 2"},
		{name: "no version", file: `{"tokens":[]}`, err: "unsupported version 0"},
		{name: "trailing data", file: `{"version":1,"tokens":[]} {}`, err: "data after the JSON object"},
		{name: "a trailing closing brace", file: `{"version":1,"tokens":[]}}`, err: "data after the JSON object"},
		{name: "a trailing closing bracket", file: `{"version":1,"tokens":[]}]`, err: "data after the JSON object"},
		{name: "an array at the top", file: `[]`, err: "malformed"},
		{name: "a bad hash", file: `{"version":1,"tokens":[` + entry("tok_00000001", "a", `[]`, "xyz") + `]}`, err: "tokens[0]: tok_00000001: hash must be 64 lowercase hex digits"},
		{name: "a bad id", file: `{"version":1,"tokens":[` + entry("x", "a", `[]`, hash1) + `]}`, err: `tokens[0]: invalid id "x"`},
		{name: "a bad principal in the second token", file: `{"version":1,"tokens":[` + entry("tok_00000001", "a", `[]`, hash1) + `,` + entry("tok_00000002", "", `[]`, hash2) + `]}`,
			err: "tokens[1]: tok_00000002: invalid principal"},
		{name: "a bad group", file: `{"version":1,"tokens":[` + entry("tok_00000001", "a", `["a b"]`, hash1) + `]}`, err: "invalid group"},
		{name: "a group that is not a string", file: `{"version":1,"tokens":[` + entry("tok_00000001", "a", `[1]`, hash1) + `]}`, err: "malformed"},
		{name: "a bad time", file: `{"version":1,"tokens":[{"id":"tok_00000001","principal":"a","hash":"` + hash1 + `","created":"yesterday"}]}`, err: "malformed"},
	}
	for _, tt := range tests {
		t.Run("a file with "+tt.name+" is an error naming it", func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tokens.json")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			recs, err := ReadLegacyFile(path)
			if err == nil {
				t.Fatalf("ReadLegacyFile = %v, want an error containing %q", recs, tt.err)
			}
			if !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), path) {
				t.Errorf("error = %v, want one naming %s and containing %q", err, path, tt.err)
			}
		})
	}

	t.Run("the records of a legacy file import into a store", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tokens.json")
		if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
			t.Fatal(err)
		}
		recs, err := ReadLegacyFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := openStore(t, dbPath(t))
		for _, r := range recs {
			if added, err := s.Import(r); err != nil || !added {
				t.Fatalf("Import(%s) = %v, %v", r.ID, added, err)
			}
		}
		token1, _ := tokenFor(1)
		token2, _ := tokenFor(2)
		if p, ok := s.Authenticate(token1); !ok || p.ID != "alice" {
			t.Errorf("Authenticate(token1) = %+v, %v", p, ok)
		}
		if p, ok := s.Authenticate(token2); ok {
			t.Errorf("revoked token2 authenticates: %+v", p)
		}
		for _, r := range recs { // a second start imports nothing
			if added, err := s.Import(r); err != nil || added {
				t.Errorf("second Import(%s) = %v, %v", r.ID, added, err)
			}
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	path := dbPath(t)
	gw, clk := openStore(t, path)
	cli, _ := openStore(t, path)
	good, _, err := gw.Create("alice", []string{"dev"})
	if err != nil {
		t.Fatal(err)
	}
	unknown, _ := tokenFor(7)

	var readers, writers sync.WaitGroup
	stop := make(chan struct{})
	var failures, checks atomic.Int64
	for range 8 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				clk.advance(100 * time.Millisecond) // a reload check every tenth call
				if p, ok := gw.Authenticate(good); !ok || p.ID != "alice" {
					failures.Add(1)
				}
				if _, ok := gw.Authenticate(unknown); ok {
					failures.Add(1)
				}
				gw.List()
				gw.Warnings()
				checks.Add(1)
			}
		})
	}
	// Two writers, as two processes would be, each creating and revoking.
	var created atomic.Int64
	for _, s := range []*Store{gw, cli} {
		writers.Go(func() {
			for range 10 {
				token, rec, err := s.Create("bob", nil)
				if err != nil {
					t.Error(err)
					return
				}
				created.Add(1)
				if _, ok := s.Authenticate(token); !ok {
					t.Errorf("a token is refused by the store that created it")
				}
				if err := s.Revoke(rec.ID); err != nil {
					t.Error(err)
					return
				}
				if _, ok := s.Authenticate(token); ok {
					t.Errorf("a token still works in the store that revoked it")
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d wrong answers in %d checks under concurrency", n, checks.Load())
	}
	s, _ := openStore(t, path)
	list := s.List()
	if got, want := len(list), int(created.Load())+1; got != want {
		t.Errorf("store holds %d records, want %d: concurrent writers lost an update", got, want)
	}
	for _, r := range list {
		if r.Principal == "bob" && r.Revoked == nil {
			t.Errorf("%s not revoked", r.ID)
		}
	}
	if w := gw.Warnings(); len(w) != 0 {
		t.Errorf("Warnings = %q", w)
	}
}

func TestRecordNeverPrintsTheHash(t *testing.T) {
	revoked := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	r := Record{ID: "tok_0123abcd", Principal: "alice", Groups: []string{"dev"}, Hash: strings.Repeat("ab", 32),
		Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Revoked: &revoked}
	var logged, text bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("token", "rec", r)
	slog.New(slog.NewTextHandler(&text, nil)).Info("token", "rec", &r, "recs", []Record{r})
	outputs := map[string]string{
		"Sprint": fmt.Sprint(r), "%v": fmt.Sprintf("%v", r), "%+v": fmt.Sprintf("%+v", r), "%#v": fmt.Sprintf("%#v", r),
		//lint:ignore S1025 the %s verb itself is what is under test
		"%s": fmt.Sprintf("%s", r), "pointer": fmt.Sprint(&r), "slice": fmt.Sprint([]Record{r}), "%+v slice": fmt.Sprintf("%+v", []Record{r}),
		"slog JSON": logged.String(), "slog text": text.String(),
	}
	for name, out := range outputs {
		t.Run(name+" leaves the hash out", func(t *testing.T) {
			if strings.Contains(out, "abab") {
				t.Errorf("output shows the hash: %s", out)
			}
			if !strings.Contains(out, "tok_0123abcd") || !strings.Contains(out, "alice") {
				t.Errorf("output lacks id or principal: %s", out)
			}
		})
	}
	t.Run("String describes the record", func(t *testing.T) {
		if want := "tok_0123abcd principal=alice groups=[dev] created=2026-01-01T00:00:00Z revoked=2026-02-01T00:00:00Z"; r.String() != want {
			t.Errorf("String() = %q, want %q", r.String(), want)
		}
	})
}

// FuzzReadLegacyFile checks that no tokens file makes ReadLegacyFile panic,
// and that every record it accepts passes the checks Import makes.
func FuzzReadLegacyFile(f *testing.F) {
	_, hash := tokenFor(1)
	f.Add([]byte(`{"version":1,"tokens":[]}`))
	f.Add([]byte(`{"version":1,"tokens":[{"id":"tok_00000001","principal":"a","groups":["g"],"hash":"` + hash + `","created":"2026-01-01T00:00:00Z","revoked":"2026-01-02T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"tokens":[]}}`))
	path := filepath.Join(f.TempDir(), "tokens.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		recs, err := ReadLegacyFile(path)
		if err != nil {
			return
		}
		for _, r := range recs {
			if err := check(r); err != nil || r.Groups == nil {
				t.Fatalf("accepted record %#v: %v", r, err)
			}
		}
	})
}
