package frontend

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/cmd/sallyport/demo"
	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/auth"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/proxy"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// The test binary doubles as the demo backend when SALLYPORT_TEST_BACKEND
// names a sandbox folder.
func TestMain(m *testing.M) {
	if dir := os.Getenv("SALLYPORT_TEST_BACKEND"); dir != "" {
		if err := demo.Run(context.Background(), demo.Options{Sandbox: dir, Outbox: filepath.Join(dir, "outbox.jsonl")}, os.Stdin, os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type fixture struct {
	srv        *httptest.Server
	front      *HTTP
	alice, bob string
	host       string
}

func newFixture(t *testing.T, mutate func(*config.Config)) *fixture {
	t.Helper()
	exe, _ := os.Executable()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.HTTP.AllowedOrigins = []string{"http://localhost:6274"}
	cfg.HTTP.MaxBodyBytes = 64 << 10
	cfg.Database = filepath.Join(dir, "sallyport.db")
	cfg.Backends = []config.Backend{{
		ID: "demo", Transport: "stdio", Command: exe, Isolation: "session",
		Env:             map[string]string{"SALLYPORT_TEST_BACKEND": dir},
		MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		Timeouts:        config.Timeouts{Startup: config.Duration(20 * time.Second), Request: config.Duration(20 * time.Second), Shutdown: config.Duration(2 * time.Second)},
	}}
	if mutate != nil {
		mutate(cfg)
	}
	store := openTokens(t, cfg.Database)
	alice, _, _ := store.Create("alice", []string{"dev"})
	bob, _, _ := store.Create("bob", nil)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	g := proxy.New(proxy.Options{Config: cfg, Logger: log, Stages: []gateway.Stage{gateway.LogStage{Logger: log}}, Version: "test"})
	front := NewHTTP(HTTPOptions{Gateway: g, Config: cfg, Tokens: store, Logger: log})
	srv := httptest.NewServer(front.Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		front.Close(ctx)
		g.Shutdown(ctx)
	})
	return &fixture{srv: srv, front: front, alice: alice, bob: bob, host: strings.TrimPrefix(srv.URL, "http://")}
}

type reply struct {
	status int
	header http.Header
	body   []byte
	msg    *jsonrpc.Message
}

func (f *fixture) do(t *testing.T, method, body string, headers map[string]string) reply {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+"/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
			continue
		}
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, body: b}
	data := b
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		// the answer is the last data line
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		data = []byte(strings.TrimPrefix(lines[len(lines)-1], "data: "))
	}
	if m, err := jsonrpc.Decode(bytes.TrimSpace(data), jsonrpc.Limits{}); err == nil {
		r.msg = m
	}
	return r
}

func (f *fixture) initialize(t *testing.T, token string) string {
	t.Helper()
	r := f.do(t, "POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
		map[string]string{"Authorization": "Bearer " + token})
	if r.status != 200 || r.msg == nil || r.msg.Error != nil {
		t.Fatalf("initialize: %d %s", r.status, r.body)
	}
	sid := r.header.Get("Mcp-Session-Id")
	if len(sid) < 32 {
		t.Fatalf("session id %q is too short to be unguessable", sid)
	}
	f.do(t, "POST", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"Authorization": "Bearer " + token, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"})
	return sid
}

func TestHostileInput(t *testing.T) {
	f := newFixture(t, nil)
	sid := f.initialize(t, f.alice)
	ok := map[string]string{"Authorization": "Bearer " + f.alice, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
	with := func(kv ...string) map[string]string {
		h := map[string]string{}
		for k, v := range ok {
			h[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	call := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"demo__list_files","arguments":{}}}`
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	tests := []struct {
		name    string
		method  string
		body    string
		headers map[string]string
		status  int
		code    int // 0: no JSON-RPC error expected in the body
	}{
		{"refuse / oversized body", "POST", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", 70<<10) + `"}}`, ok, 413, jsonrpc.CodeInvalidRequest},
		{"refuse / 10,000-deep nesting", "POST", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":` + deep + `}}`, ok, 400, jsonrpc.CodeInvalidRequest},
		{"refuse / duplicate keys", "POST", `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}`, ok, 400, jsonrpc.CodeInvalidRequest},
		{"refuse / case-variant key", "POST", `{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}`, ok, 400, jsonrpc.CodeInvalidRequest},
		{"refuse / invalid UTF-8", "POST", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{\"x\":\"\xff\xfe\"}}", ok, 400, jsonrpc.CodeParseError},
		{"refuse / not JSON", "POST", `{"jsonrpc":`, ok, 400, jsonrpc.CodeParseError},
		{"refuse / batch on 2025-11-25", "POST", `[` + call + `]`, ok, 400, jsonrpc.CodeInvalidRequest},
		{"refuse / foreign origin", "POST", call, with("Origin", "https://evil.example"), 403, jsonrpc.CodeInvalidRequest},
		{"refuse / rebinding host", "POST", call, with("Host", "evil.example:80"), 403, jsonrpc.CodeInvalidRequest},
		{"refuse / text/plain body", "POST", call, with("Content-Type", "text/plain"), 415, jsonrpc.CodeInvalidRequest},
		{"refuse / no token", "POST", call, with("Authorization", ""), 401, jsonrpc.CodeInvalidRequest},
		{"refuse / unknown token", "POST", call, with("Authorization", "Bearer spt_not-a-real-token"), 401, jsonrpc.CodeInvalidRequest},
		{"refuse / another principal's session", "POST", call, with("Authorization", "Bearer "+f.bob), 404, jsonrpc.CodeInvalidRequest},
		{"refuse / missing session id", "POST", call, with("Mcp-Session-Id", ""), 400, jsonrpc.CodeInvalidRequest},
		{"refuse / unknown session id", "POST", call, with("Mcp-Session-Id", "0123456789abcdef0123456789abcdef"), 404, jsonrpc.CodeInvalidRequest},
		{"refuse / unsupported protocol version header", "POST", call, with("Mcp-Protocol-Version", "2099-01-01"), 400, jsonrpc.CodeInvalidRequest},
		{"accept / another supported protocol version header", "POST", call, with("Mcp-Protocol-Version", "2025-06-18"), 200, 0},
		{"refuse / garbage protocol version header", "POST", call, with("Mcp-Protocol-Version", "garbage"), 400, jsonrpc.CodeInvalidRequest},
		{"refuse / accepts neither JSON nor SSE", "POST", call, with("Accept", "text/html"), 406, jsonrpc.CodeInvalidRequest},
		{"accept / allowed origin", "POST", call, with("Origin", "http://localhost:6274"), 200, 0},
		{"accept / notification", "POST", `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`, ok, 202, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do(t, tc.method, tc.body, tc.headers)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != 0 && (r.msg == nil || r.msg.Error == nil || r.msg.Error.Code != tc.code) {
				t.Fatalf("body %s, want JSON-RPC error %d", r.body, tc.code)
			}
			// The gateway keeps serving the session after each.
			after := f.do(t, "POST", call, ok)
			if after.status != 200 || after.msg == nil || after.msg.Error != nil {
				t.Fatalf("normal call after hostile input: %d %s", after.status, after.body)
			}
		})
	}
}

func TestSessionLifecycle(t *testing.T) {
	f := newFixture(t, nil)
	sid := f.initialize(t, f.alice)
	h := map[string]string{"Authorization": "Bearer " + f.alice, "Mcp-Session-Id": sid}

	t.Run("a client-chosen session id on initialize is ignored", func(t *testing.T) {
		r := f.do(t, "POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
			map[string]string{"Authorization": "Bearer " + f.alice, "Mcp-Session-Id": "attacker-chosen"})
		if got := r.header.Get("Mcp-Session-Id"); got == "" || got == "attacker-chosen" || got == sid {
			t.Fatalf("session id %q", got)
		}
		if !strings.Contains(string(r.body), `"protocolVersion":"2025-06-18"`) {
			t.Fatalf("version not negotiated: %s", r.body)
		}
	})
	t.Run("an unsupported version gets the newest", func(t *testing.T) {
		r := f.do(t, "POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2099-01-01","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
			map[string]string{"Authorization": "Bearer " + f.alice})
		if !strings.Contains(string(r.body), `"protocolVersion":"2025-11-25"`) {
			t.Fatalf("got %s", r.body)
		}
	})
	t.Run("requests before initialize are refused", func(t *testing.T) {
		r := f.do(t, "POST", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, map[string]string{"Authorization": "Bearer " + f.alice})
		if r.status != 400 {
			t.Fatalf("status %d", r.status)
		}
	})
	t.Run("a GET stream opens once", func(t *testing.T) {
		req, _ := http.NewRequest("GET", f.srv.URL+"/mcp", nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Authorization", "Bearer "+f.alice)
		req.Header.Set("Mcp-Session-Id", sid)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("GET: %v %v", err, resp)
		}
		defer resp.Body.Close()
		second := f.do(t, "GET", "", map[string]string{"Authorization": "Bearer " + f.alice, "Mcp-Session-Id": sid, "Accept": "text/event-stream"})
		if second.status != http.StatusConflict {
			t.Fatalf("second GET: %d", second.status)
		}
	})
	t.Run("DELETE ends the session and stops its backend", func(t *testing.T) {
		r := f.do(t, "POST", `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"demo__list_files","arguments":{}}}`, h)
		if r.status != 200 {
			t.Fatalf("call: %d %s", r.status, r.body)
		}
		f.front.mu.Lock()
		pids := f.front.sessions[sid].s.LegPids()
		f.front.mu.Unlock()
		if len(pids) != 1 {
			t.Fatalf("backend pids %v", pids)
		}
		if r := f.do(t, "DELETE", "", h); r.status != http.StatusNoContent {
			t.Fatalf("DELETE: %d", r.status)
		}
		if r := f.do(t, "POST", `{"jsonrpc":"2.0","id":10,"method":"ping"}`, h); r.status != 404 {
			t.Fatalf("after DELETE: %d", r.status)
		}
		waitGone(t, pids[0])
	})
}

func TestIdleSessionsAreReaped(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.HTTP.SessionIdleTimeout = config.Duration(300 * time.Millisecond) })
	sid := f.initialize(t, f.alice)
	h := map[string]string{"Authorization": "Bearer " + f.alice, "Mcp-Session-Id": sid}
	f.do(t, "POST", `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"demo__list_files","arguments":{}}}`, h)
	f.front.mu.Lock()
	pids := f.front.sessions[sid].s.LegPids()
	f.front.mu.Unlock()
	waitGone(t, pids...)
	if r := f.do(t, "POST", `{"jsonrpc":"2.0","id":10,"method":"ping"}`, h); r.status != 404 {
		t.Fatalf("idle session still answers: %d", r.status)
	}
}

func TestAnonymousNeedsConfiguration(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.Auth.Anonymous = true })
	r := f.do(t, "POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, nil)
	if r.status != 200 {
		t.Fatalf("anonymous on loopback: %d %s", r.status, r.body)
	}
	f2 := newFixture(t, nil)
	if r := f2.do(t, "POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`, nil); r.status != 401 {
		t.Fatalf("anonymous without configuration: %d", r.status)
	}
}

// waitGone waits (bounded) until the processes have exited.
func waitGone(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("backend process %d still running", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

var _ = json.Valid

func TestProgressUpgradesTheAnswerToAnEventStream(t *testing.T) {
	f := newFixture(t, nil)
	sid := f.initialize(t, f.alice)
	h := map[string]string{"Authorization": "Bearer " + f.alice, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
	call := `{"jsonrpc":"2.0","id":"r1","method":"tools/call","params":{"name":"demo__generate_report","arguments":{"seconds":0.2,"steps":3},"_meta":{"progressToken":7}}}`

	t.Run("a client that accepts SSE gets the progress, then the answer", func(t *testing.T) {
		r := f.do(t, "POST", call, h)
		if r.status != 200 || r.header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("status %d, content type %q", r.status, r.header.Get("Content-Type"))
		}
		body := string(r.body)
		if n := strings.Count(body, `"method":"notifications/progress"`); n == 0 || !strings.Contains(body, `"progressToken":7`) {
			t.Fatalf("no progress under the client's token in the stream:\n%s", body)
		}
		if r.msg == nil || string(r.msg.ID) != `"r1"` || r.msg.Error != nil {
			t.Fatalf("the stream does not end with the answer:\n%s", body)
		}
	})
	t.Run("a client that accepts only JSON gets the answer as JSON", func(t *testing.T) {
		hj := map[string]string{"Accept": "application/json"}
		for k, v := range h {
			hj[k] = v
		}
		r := f.do(t, "POST", call, hj)
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" || r.msg == nil || r.msg.Error != nil {
			t.Fatalf("status %d %q: %s", r.status, r.header.Get("Content-Type"), r.body)
		}
	})
	t.Run("a call without progress is answered as plain JSON", func(t *testing.T) {
		r := f.do(t, "POST", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__list_files","arguments":{}}}`, h)
		if r.header.Get("Content-Type") != "application/json" || r.msg == nil || r.msg.Error != nil {
			t.Fatalf("%q: %s", r.header.Get("Content-Type"), r.body)
		}
	})
}

func TestBatchesOnlyOn20250326(t *testing.T) {
	f := newFixture(t, nil)
	r := f.do(t, "POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
		map[string]string{"Authorization": "Bearer " + f.alice})
	sid := r.header.Get("Mcp-Session-Id")
	h := map[string]string{"Authorization": "Bearer " + f.alice, "Mcp-Session-Id": sid}
	batch := `[{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"demo__list_files","arguments":{}}},` +
		`{"jsonrpc":"2.0","id":"b","method":"tools/call","params":{"name":"demo__nope","arguments":{}}},` +
		`{"jsonrpc":"2.0","method":"notifications/initialized"},` +
		`{"jsonrpc":"2.0","id":"c","method":"ping","Method":"x"}]`
	r = f.do(t, "POST", batch, h)
	if r.status != 200 {
		t.Fatalf("batch: %d %s", r.status, r.body)
	}
	var answers []struct {
		ID     string              `json:"id"`
		Result json.RawMessage     `json:"result"`
		Error  *struct{ Code int } `json:"error"`
	}
	if err := json.Unmarshal(r.body, &answers); err != nil || len(answers) != 3 {
		t.Fatalf("want 3 answers: %v %s", err, r.body)
	}
	byID := map[string]int{}
	for _, a := range answers {
		code := 0
		if a.Error != nil {
			code = a.Error.Code
		}
		byID[a.ID] = code
	}
	if byID["a"] != 0 || byID["b"] != jsonrpc.CodeInvalidParams || byID["c"] != jsonrpc.CodeInvalidRequest {
		t.Fatalf("answers by id %v: %s", byID, r.body)
	}
	if r := f.do(t, "POST", `[{"jsonrpc":"2.0","method":"notifications/initialized"}]`, h); r.status != 202 {
		t.Fatalf("notification-only batch: %d", r.status)
	}
	if r := f.do(t, "POST", `[]`, h); r.status != 400 {
		t.Fatalf("empty batch: %d", r.status)
	}
}

func TestACancelledRequestIsNotAnsweredAsAClosedSession(t *testing.T) {
	f := newFixture(t, nil)
	sid := f.initialize(t, f.alice)
	h := map[string]string{"Authorization": "Bearer " + f.alice, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
	got := make(chan reply, 1)
	go func() {
		got <- f.do(t, "POST", `{"jsonrpc":"2.0","id":"slow","method":"tools/call","params":{"name":"demo__generate_report","arguments":{"seconds":5,"steps":5}}}`, h)
	}()
	// Cancel once the call is in flight (bounded wait for it to register).
	for i := 0; i < 200; i++ {
		f.front.mu.Lock()
		busy := f.front.sessions[sid].s.Busy()
		f.front.mu.Unlock()
		if busy {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := f.do(t, "POST", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow","reason":"user"}}`, h); r.status != 202 {
		t.Fatalf("cancel: %d", r.status)
	}
	r := <-got
	if r.status != 200 || r.msg != nil {
		t.Fatalf("cancelled call: %d %q %s; want 200 and no answer", r.status, r.header.Get("Content-Type"), r.body)
	}
	if r := f.do(t, "POST", `{"jsonrpc":"2.0","id":2,"method":"ping"}`, h); r.status != 200 {
		t.Fatalf("the session should still be open: %d", r.status)
	}
}

func TestInitializeReadsExactMemberNames(t *testing.T) {
	f := newFixture(t, nil)
	r := f.do(t, "POST", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","PROTOCOLVERSION":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`,
		map[string]string{"Authorization": "Bearer " + f.alice})
	if !strings.Contains(string(r.body), `"protocolVersion":"2025-06-18"`) {
		t.Fatalf("a case-variant member decided the version: %s", r.body)
	}
}

// openTokens opens a token store in a real SQLite database at path.
func openTokens(t *testing.T, path string) *auth.Store {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := auth.New(db.Tokens())
	if err != nil {
		t.Fatal(err)
	}
	return store
}
