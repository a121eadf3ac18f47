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
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/proxy"
	"github.com/sallyport/sallyport/gateway/wire"
)

// sseStream is an open legacy SSE stream, read by a goroutine.
type sseStream struct {
	events   chan wire.Event
	cancel   context.CancelFunc
	endpoint string // the first event's data
}

// getSSE sends GET /sse. On 200 it returns the stream (reading it in the
// background, closed at the end of the test); otherwise the reply.
func (f *fixture) getSSE(t *testing.T, headers map[string]string) (reply, *sseStream) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL+"/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	setHeaders(req, headers)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		r := reply{status: resp.StatusCode, header: resp.Header, body: b}
		r.msg, _ = jsonrpc.Decode(bytes.TrimSpace(b), jsonrpc.Limits{})
		return r, nil
	}
	st := &sseStream{events: make(chan wire.Event, 64), cancel: cancel}
	t.Cleanup(cancel)
	go func() {
		defer close(st.events)
		defer resp.Body.Close()
		rd := wire.NewSSEReader(resp.Body, 1<<20)
		for {
			ev, err := rd.Next()
			if err != nil {
				return
			}
			st.events <- ev
		}
	}()
	return reply{status: resp.StatusCode, header: resp.Header}, st
}

// openSSE opens a stream as the holder of token and reads its endpoint.
func (f *fixture) openSSE(t *testing.T, token string) *sseStream {
	t.Helper()
	r, st := f.getSSE(t, map[string]string{"Authorization": "Bearer " + token})
	if st == nil {
		t.Fatalf("GET /sse: %d %s", r.status, r.body)
	}
	ev := st.next(t)
	if ev.Event != "endpoint" {
		t.Fatalf("first event %q %s, want endpoint", ev.Event, ev.Data)
	}
	st.endpoint = string(ev.Data)
	return st
}

// next returns the stream's next event.
func (st *sseStream) next(t *testing.T) wire.Event {
	t.Helper()
	select {
	case ev, ok := <-st.events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no event within 20s")
	}
	panic("unreachable")
}

// until reads message events up to the answer with the given id (JSON);
// it returns the messages before it and the answer.
func (st *sseStream) until(t *testing.T, id string) (before []*jsonrpc.Message, answer *jsonrpc.Message) {
	t.Helper()
	for {
		ev := st.next(t)
		if ev.Event != "message" {
			t.Fatalf("event %q %s, want message", ev.Event, ev.Data)
		}
		m, err := jsonrpc.Decode(ev.Data, jsonrpc.Limits{})
		if err != nil {
			t.Fatalf("event data is not a JSON-RPC message: %v: %s", err, ev.Data)
		}
		if m.IsResponse() && string(m.ID) == id {
			return before, m
		}
		before = append(before, m)
	}
}

func setHeaders(req *http.Request, headers map[string]string) {
	for k, v := range headers {
		switch {
		case k == "Host":
			req.Host = v
		case v == "":
			req.Header.Del(k)
		default:
			req.Header.Set(k, v)
		}
	}
}

// postSSE POSTs body to a legacy endpoint path ("/message?sessionId=…").
func (f *fixture) postSSE(t *testing.T, path, body string, headers map[string]string) reply {
	t.Helper()
	req, _ := http.NewRequest("POST", f.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	setHeaders(req, headers)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, body: b}
	r.msg, _ = jsonrpc.Decode(bytes.TrimSpace(b), jsonrpc.Limits{})
	return r
}

// initializeSSE opens a stream for token and initializes its session at
// version; it returns the stream.
func (f *fixture) initializeSSE(t *testing.T, token, version string) *sseStream {
	t.Helper()
	st := f.openSSE(t, token)
	h := map[string]string{"Authorization": "Bearer " + token}
	init := `{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"` + version + `","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	if r := f.postSSE(t, st.endpoint, init, h); r.status != http.StatusAccepted {
		t.Fatalf("initialize: %d %s", r.status, r.body)
	}
	if _, a := st.until(t, `"init"`); a.Error != nil {
		t.Fatalf("initialize: %s", a.Encode())
	}
	if r := f.postSSE(t, st.endpoint, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, h); r.status != http.StatusAccepted {
		t.Fatalf("initialized: %d %s", r.status, r.body)
	}
	return st
}

func TestLegacySSEEndpointEventComesFirst(t *testing.T) {
	f := newFixture(t, nil)
	shape := regexp.MustCompile(`^/message\?sessionId=[0-9a-f]{32}$`)
	first := f.openSSE(t, f.alice)
	second := f.openSSE(t, f.alice)
	tests := []struct {
		name string
		ok   bool
	}{
		{"the endpoint is a path with a 128-bit hex session id", shape.MatchString(first.endpoint) && shape.MatchString(second.endpoint)},
		{"each stream gets a new session id", first.endpoint != second.endpoint},
		{"the bearer token is not in the URL", !strings.Contains(first.endpoint, f.alice) && !strings.Contains(first.endpoint, "spt_")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.ok {
				t.Fatalf("endpoints %q and %q", first.endpoint, second.endpoint)
			}
		})
	}
}

func TestLegacySSEServesASession(t *testing.T) {
	f := newFixture(t, nil)
	st := f.openSSE(t, f.alice)
	h := map[string]string{"Authorization": "Bearer " + f.alice}
	tests := []struct {
		name  string
		body  string
		id    string
		check func(before []*jsonrpc.Message, answer *jsonrpc.Message) error
	}{
		{"initialize is answered on the stream", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`, `1`,
			func(_ []*jsonrpc.Message, a *jsonrpc.Message) error {
				if !bytes.Contains(a.Result, []byte(`"protocolVersion":"2024-11-05"`)) {
					return fmt.Errorf("version not negotiated: %s", a.Result)
				}
				return nil
			}},
		{"the initialized notification is accepted", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, ``, nil},
		{"tools/list lists the backend's tools, namespaced", `{"jsonrpc":"2.0","id":"list","method":"tools/list"}`, `"list"`,
			func(_ []*jsonrpc.Message, a *jsonrpc.Message) error {
				if !bytes.Contains(a.Result, []byte(`"name":"demo__list_files"`)) {
					return fmt.Errorf("no demo__list_files: %s", a.Result)
				}
				return nil
			}},
		{"tools/call calls the backend", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"demo__list_files","arguments":{}}}`, `3`,
			func(_ []*jsonrpc.Message, a *jsonrpc.Message) error {
				if a.Error != nil || bytes.Contains(a.Result, []byte(`"isError":true`)) {
					return fmt.Errorf("call failed: %s", a.Encode())
				}
				return nil
			}},
		{"progress comes on the stream before the answer", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"demo__generate_report","arguments":{"seconds":0.2,"steps":3},"_meta":{"progressToken":"p"}}}`, `4`,
			func(before []*jsonrpc.Message, a *jsonrpc.Message) error {
				n := 0
				for _, m := range before {
					if m.Method == "notifications/progress" && bytes.Contains(m.Params, []byte(`"progressToken":"p"`)) {
						n++
					}
				}
				if n == 0 || a.Error != nil {
					return fmt.Errorf("%d progress notifications, answer %s", n, a.Encode())
				}
				return nil
			}},
		{"an unknown tool gets its error on the stream", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"demo__nope","arguments":{}}}`, `5`,
			func(_ []*jsonrpc.Message, a *jsonrpc.Message) error {
				if a.Error == nil || a.Error.Code != jsonrpc.CodeInvalidParams {
					return fmt.Errorf("answer %s", a.Encode())
				}
				return nil
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.postSSE(t, st.endpoint, tc.body, h)
			if r.status != http.StatusAccepted || len(r.body) != 0 {
				t.Fatalf("POST: %d %s, want 202 and no body", r.status, r.body)
			}
			if tc.id == "" {
				return
			}
			before, answer := st.until(t, tc.id)
			if err := tc.check(before, answer); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLegacySSEHostileInput(t *testing.T) {
	f := newFixture(t, nil)
	st := f.initializeSSE(t, f.alice, "2024-11-05")
	ok := map[string]string{"Authorization": "Bearer " + f.alice}
	with := func(kv ...string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + f.alice}
		for i := 0; i < len(kv); i += 2 {
			h[kv[i]] = kv[i+1]
		}
		return h
	}
	call := `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"demo__list_files","arguments":{}}}`
	other := f.openSSE(t, f.bob)

	t.Run("GET", func(t *testing.T) {
		tests := []struct {
			name    string
			headers map[string]string
			status  int
		}{
			{"refuse / foreign origin", with("Origin", "https://evil.example"), 403},
			{"refuse / rebinding host", with("Host", "evil.example:80"), 403},
			{"refuse / no token", with("Authorization", ""), 401},
			{"refuse / unknown token", with("Authorization", "Bearer spt_not-a-real-token"), 401},
			{"refuse / accepts no event stream", with("Accept", "application/json"), 406},
			{"accept / allowed origin", with("Origin", "http://localhost:6274"), 200},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r, s := f.getSSE(t, tc.headers)
				if s != nil {
					s.cancel()
				}
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
				if tc.status != 200 && (r.msg == nil || r.msg.Error == nil) {
					t.Fatalf("body %s, want a JSON-RPC error", r.body)
				}
			})
		}
	})

	t.Run("POST", func(t *testing.T) {
		tests := []struct {
			name    string
			path    string
			body    string
			headers map[string]string
			status  int
			code    int // 0: no JSON-RPC error expected in the body
		}{
			{"refuse / another principal's session", st.endpoint, call, with("Authorization", "Bearer "+f.bob), 404, jsonrpc.CodeInvalidRequest},
			{"refuse / own token on another principal's session", other.endpoint, call, ok, 404, jsonrpc.CodeInvalidRequest},
			{"refuse / unknown session id", "/message?sessionId=0123456789abcdef0123456789abcdef", call, ok, 404, jsonrpc.CodeInvalidRequest},
			{"refuse / missing session id", "/message", call, ok, 400, jsonrpc.CodeInvalidRequest},
			{"refuse / text/plain body", st.endpoint, call, with("Content-Type", "text/plain"), 415, jsonrpc.CodeInvalidRequest},
			{"refuse / oversized body", st.endpoint, `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", 70<<10) + `"}}`, ok, 413, jsonrpc.CodeInvalidRequest},
			{"refuse / foreign origin", st.endpoint, call, with("Origin", "https://evil.example"), 403, jsonrpc.CodeInvalidRequest},
			{"refuse / rebinding host", st.endpoint, call, with("Host", "evil.example:80"), 403, jsonrpc.CodeInvalidRequest},
			{"refuse / no token", st.endpoint, call, with("Authorization", ""), 401, jsonrpc.CodeInvalidRequest},
			{"refuse / duplicate keys", st.endpoint, `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}`, ok, 400, jsonrpc.CodeInvalidRequest},
			{"refuse / not JSON", st.endpoint, `{"jsonrpc":`, ok, 400, jsonrpc.CodeParseError},
			{"refuse / batch on 2024-11-05", st.endpoint, `[` + call + `]`, ok, 400, jsonrpc.CodeInvalidRequest},
			{"refuse / unsupported protocol version header", st.endpoint, call, with("Mcp-Protocol-Version", "2099-01-01"), 400, jsonrpc.CodeInvalidRequest},
			{"accept / a response to no request", st.endpoint, `{"jsonrpc":"2.0","id":"s-1","result":{}}`, ok, 202, 0},
			{"accept / allowed origin", st.endpoint, `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`, with("Origin", "http://localhost:6274"), 202, 0},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				r := f.postSSE(t, tc.path, tc.body, tc.headers)
				if r.status != tc.status {
					t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
				}
				if tc.code != 0 && (r.msg == nil || r.msg.Error == nil || r.msg.Error.Code != tc.code) {
					t.Fatalf("body %s, want JSON-RPC error %d", r.body, tc.code)
				}
				// The session keeps serving, on its own stream only.
				id := strconv.Itoa(100 + i)
				if r := f.postSSE(t, st.endpoint, `{"jsonrpc":"2.0","id":`+id+`,"method":"ping"}`, ok); r.status != 202 {
					t.Fatalf("ping after hostile input: %d %s", r.status, r.body)
				}
				before, answer := st.until(t, id)
				if answer.Error != nil || len(before) != 0 {
					t.Fatalf("ping answer %s after %d other messages", answer.Encode(), len(before))
				}
			})
		}
	})
}

func TestLegacySSEClosingTheStreamReapsTheBackend(t *testing.T) {
	f := newFixture(t, nil)
	st := f.initializeSSE(t, f.alice, "2024-11-05")
	h := map[string]string{"Authorization": "Bearer " + f.alice}
	f.postSSE(t, st.endpoint, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__list_files","arguments":{}}}`, h)
	if _, a := st.until(t, `2`); a.Error != nil {
		t.Fatalf("call: %s", a.Encode())
	}
	pids := backendPids(t, f)
	if len(pids) != 1 {
		t.Fatalf("backend pids %v, want one", pids)
	}
	st.cancel()
	waitGone(t, pids...)
	if r := f.postSSE(t, st.endpoint, `{"jsonrpc":"2.0","id":3,"method":"ping"}`, h); r.status != http.StatusNotFound {
		t.Fatalf("POST after the stream closed: %d %s", r.status, r.body)
	}
}

func TestLegacySSERespectsMaxSessions(t *testing.T) {
	f := newFixture(t, func(c *config.Config) { c.HTTP.MaxSessions = 1 })
	h := map[string]string{"Authorization": "Bearer " + f.alice}
	first := f.openSSE(t, f.alice)
	t.Run("a stream beyond the limit gets 503", func(t *testing.T) {
		if r, st := f.getSSE(t, h); st != nil || r.status != http.StatusServiceUnavailable {
			t.Fatalf("second GET: %d %s", r.status, r.body)
		}
	})
	t.Run("closing a stream frees its place", func(t *testing.T) {
		first.cancel()
		deadline := time.Now().Add(15 * time.Second)
		for {
			r, st := f.getSSE(t, h)
			if st != nil {
				return
			}
			if r.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("GET after closing: %d %s", r.status, r.body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func TestLegacySSEBatchesOnlyOn20250326(t *testing.T) {
	f := newFixture(t, nil)
	st := f.initializeSSE(t, f.alice, "2025-03-26")
	h := map[string]string{"Authorization": "Bearer " + f.alice}
	tests := []struct {
		name   string
		body   string
		status int
		ids    []string // the answers expected on the stream, as one event
	}{
		{"a batch is answered on the stream as one array",
			`[{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"demo__list_files","arguments":{}}},` +
				`{"jsonrpc":"2.0","id":"b","method":"ping"},` +
				`{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}]`, 202, []string{"a", "b"}},
		{"a notification-only batch has no answer", `[{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}]`, 202, nil},
		{"an empty batch is refused", `[]`, 400, nil},
		{"an undecodable batch is refused", `[{"jsonrpc":"2.0","id":1,"method":"ping"`, 400, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.postSSE(t, st.endpoint, tc.body, h)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.ids == nil {
				return
			}
			ev := st.next(t)
			var answers []struct {
				ID    string          `json:"id"`
				Error json.RawMessage `json:"error"`
			}
			if err := json.Unmarshal(ev.Data, &answers); err != nil || ev.Event != "message" {
				t.Fatalf("event %q: %v: %s", ev.Event, err, ev.Data)
			}
			var got []string
			for _, a := range answers {
				if a.Error != nil {
					t.Fatalf("error answer: %s", ev.Data)
				}
				got = append(got, a.ID)
			}
			if strings.Join(got, ",") != strings.Join(tc.ids, ",") {
				t.Fatalf("answers %v, want %v", got, tc.ids)
			}
		})
	}
}

func TestLegacySSESinkNeverBlocks(t *testing.T) {
	note := jsonrpc.NewNotification("notifications/message", json.RawMessage(`{}`))
	answer := jsonrpc.NewResult(json.RawMessage(`1`), json.RawMessage(`{}`))
	request := jsonrpc.NewRequest(json.RawMessage(`"s-1"`), "sampling/createMessage", json.RawMessage(`{}`))
	repeat := func(m *jsonrpc.Message, n int) []*jsonrpc.Message {
		out := make([]*jsonrpc.Message, n)
		for i := range out {
			out[i] = m
		}
		return out
	}
	tests := []struct {
		name    string
		send    []*jsonrpc.Message
		ended   bool
		queued  int
		dropped int64
		stuck   bool
	}{
		{"notifications beyond three quarters of the queue are dropped", repeat(note, 10), false, 6, 4, false},
		{"answers still fit in the room kept for them", append(repeat(note, 10), answer, answer), false, 8, 4, false},
		{"an answer that does not fit ends the stream", repeat(answer, 9), false, 8, 0, true},
		{"a backend's request that does not fit ends the stream", append(repeat(answer, 8), request), false, 8, 0, true},
		{"nothing is queued once the stream has ended", []*jsonrpc.Message{answer, note}, true, 0, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ss := newSSESession(8)
			ss.ended.Store(tc.ended)
			for _, m := range tc.send {
				ss.Send(m, nil) // never blocks: the test would hang
			}
			stuck := false
			select {
			case <-ss.stuck:
				stuck = true
			default:
			}
			if len(ss.q) != tc.queued || ss.dropped.Load() != tc.dropped || stuck != tc.stuck {
				t.Fatalf("queued %d, dropped %d, stuck %v; want %d, %d, %v", len(ss.q), ss.dropped.Load(), stuck, tc.queued, tc.dropped, tc.stuck)
			}
		})
	}
}

// lockedBuffer is a log destination safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestLegacySSESessionKeyIsNeverLogged(t *testing.T) {
	logs := &lockedBuffer{}
	f := newFixture(t, nil)
	// The same gateway and frontend as the fixture's, logging everything.
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := f.front.cfg
	store := openTokens(t, cfg.Database)
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
	lf := &fixture{srv: srv, front: front, alice: f.alice, bob: f.bob, host: strings.TrimPrefix(srv.URL, "http://")}

	st := lf.initializeSSE(t, lf.alice, "2024-11-05")
	key := strings.TrimPrefix(st.endpoint, "/message?sessionId=")
	h := map[string]string{"Authorization": "Bearer " + lf.alice}
	lf.postSSE(t, st.endpoint, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__list_files","arguments":{}}}`, h)
	st.until(t, `2`)
	pids := backendPids(t, lf)
	st.cancel()
	waitGone(t, pids...)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "legacy SSE session closed") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	out := logs.String()
	if !strings.Contains(out, "legacy SSE session opened") || !strings.Contains(out, "method=tools/call") {
		t.Fatalf("the session's traffic was not logged:\n%s", out)
	}
	if strings.Contains(out, key) {
		t.Fatalf("the endpoint's session key %s is in the logs:\n%s", key, out)
	}
}

// backendPids returns the fixture's running backend processes: the test
// process's children started with the fixture's sandbox.
func backendPids(t *testing.T, f *fixture) []int {
	t.Helper()
	marker := []byte("SALLYPORT_TEST_BACKEND=" + f.front.cfg.Backends[0].Env["SALLYPORT_TEST_BACKEND"] + "\x00")
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !alive(pid) {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The fields after the command name: state, then the parent's pid.
		rest := stat[bytes.LastIndexByte(stat, ')')+1:]
		fields := strings.Fields(string(rest))
		if len(fields) < 2 || fields[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, marker) {
			pids = append(pids, pid)
		}
	}
	return pids
}
