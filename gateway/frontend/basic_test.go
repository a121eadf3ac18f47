package frontend

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/auth"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/proxy"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

var _ PasswordVerifier = (*auth.Users)(nil)

// fakeUsers is a PasswordVerifier over a map of passwords that records
// what it was asked.
type fakeUsers struct {
	passwords map[string]string

	mu    sync.Mutex
	asked []string // username NUL password
}

func (f *fakeUsers) Verify(username, password string) (gateway.Principal, bool) {
	f.mu.Lock()
	f.asked = append(f.asked, username+"\x00"+password)
	f.mu.Unlock()
	if want, ok := f.passwords[username]; !ok || want != password {
		return gateway.Principal{}, false
	}
	return gateway.Principal{ID: username, Groups: []string{"reviewers"}, TokenID: "user:" + username}, true
}

func (f *fakeUsers) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.asked
	f.asked = nil
	return out
}

// basicFixture is a frontend without backends whose /api/whoami answers
// with the principal the request was authenticated as.
type basicFixture struct {
	srv   *httptest.Server
	alice string // alice's bearer token
	db    string
}

func newBasicFixture(t *testing.T, users func(dbPath string) PasswordVerifier) *basicFixture {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Database = filepath.Join(t.TempDir(), "sallyport.db")
	store := openTokens(t, cfg.Database)
	alice, _, err := store.Create("alice", []string{"dev"})
	if err != nil {
		t.Fatal(err)
	}
	var verifier PasswordVerifier
	if users != nil {
		verifier = users(cfg.Database)
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := gateway.PrincipalFrom(r.Context())
		json.NewEncoder(w).Encode(p)
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	g := proxy.New(proxy.Options{Config: cfg, Logger: log, Stages: []gateway.Stage{gateway.LogStage{Logger: log}}, Version: "test"})
	front := NewHTTP(HTTPOptions{Gateway: g, Config: cfg, Tokens: store, Users: verifier, Logger: log, API: api})
	srv := httptest.NewServer(front.Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		front.Close(ctx)
		g.Shutdown(ctx)
	})
	return &basicFixture{srv: srv, alice: alice, db: cfg.Database}
}

// whoami asks /api/whoami with the given Authorization header ("" for
// none) and returns the status, the WWW-Authenticate header, the error
// message and the principal.
func (f *basicFixture) whoami(t *testing.T, authz string) (status int, challenge, msg string, p gateway.Principal) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+"/api/whoami", nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatalf("principal %s: %v", body, err)
		}
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), "", p
	}
	m, err := jsonrpc.Decode(body, jsonrpc.Limits{})
	if err != nil || m.Error == nil || m.Error.Code != jsonrpc.CodeInvalidRequest {
		t.Fatalf("status %d with body %s, want a JSON-RPC invalid request error", resp.StatusCode, body)
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), m.Error.Message, p
}

func basic(userPass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userPass))
}

func TestBasicAuthentication(t *testing.T) {
	users := &fakeUsers{passwords: map[string]string{"rita": "rita's long password", "carl": "pass:with:colons", "émile": "émile's password"}}
	f := newBasicFixture(t, func(string) PasswordVerifier { return users })
	rita := gateway.Principal{ID: "rita", Groups: []string{"reviewers"}, TokenID: "user:rita"}
	const challenge = `Bearer realm="sallyport"`

	tests := []struct {
		name  string
		authz string
		want  *gateway.Principal // nil: refused with 401
		msg   string
		asked []string // what the verifier was asked
	}{
		{name: "accept / the right username and password", authz: basic("rita:rita's long password"), want: &rita,
			asked: []string{"rita\x00rita's long password"}},
		{name: "accept / the scheme in another case", authz: "bAsIc " + base64.StdEncoding.EncodeToString([]byte("rita:rita's long password")), want: &rita,
			asked: []string{"rita\x00rita's long password"}},
		{name: "accept / spaces around the credentials", authz: "Basic   " + base64.StdEncoding.EncodeToString([]byte("rita:rita's long password")) + " ", want: &rita,
			asked: []string{"rita\x00rita's long password"}},
		{name: "accept / a password with colons splits at the first", authz: basic("carl:pass:with:colons"),
			want: &gateway.Principal{ID: "carl", Groups: []string{"reviewers"}, TokenID: "user:carl"}, asked: []string{"carl\x00pass:with:colons"}},
		{name: "accept / UTF-8 in username and password", authz: basic("émile:émile's password"),
			want: &gateway.Principal{ID: "émile", Groups: []string{"reviewers"}, TokenID: "user:émile"}, asked: []string{"émile\x00émile's password"}},
		{name: "accept / a bearer token still works", authz: "Bearer " + f.alice,
			want: &gateway.Principal{ID: "alice", Groups: []string{"dev"}, TokenID: "tok_"}},
		{name: "refuse / a wrong password", authz: basic("rita:rita's long passwore"), msg: "invalid username or password",
			asked: []string{"rita\x00rita's long passwore"}},
		{name: "refuse / an unknown user", authz: basic("mallory:rita's long password"), msg: "invalid username or password",
			asked: []string{"mallory\x00rita's long password"}},
		{name: "refuse / an empty username", authz: basic(":rita's long password"), msg: "invalid username or password",
			asked: []string{"\x00rita's long password"}},
		{name: "refuse / an empty password", authz: basic("rita:"), msg: "invalid username or password", asked: []string{"rita\x00"}},
		{name: "refuse / no colon", authz: basic("rita"), msg: "invalid authorization header"},
		{name: "refuse / not base64", authz: "Basic cml0YTpw!!!", msg: "invalid authorization header"},
		{name: "refuse / unpadded base64", authz: "Basic " + base64.RawStdEncoding.EncodeToString([]byte("rita:rita's long password")), msg: "invalid authorization header"},
		{name: "refuse / URL-safe base64", authz: "Basic " + base64.URLEncoding.EncodeToString([]byte("rita:??>>~~~~")) /* cml0YTo_Pz4-fn5-fg== */, msg: "invalid authorization header"},
		{name: "refuse / the scheme alone", authz: "Basic", msg: "invalid authorization header"},
		{name: "refuse / the scheme and a space", authz: "Basic ", msg: "invalid authorization header"},
		{name: "refuse / an unknown scheme", authz: "Digest " + base64.StdEncoding.EncodeToString([]byte("rita:rita's long password")), msg: "invalid authorization header"},
		{name: "refuse / a password as a bearer token", authz: "Bearer rita's long password", msg: "invalid token"},
		{name: "refuse / no credentials", msg: "authentication required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, chal, msg, p := f.whoami(t, tt.authz)
			if tt.want != nil {
				if tt.want.TokenID == "tok_" && strings.HasPrefix(p.TokenID, "tok_") {
					p.TokenID = "tok_" // the token's random id
				}
				if status != http.StatusOK || !reflect.DeepEqual(p, *tt.want) {
					t.Errorf("status %d, principal %+v; want %+v", status, p, *tt.want)
				}
			} else if status != http.StatusUnauthorized || chal != challenge || msg != tt.msg {
				t.Errorf("status %d, WWW-Authenticate %q, message %q; want 401, %q, %q", status, chal, msg, challenge, tt.msg)
			}
			if got := users.calls(); !reflect.DeepEqual(got, tt.asked) {
				t.Errorf("the verifier was asked %q, want %q", got, tt.asked)
			}
		})
	}
}

func TestBasicRefusedWithoutUsers(t *testing.T) {
	f := newBasicFixture(t, nil)
	status, chal, msg, _ := f.whoami(t, basic("rita:rita's long password"))
	if status != http.StatusUnauthorized || chal != `Bearer realm="sallyport"` || msg != "invalid authorization header" {
		t.Errorf("status %d, WWW-Authenticate %q, message %q", status, chal, msg)
	}
	if status, _, _, _ := f.whoami(t, "Bearer "+f.alice); status != http.StatusOK {
		t.Errorf("bearer token: status %d", status)
	}
}

func TestBasicWithReviewerAccounts(t *testing.T) {
	var users *auth.Users
	f := newBasicFixture(t, func(dbPath string) PasswordVerifier {
		db, err := sqlite.Open(context.Background(), dbPath, sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if users, err = auth.NewUsers(db.Users()); err != nil {
			t.Fatal(err)
		}
		return users
	})
	if _, err := users.Add("rita", []string{"reviewers"}, "rita's long password"); err != nil {
		t.Fatal(err)
	}
	rita := gateway.Principal{ID: "rita", Groups: []string{"reviewers"}, TokenID: "user:rita"}
	t.Run("the right password authenticates as the reviewer", func(t *testing.T) {
		for range 2 { // the second time from memory
			if status, _, _, p := f.whoami(t, basic("rita:rita's long password")); status != http.StatusOK || !reflect.DeepEqual(p, rita) {
				t.Errorf("status %d, principal %+v", status, p)
			}
		}
	})
	t.Run("a wrong password is refused", func(t *testing.T) {
		if status, _, msg, _ := f.whoami(t, basic("rita:rita's long passwore")); status != http.StatusUnauthorized || msg != "invalid username or password" {
			t.Errorf("status %d, message %q", status, msg)
		}
	})
	t.Run("a disabled reviewer is refused", func(t *testing.T) {
		if err := users.Disable("rita"); err != nil {
			t.Fatal(err)
		}
		if status, _, _, _ := f.whoami(t, basic("rita:rita's long password")); status != http.StatusUnauthorized {
			t.Errorf("status %d", status)
		}
	})
}

func TestBasicIsOnlyForTheAPI(t *testing.T) {
	users := &fakeUsers{passwords: map[string]string{"alice": "alice's long password"}}
	f := newBasicFixture(t, func(string) PasswordVerifier { return users })
	for _, path := range []string{"/mcp", "/sse", "/message"} {
		t.Run("a person's password does not open "+path, func(t *testing.T) {
			req, _ := http.NewRequest("POST", f.srv.URL+path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
			if path == "/sse" {
				req, _ = http.NewRequest("GET", f.srv.URL+path, nil)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Authorization", basic("alice:alice's long password"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "only for /api/") {
				t.Errorf("%s: %d %s", path, resp.StatusCode, body)
			}
		})
	}
}
