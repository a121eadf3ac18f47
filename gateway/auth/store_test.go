package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
)

// clock is a fake time source that is safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// openStore opens a store at path on a fake clock.
func openStore(t *testing.T, path string) (*Store, *clock) {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	c := newClock()
	s.now = c.now
	s.nextCheck.Store(c.now().Add(checkInterval).UnixNano())
	return s, c
}

func tokensPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "tokens.json")
}

func TestCreateAuthenticateRevoke(t *testing.T) {
	s, _ := openStore(t, tokensPath(t))
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
	})
	t.Run("the record holds the hash of the token", func(t *testing.T) {
		sum := sha256.Sum256([]byte(token))
		if rec.Hash != hex.EncodeToString(sum[:]) {
			t.Errorf("hash = %s", rec.Hash)
		}
		if !idRE.MatchString(rec.ID) || rec.Principal != "alice" || !reflect.DeepEqual(rec.Groups, []string{"dev", "ops"}) ||
			rec.Created.IsZero() || rec.Revoked != nil {
			t.Errorf("record = %#v", rec)
		}
	})
	t.Run("the token authenticates as its principal", func(t *testing.T) {
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
		other := "spt_" + strings.Repeat("A", 43)
		if p, ok := s.Authenticate(other); ok {
			t.Errorf("Authenticate(other) = %+v", p)
		}
	})
	t.Run("a second token has its own id", func(t *testing.T) {
		token2, rec2, err := s.Create("bob", nil)
		if err != nil {
			t.Fatal(err)
		}
		if rec2.ID == rec.ID || token2 == token || rec2.Groups == nil {
			t.Errorf("second record = %#v", rec2)
		}
		if p, ok := s.Authenticate(token2); !ok || p.ID != "bob" || p.TokenID != rec2.ID {
			t.Errorf("Authenticate(token2) = %+v, %v", p, ok)
		}
	})
	t.Run("a revoked token fails at once in the store that revoked it", func(t *testing.T) {
		if err := s.Revoke(rec.ID); err != nil {
			t.Fatal(err)
		}
		if p, ok := s.Authenticate(token); ok {
			t.Errorf("Authenticate after Revoke = %+v", p)
		}
		list := s.List()
		if len(list) != 2 || list[0].ID != rec.ID || list[0].Revoked == nil || list[1].Revoked != nil {
			t.Errorf("List = %v", list)
		}
	})
	t.Run("revoking twice keeps the first revocation time", func(t *testing.T) {
		before := *s.List()[0].Revoked
		if err := s.Revoke(rec.ID); err != nil {
			t.Fatal(err)
		}
		if after := *s.List()[0].Revoked; !after.Equal(before) {
			t.Errorf("revoked time moved from %v to %v", before, after)
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
		l[1].Groups = append(l[1].Groups, "x")
		l[1].Principal = "mallory"
		if s.List()[1].Principal != "bob" || len(s.List()[1].Groups) != 0 {
			t.Errorf("List shares state: %v", s.List())
		}
	})
}

func TestAuthenticateRefusesMalformedTokens(t *testing.T) {
	s, _ := openStore(t, tokensPath(t))
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
		{name: "one character short", token: valid[:len(valid)-1]},
		{name: "one character long", token: valid + "A"},
		{name: "padding", token: valid[:len(valid)-1] + "="},
		{name: "standard base64 characters", token: valid[:len(valid)-1] + "+"},
		{name: "surrounding space", token: " " + valid[:len(valid)-1]},
	}
	for _, tt := range tests {
		t.Run("a malformed token fails: "+tt.name, func(t *testing.T) {
			// Even a record for exactly this string must not match: the
			// shape is checked before any lookup.
			sum := sha256.Sum256([]byte(tt.token))
			snap := s.snap.Load()
			recs := append(append([]Record(nil), snap.records...), Record{ID: "tok_ffffffff", Principal: "mallory", Hash: hex.EncodeToString(sum[:])})
			s.snap.Store(newSnapshot(recs, snap.info))
			defer s.snap.Store(snap)
			if p, ok := s.Authenticate(tt.token); ok {
				t.Errorf("Authenticate(%q) = %+v", tt.token, p)
			}
		})
	}
}

func TestTokensFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "tokens.json")
	s, _ := openStore(t, path)
	token, rec, err := s.Create("alice", []string{"dev"})
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("the file is JSON with a version and the records", func(t *testing.T) {
		var f struct {
			Version int      `json:"version"`
			Tokens  []Record `json:"tokens"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		if f.Version != 1 || len(f.Tokens) != 1 || f.Tokens[0].Hash != rec.Hash || f.Tokens[0].ID != rec.ID {
			t.Errorf("file = %s", data)
		}
	})
	t.Run("the file never holds the token", func(t *testing.T) {
		if bytes.Contains(data, []byte(token)) || bytes.Contains(data, []byte(token[4:])) {
			t.Errorf("file holds the token:\n%s", data)
		}
	})
	t.Run("the file has mode 0600", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("no Unix modes")
		}
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("mode = %04o, want 0600", perm)
		}
	})
	t.Run("no temporary file is left behind", func(t *testing.T) {
		entries, err := os.ReadDir(filepath.Dir(path))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".tmp") {
				t.Errorf("left behind: %s", e.Name())
			}
		}
	})
	t.Run("a new store reads what was written", func(t *testing.T) {
		s2, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if p, ok := s2.Authenticate(token); !ok || p.ID != "alice" {
			t.Errorf("Authenticate = %+v, %v", p, ok)
		}
		if got := s2.List(); !reflect.DeepEqual(got, []Record{rec}) {
			t.Errorf("List = %v, want %v", got, rec)
		}
		if w := s2.Warnings(); len(w) != 0 {
			t.Errorf("Warnings = %q", w)
		}
	})
}

func TestOpen(t *testing.T) {
	validHash := strings.Repeat("ab", 32)
	tests := []struct {
		name string
		file string // "" = no file
		err  string // "" = Open succeeds
	}{
		{name: "a missing file is an empty store"},
		{name: "an empty token list is an empty store", file: `{"version":1,"tokens":[]}`},
		{name: "malformed JSON is an error naming the file", file: `{"version":1,"tokens":[`, err: "malformed"},
		{name: "an empty file is an error", file: ``, err: "malformed"},
		{name: "an unknown field is an error", file: `{"version":1,"tokens":[],"extra":1}`, err: "unknown field"},
		{name: "another version is an error", file: `{"version":2,"tokens":[]}`, err: "unsupported version 2"},
		{name: "trailing data is an error", file: `{"version":1,"tokens":[]} {}`, err: "data after the JSON object"},
		{name: "a bad hash is an error", file: `{"version":1,"tokens":[{"id":"tok_00000001","principal":"a","groups":[],"hash":"xyz","created":"2026-01-01T00:00:00Z"}]}`,
			err: "hash must be 64 lowercase hex digits"},
		{name: "a bad id is an error", file: `{"version":1,"tokens":[{"id":"x","principal":"a","groups":[],"hash":"` + validHash + `","created":"2026-01-01T00:00:00Z"}]}`,
			err: `invalid id "x"`},
		{name: "duplicate ids are an error", file: `{"version":1,"tokens":[` +
			`{"id":"tok_00000001","principal":"a","groups":[],"hash":"` + validHash + `","created":"2026-01-01T00:00:00Z"},` +
			`{"id":"tok_00000001","principal":"b","groups":[],"hash":"` + strings.Repeat("cd", 32) + `","created":"2026-01-01T00:00:00Z"}]}`,
			err: "duplicate id"},
		{name: "duplicate hashes are an error", file: `{"version":1,"tokens":[` +
			`{"id":"tok_00000001","principal":"a","groups":[],"hash":"` + validHash + `","created":"2026-01-01T00:00:00Z"},` +
			`{"id":"tok_00000002","principal":"b","groups":[],"hash":"` + validHash + `","created":"2026-01-01T00:00:00Z"}]}`,
			err: "duplicate hash"},
		{name: "a bad principal is an error", file: `{"version":1,"tokens":[{"id":"tok_00000001","principal":"","groups":[],"hash":"` + validHash + `","created":"2026-01-01T00:00:00Z"}]}`,
			err: "invalid principal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tokensPath(t)
			if tt.name != "a missing file is an empty store" {
				if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(path)
			if tt.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if len(s.List()) != 0 {
					t.Errorf("List = %v", s.List())
				}
				return
			}
			if err == nil {
				t.Fatalf("Open succeeded, want %q", tt.err)
			}
			if !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), path) {
				t.Errorf("error = %v, want one naming %s and containing %q", err, path, tt.err)
			}
		})
	}
	t.Run("a malformed file is not overwritten by Create", func(t *testing.T) {
		path := tokensPath(t)
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Create("alice", nil); err == nil || !strings.Contains(err.Error(), "create token: read tokens file") {
			t.Errorf("Create = %v", err)
		}
		if data, _ := os.ReadFile(path); string(data) != "garbage" {
			t.Errorf("file now %q", data)
		}
	})
}

func TestWarnings(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix modes")
	}
	path := tokensPath(t)
	if err := os.WriteFile(path, []byte(`{"version":1,"tokens":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open refused a file readable by others: %v", err)
	}
	t.Run("a file others can read is used with a warning", func(t *testing.T) {
		w := s.Warnings()
		if len(w) != 1 || !strings.Contains(w[0], "mode 0644") || !strings.Contains(w[0], path) {
			t.Errorf("Warnings = %q", w)
		}
	})
	t.Run("rewriting the file makes it 0600 and clears the warning", func(t *testing.T) {
		if _, _, err := s.Create("alice", nil); err != nil {
			t.Fatal(err)
		}
		if w := s.Warnings(); len(w) != 0 {
			t.Errorf("Warnings = %q", w)
		}
	})
}

func TestReloadFromAnotherStore(t *testing.T) {
	path := tokensPath(t)
	gw, clk := openStore(t, path) // the running gateway
	cli, _ := openStore(t, path)  // `sallyport tokens create` in another process

	token, rec, err := cli.Create("alice", []string{"dev"})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a new token is not looked for more than once a second", func(t *testing.T) {
		if _, ok := gw.Authenticate(token); ok {
			t.Fatal("the gateway looked at the file before a second passed")
		}
	})
	t.Run("a new token is seen once a second has passed", func(t *testing.T) {
		clk.advance(checkInterval)
		if p, ok := gw.Authenticate(token); !ok || p.ID != "alice" || p.TokenID != rec.ID {
			t.Fatalf("Authenticate = %+v, %v", p, ok)
		}
	})
	if err := cli.Revoke(rec.ID); err != nil {
		t.Fatal(err)
	}
	t.Run("a revocation reaches a valid token within a second", func(t *testing.T) {
		if _, ok := gw.Authenticate(token); !ok {
			t.Fatal("the gateway looked at the file again before a second passed")
		}
		clk.advance(checkInterval)
		if p, ok := gw.Authenticate(token); ok {
			t.Fatalf("revoked token still authenticates: %+v", p)
		}
	})
	t.Run("an unchanged file is not read again", func(t *testing.T) {
		before := gw.snap.Load()
		clk.advance(checkInterval)
		gw.Authenticate(token)
		if gw.snap.Load() != before {
			t.Error("snapshot replaced although the file did not change")
		}
	})
	t.Run("a file that turns malformed fails closed and recovers when fixed", func(t *testing.T) {
		token2, _, err := cli.Create("bob", nil)
		if err != nil {
			t.Fatal(err)
		}
		clk.advance(checkInterval)
		if _, ok := gw.Authenticate(token2); !ok {
			t.Fatal("token2 not seen")
		}
		good, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(`{"version":1,"tokens":[`), 0o600); err != nil {
			t.Fatal(err)
		}
		clk.advance(checkInterval)
		if p, ok := gw.Authenticate(token2); ok {
			t.Fatalf("Authenticate with a malformed file = %+v", p)
		}
		if w := gw.Warnings(); len(w) != 1 || !strings.Contains(w[0], "refusing every token") {
			t.Errorf("Warnings = %q", w)
		}
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Fatal(err)
		}
		clk.advance(checkInterval)
		if _, ok := gw.Authenticate(token2); !ok {
			t.Fatal("token2 not accepted after the file was fixed")
		}
	})
	t.Run("a deleted file is an empty store", func(t *testing.T) {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		clk.advance(checkInterval)
		if got := gw.List(); len(got) != 0 {
			t.Errorf("List = %v", got)
		}
	})
}

func TestConcurrentUse(t *testing.T) {
	path := tokensPath(t)
	gw, clk := openStore(t, path)
	cli, _ := openStore(t, path)
	good, _, err := gw.Create("alice", []string{"dev"})
	if err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	stop := make(chan struct{})
	var failures atomic.Int64
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				clk.advance(100 * time.Millisecond) // forces a reload check every tenth call
				if p, ok := gw.Authenticate(good); !ok || p.ID != "alice" {
					failures.Add(1)
				}
				if _, ok := gw.Authenticate("spt_" + strings.Repeat("x", 43)); ok {
					failures.Add(1)
				}
				gw.List()
			}
		})
	}
	// Two writers, as two processes would be, each creating and revoking.
	var created atomic.Int64
	for _, s := range []*Store{gw, cli} {
		wg.Go(func() {
			for range 10 {
				_, rec, err := s.Create("bob", nil)
				if err != nil {
					t.Error(err)
					return
				}
				created.Add(1)
				if err := s.Revoke(rec.ID); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Errorf("%d wrong answers under concurrency", n)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(s.List()), int(created.Load())+1; got != want {
		t.Errorf("file holds %d records, want %d: concurrent writers lost an update", got, want)
	}
}

func TestCreateRefusesBadNames(t *testing.T) {
	s, _ := openStore(t, tokensPath(t))
	tests := []struct {
		name      string
		principal string
		groups    []string
	}{
		{name: "an empty principal", principal: ""},
		{name: "a principal with a space", principal: "alice smith"},
		{name: "a principal with a newline", principal: "alice\nadmin"},
		{name: "an empty group", principal: "alice", groups: []string{""}},
		{name: "a group with a comma", principal: "alice", groups: []string{"a,b"}},
	}
	for _, tt := range tests {
		t.Run("Create refuses "+tt.name, func(t *testing.T) {
			if _, _, err := s.Create(tt.principal, tt.groups); err == nil {
				t.Error("Create succeeded")
			}
		})
	}
	if len(s.List()) != 0 {
		t.Errorf("List = %v", s.List())
	}
}

func TestRecordNeverPrintsTheHash(t *testing.T) {
	revoked := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	r := Record{ID: "tok_0123abcd", Principal: "alice", Groups: []string{"dev"}, Hash: strings.Repeat("ab", 32),
		Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Revoked: &revoked}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("token", "rec", r)
	for _, out := range []string{fmt.Sprint(r), fmt.Sprintf("%v", r), fmt.Sprintf("%+v", r), fmt.Sprintf("%#v", r), fmt.Sprint(&r), logged.String()} {
		if strings.Contains(out, "abab") {
			t.Errorf("output shows the hash: %s", out)
		}
		if !strings.Contains(out, "tok_0123abcd") || !strings.Contains(out, "alice") {
			t.Errorf("output lacks id or principal: %s", out)
		}
	}
	if want := "tok_0123abcd principal=alice groups=[dev] created=2026-01-01T00:00:00Z revoked=2026-02-01T00:00:00Z"; r.String() != want {
		t.Errorf("String() = %q, want %q", r.String(), want)
	}
}

// FuzzDecode checks that no tokens file makes decode panic, and that every
// file it accepts has well-formed, unique ids and hashes.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version":1,"tokens":[]}`))
	f.Add([]byte(`{"version":1,"tokens":[{"id":"tok_00000001","principal":"a","groups":["g"],"hash":"` + strings.Repeat("ab", 32) + `","created":"2026-01-01T00:00:00Z","revoked":"2026-01-02T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := decode(data)
		if err != nil {
			return
		}
		snap := newSnapshot(recs, nil)
		if len(snap.byHash) != len(recs) {
			t.Fatalf("%d records but %d hashes", len(recs), len(snap.byHash))
		}
		for _, r := range recs {
			if !idRE.MatchString(r.ID) || !hashRE.MatchString(r.Hash) || !nameRE.MatchString(r.Principal) {
				t.Fatalf("accepted record %#v", r)
			}
		}
	})
}
