package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sallyport/sallyport/cmd/sallyport/demo"
	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// The test binary doubles as a real MCP backend: with SALLYPORT_TEST_BACKEND
// set it runs the demo server over stdio instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("SALLYPORT_TEST_SAMPLER") != "" {
		samplingBackend()
		os.Exit(0)
	}
	if os.Getenv("SALLYPORT_TEST_LISTCHANGED") != "" {
		listChangingBackend()
		os.Exit(0)
	}
	if dir := os.Getenv("SALLYPORT_TEST_BACKEND"); dir != "" {
		err := demo.Run(context.Background(), demo.Options{Sandbox: dir, Outbox: filepath.Join(dir, "outbox.jsonl")}, os.Stdin, os.Stdout)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// chanSink collects what a session sends to its client.
type chanSink struct {
	mu   sync.Mutex
	msgs []*jsonrpc.Message
	ch   chan *jsonrpc.Message
}

func newSink() *chanSink { return &chanSink{ch: make(chan *jsonrpc.Message, 1024)} }

func (c *chanSink) Send(m *jsonrpc.Message, _ json.RawMessage) {
	// Re-encode and decode: the client sees bytes, not our structs.
	out, err := jsonrpc.Decode(m.Encode(), jsonrpc.Limits{})
	if err != nil {
		panic(fmt.Sprintf("session sent an invalid message: %v: %s", err, m.Encode()))
	}
	c.ch <- out
}

// await returns the response with the given id, skipping other messages.
func (c *chanSink) await(t *testing.T, id string) *jsonrpc.Message {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-c.ch:
			if m.IsResponse() && string(m.ID) == id {
				return m
			}
			c.mu.Lock()
			c.msgs = append(c.msgs, m)
			c.mu.Unlock()
		case <-timeout:
			t.Fatalf("no response with id %s", id)
		}
	}
}

func testConfig(t *testing.T, backends ...config.Backend) *config.Config {
	t.Helper()
	cfg := config.Default()
	for i := range backends {
		b := &backends[i]
		if b.Transport == "" {
			b.Transport = "stdio"
		}
		if b.Isolation == "" {
			b.Isolation = "session"
		}
		b.Timeouts = config.Timeouts{Startup: config.Duration(20 * time.Second), Request: config.Duration(20 * time.Second), Shutdown: config.Duration(2 * time.Second)}
		b.MaxMessageBytes = cfg.Limits.MaxMessageBytes
	}
	cfg.Backends = backends
	return cfg
}

func demoBackend(t *testing.T, id string) config.Backend {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from the sandbox"), 0o644)
	return config.Backend{ID: id, Command: exe, Env: map[string]string{"SALLYPORT_TEST_BACKEND": dir}}
}

func newTestGateway(t *testing.T, cfg *config.Config, stages ...gateway.Stage) *Gateway {
	t.Helper()
	return newTestGatewayWith(t, cfg, Options{Stages: stages})
}

func newTestGatewayWith(t *testing.T, cfg *config.Config, opts Options) *Gateway {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts.Config, opts.Logger, opts.Version = cfg, log, "test"
	g := New(opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	return g
}

func request(id int, method, params string) *jsonrpc.Message {
	var p json.RawMessage
	if params != "" {
		p = json.RawMessage(params)
	}
	return jsonrpc.NewRequest(json.RawMessage(fmt.Sprint(id)), method, p)
}

var principalAlice = gateway.Principal{ID: "alice"}

func itoa(i int) string { return fmt.Sprint(i) }

func initSession(t *testing.T, g *Gateway) (*Session, *chanSink) {
	t.Helper()
	sink := newSink()
	s, err := g.NewSession(NewSessionID(), "test", gateway.Principal{ID: "alice"}, sink)
	if err != nil {
		t.Fatal(err)
	}
	s.HandleMessage(request(0, "initialize", `{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}`))
	resp := sink.await(t, "0")
	if resp.Error != nil {
		t.Fatalf("initialize: %v", resp.Error)
	}
	s.HandleMessage(jsonrpc.NewNotification("notifications/initialized", nil))
	return s, sink
}

func TestAggregationAndRouting(t *testing.T) {
	g := newTestGateway(t, testConfig(t, demoBackend(t, "alpha"), demoBackend(t, "beta")))
	s, sink := initSession(t, g)

	t.Run("tools are listed under both backends' namespaces", func(t *testing.T) {
		s.HandleMessage(request(1, "tools/list", ""))
		resp := sink.await(t, "1")
		var r struct {
			Tools []struct {
				Name        string          `json:"name"`
				InputSchema json.RawMessage `json:"inputSchema"`
			} `json:"tools"`
		}
		if err := json.Unmarshal(resp.Result, &r); err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, tl := range r.Tools {
			names[tl.Name] = true
		}
		for _, want := range []string{"alpha__read_file", "beta__read_file", "alpha__lookup_customer", "beta__generate_report"} {
			if !names[want] {
				t.Errorf("tools/list lacks %s; got %v", want, names)
			}
		}
	})
	t.Run("a call is routed to its backend with the prefix stripped", func(t *testing.T) {
		s.HandleMessage(request(2, "tools/call", `{"name":"beta__read_file","arguments":{"path":"hello.txt"}}`))
		resp := sink.await(t, "2")
		if resp.Error != nil || !strings.Contains(string(resp.Result), "hello from the sandbox") {
			t.Fatalf("got %s / %v", resp.Result, resp.Error)
		}
	})
	t.Run("an unknown tool is invalid params", func(t *testing.T) {
		for i, name := range []string{"read_file", "gamma__read_file", "alpha__nope", "alpha__"} {
			id := 10 + i
			s.HandleMessage(request(id, "tools/call", `{"name":"`+name+`","arguments":{}}`))
			resp := sink.await(t, fmt.Sprint(id))
			if resp.Error == nil || resp.Error.Code != jsonrpc.CodeInvalidParams {
				t.Errorf("%s: got %s / %+v, want -32602", name, resp.Result, resp.Error)
			}
		}
	})
	t.Run("an unknown method is method not found", func(t *testing.T) {
		s.HandleMessage(request(20, "nope/nothing", `{}`))
		resp := sink.await(t, "20")
		if resp.Error == nil || resp.Error.Code != jsonrpc.CodeMethodNotFound {
			t.Fatalf("got %+v", resp.Error)
		}
	})
}

func TestProgressIsMappedBackToTheClientsToken(t *testing.T) {
	g := newTestGateway(t, testConfig(t, demoBackend(t, "demo")))
	s, sink := initSession(t, g)
	s.HandleMessage(request(7, "tools/call", `{"name":"demo__generate_report","arguments":{"seconds":0.2,"steps":3},"_meta":{"progressToken":"client-token"}}`))
	resp := sink.await(t, "7")
	if resp.Error != nil {
		t.Fatalf("call: %v", resp.Error)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	n := 0
	for _, m := range sink.msgs {
		if m.Method == "notifications/progress" {
			tok, _ := jsonrpc.Member(m.Params, "progressToken")
			if string(tok) != `"client-token"` {
				t.Errorf("progress token %s, want the client's", tok)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no progress notification reached the client")
	}
}

func TestDeadBackendIsReportedNotFatal(t *testing.T) {
	bad := config.Backend{ID: "broken", Command: "/nonexistent/backend"}
	g := newTestGateway(t, testConfig(t, demoBackend(t, "good"), bad))
	s, sink := initSession(t, g)
	s.HandleMessage(request(1, "tools/list", ""))
	resp := sink.await(t, "1")
	if resp.Error != nil {
		t.Fatalf("tools/list failed: %v", resp.Error)
	}
	if !strings.Contains(string(resp.Result), `"good__read_file"`) {
		t.Errorf("good backend's tools missing: %s", resp.Result)
	}
	if !strings.Contains(string(resp.Result), `"io.sallyport/unavailable":[{"backend":"broken"`) {
		t.Errorf("broken backend not reported: %s", resp.Result)
	}
	s.HandleMessage(request(2, "tools/call", `{"name":"broken__x","arguments":{}}`))
	resp = sink.await(t, "2")
	if resp.Error == nil || resp.Error.Code != gateway.CodeBackendUnavailable {
		t.Fatalf("call to dead backend: %+v", resp.Error)
	}
}

// refuseStage refuses every tools/call: the pipeline seam in action.
type refuseStage struct{ seen []string }

func (r *refuseStage) Handle(ctx context.Context, x *gateway.Exchange, next gateway.Handler) error {
	if x.Method == "tools/call" && x.Direction == gateway.ClientToBackend {
		r.seen = append(r.seen, x.Backend+"/"+x.Target+" "+string(x.Arguments))
		return gateway.Errorf(gateway.CodeRefused, "refused by test stage")
	}
	return next.Handle(ctx, x)
}

func TestAStageCanRefuseBeforeTheBackendSeesTheCall(t *testing.T) {
	st := &refuseStage{}
	g := newTestGateway(t, testConfig(t, demoBackend(t, "demo")), st)
	s, sink := initSession(t, g)
	s.HandleMessage(request(3, "tools/call", `{"name":"demo__send_email","arguments":{"to":"a@example.com","subject":"s","body":"b"}}`))
	resp := sink.await(t, "3")
	if resp.Error == nil || resp.Error.Code != gateway.CodeRefused {
		t.Fatalf("got %s / %+v", resp.Result, resp.Error)
	}
	if len(st.seen) != 1 || st.seen[0] != `demo/send_email {"to":"a@example.com","subject":"s","body":"b"}` {
		t.Fatalf("stage saw %q", st.seen)
	}
}

// listChangingBackend is a raw stdio MCP server whose tool list grows when
// its "grow" tool is called; it then sends notifications/tools/list_changed.
func listChangingBackend() {
	in := bufio.NewReader(os.Stdin)
	tools := `{"name":"grow","inputSchema":{"type":"object"}},{"name":"flood","inputSchema":{"type":"object"}},{"name":"prog","inputSchema":{"type":"object"}}`
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			return
		}
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if json.Unmarshal([]byte(line), &req) != nil || req.ID == nil {
			continue
		}
		var result string
		switch req.Method {
		case "initialize":
			result = `{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":true}},"serverInfo":{"name":"lc","version":"1"}}`
		case "tools/list":
			result = `{"tools":[` + tools + `]}`
		case "tools/call":
			if strings.Contains(line, `"prog"`) {
				var call struct {
					Params struct {
						Meta struct {
							ProgressToken json.RawMessage `json:"progressToken"`
						} `json:"_meta"`
					} `json:"params"`
				}
				json.Unmarshal([]byte(line), &call)
				for _, p := range []string{"1", "1", "0.5", "2"} {
					fmt.Printf(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":%s,"progress":%s}}`+"\n", call.Params.Meta.ProgressToken, p)
				}
				fmt.Printf(`{"jsonrpc":"2.0","id":%s,"result":{"content":[]}}`+"\n", req.ID)
				continue
			}
			if strings.Contains(line, `"flood"`) {
				fmt.Printf(`{"jsonrpc":"2.0","id":%s,"result":{"content":[]}}`+"\n", req.ID)
				for range 2000 {
					fmt.Println(`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`)
				}
				continue
			}
			tools += `,{"name":"grown","inputSchema":{"type":"object"}}`
			result = `{"content":[]}`
		}
		fmt.Printf(`{"jsonrpc":"2.0","id":%s,"result":%s}`+"\n", req.ID, result)
		if req.Method == "tools/call" {
			fmt.Println(`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`)
		}
	}
}

func TestBackendListChangedRelistsAndNotifies(t *testing.T) {
	exe, _ := os.Executable()
	g := newTestGateway(t, testConfig(t, config.Backend{ID: "lc", Command: exe, Env: map[string]string{"SALLYPORT_TEST_LISTCHANGED": "1"}}))
	s, sink := initSession(t, g)
	s.HandleMessage(request(1, "tools/call", `{"name":"lc__grow","arguments":{}}`))
	if resp := sink.await(t, "1"); resp.Error != nil {
		t.Fatal(resp.Error)
	}
	deadline := time.After(10 * time.Second)
	for notified := false; !notified; {
		sink.mu.Lock()
		for _, m := range sink.msgs {
			notified = notified || m.Method == "notifications/tools/list_changed"
		}
		sink.mu.Unlock()
		select {
		case m := <-sink.ch:
			sink.mu.Lock()
			sink.msgs = append(sink.msgs, m)
			sink.mu.Unlock()
		case <-deadline:
			t.Fatal("client was not told the tool list changed")
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The new tool is routable without the client listing first: the
	// gateway re-listed the backend when it heard of the change.
	s.HandleMessage(request(2, "tools/call", `{"name":"lc__grown","arguments":{}}`))
	if resp := sink.await(t, "2"); resp.Error != nil {
		t.Fatalf("call to the new tool: %v", resp.Error)
	}
}

// samplingBackend is a raw stdio MCP server whose "ask" tool sends the
// client a sampling/createMessage request (id "b-7") and returns what the
// answer said, or the error it got.
func samplingBackend() {
	in := bufio.NewReader(os.Stdin)
	var pendingCall json.RawMessage
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			return
		}
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Result json.RawMessage `json:"result"`
			Error  json.RawMessage `json:"error"`
			Params json.RawMessage `json:"params"`
		}
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		switch {
		case m.Method == "initialize":
			fmt.Printf(`{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"sampler","version":"1"},"echoCaps":%s}}`+"\n", m.ID, m.Params)
		case m.Method == "tools/list":
			fmt.Printf(`{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"ask","inputSchema":{"type":"object"}},{"name":"caps","inputSchema":{"type":"object"}}]}}`+"\n", m.ID)
		case m.Method == "tools/call" && strings.Contains(string(m.Params), `"caps"`):
			fmt.Printf(`{"jsonrpc":"2.0","id":%s,"result":{"content":[]}}`+"\n", m.ID)
		case m.Method == "tools/call":
			pendingCall = m.ID
			fmt.Println(`{"jsonrpc":"2.0","id":"b-7","method":"sampling/createMessage","params":{"messages":[{"role":"user","content":{"type":"text","text":"hi"}}],"maxTokens":5}}`)
		case m.Method == "" && string(m.ID) == `"b-7"`:
			got := m.Result
			if got == nil {
				got = m.Error
			}
			b, _ := json.Marshal(string(got))
			fmt.Printf(`{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":%s}]}}`+"\n", pendingCall, b)
		}
	}
}

func TestSamplingIsRelayedToTheOwningClient(t *testing.T) {
	exe, _ := os.Executable()
	g := newTestGateway(t, testConfig(t, config.Backend{ID: "s", Command: exe, Env: map[string]string{"SALLYPORT_TEST_SAMPLER": "1"}}))

	t.Run("a client that declared sampling answers under the gateway's id", func(t *testing.T) {
		sink := newSink()
		s, _ := g.NewSession(NewSessionID(), "test", gateway.Principal{ID: "alice"}, sink)
		s.HandleMessage(request(0, "initialize", `{"protocolVersion":"2025-11-25","capabilities":{"sampling":{},"experimental":{"x":{}}},"clientInfo":{"name":"t","version":"1"}}`))
		sink.await(t, "0")
		s.HandleMessage(jsonrpc.NewNotification("notifications/initialized", nil))
		s.HandleMessage(request(1, "tools/call", `{"name":"s__ask","arguments":{}}`))
		var req *jsonrpc.Message
		select {
		case req = <-sink.ch:
		case <-time.After(10 * time.Second):
			t.Fatal("no sampling request reached the client")
		}
		if req.Method != "sampling/createMessage" || string(req.ID) == `"b-7"` {
			t.Fatalf("client got %s", req.Encode())
		}
		s.HandleMessage(jsonrpc.NewResult(req.ID, json.RawMessage(`{"role":"assistant","content":{"type":"text","text":"sampled!"},"model":"m"}`)))
		resp := sink.await(t, "1")
		if resp.Error != nil || !strings.Contains(string(resp.Result), `sampled!`) {
			t.Fatalf("tool result %s %v", resp.Result, resp.Error)
		}
		// An answer to nothing the gateway asked is dropped, not forwarded.
		s.HandleMessage(jsonrpc.NewResult(json.RawMessage(`"b-7"`), json.RawMessage(`{}`)))
	})
	t.Run("a client that did not declare sampling is never asked", func(t *testing.T) {
		sink := newSink()
		s, _ := g.NewSession(NewSessionID(), "test", gateway.Principal{ID: "bob"}, sink)
		s.HandleMessage(request(0, "initialize", `{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}`))
		sink.await(t, "0")
		s.HandleMessage(request(1, "tools/call", `{"name":"s__ask","arguments":{}}`))
		resp := sink.await(t, "1")
		if !strings.Contains(string(resp.Result), `-32601`) {
			t.Fatalf("backend should have been refused: %s", resp.Result)
		}
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for _, m := range sink.msgs {
			if m.Method == "sampling/createMessage" {
				t.Fatal("client without sampling got a sampling request")
			}
		}
	})
}

func TestAnUnprefixedBackendKeepsItsNames(t *testing.T) {
	plain := demoBackend(t, "plain")
	plain.Unprefixed = true
	g := newTestGateway(t, testConfig(t, plain, demoBackend(t, "beta")))
	s, sink := initSession(t, g)
	s.HandleMessage(request(1, "tools/list", ""))
	resp := sink.await(t, "1")
	for _, want := range []string{`"name":"read_file"`, `"name":"beta__read_file"`} {
		if !strings.Contains(string(resp.Result), want) {
			t.Errorf("tools/list lacks %s", want)
		}
	}
	if strings.Contains(string(resp.Result), `"plain__read_file"`) {
		t.Error("the unprefixed backend's tools are listed with a prefix")
	}
	for i, tc := range []struct{ name, want string }{
		{"read_file", "hello from the sandbox"},
		{"beta__read_file", "hello from the sandbox"},
	} {
		id := 10 + i
		s.HandleMessage(request(id, "tools/call", `{"name":"`+tc.name+`","arguments":{"path":"hello.txt"}}`))
		resp := sink.await(t, itoa(id))
		if resp.Error != nil || !strings.Contains(string(resp.Result), tc.want) {
			t.Errorf("%s: %s / %+v", tc.name, resp.Result, resp.Error)
		}
	}
	s.HandleMessage(request(20, "tools/call", `{"name":"gamma__read_file","arguments":{}}`))
	if resp := sink.await(t, "20"); resp.Error == nil || resp.Error.Code != jsonrpc.CodeInvalidParams {
		t.Errorf("unknown name: %+v", resp.Error)
	}
}

// rewriteStage replaces a tools/call's message the way a redaction or
// credential stage would.
type rewriteStage struct{ params string }

func (r rewriteStage) Handle(ctx context.Context, x *gateway.Exchange, next gateway.Handler) error {
	if x.Method == "tools/call" && x.Direction == gateway.ClientToBackend {
		x.Message = &jsonrpc.Message{ID: x.Message.ID, Method: x.Message.Method, Params: json.RawMessage(r.params)}
	}
	return next.Handle(ctx, x)
}

func TestTheBackendGetsWhatThePipelinePassed(t *testing.T) {
	t.Run("a stage's rewrite of the arguments is what the backend sees", func(t *testing.T) {
		g := newTestGateway(t, testConfig(t, demoBackend(t, "demo")), rewriteStage{`{"name":"demo__read_file","arguments":{"path":"hello.txt"}}`})
		s, sink := initSession(t, g)
		s.HandleMessage(request(1, "tools/call", `{"name":"demo__read_file","arguments":{"path":"../../etc/passwd"}}`))
		resp := sink.await(t, "1")
		if resp.Error != nil || !strings.Contains(string(resp.Result), "hello from the sandbox") {
			t.Fatalf("backend did not get the rewritten call: %s / %+v", resp.Result, resp.Error)
		}
	})
	t.Run("a stage cannot redirect the call to another tool", func(t *testing.T) {
		g := newTestGateway(t, testConfig(t, demoBackend(t, "demo")), rewriteStage{`{"name":"demo__delete_records","arguments":{"customer_ids":["cus_1001"]}}`})
		s, sink := initSession(t, g)
		s.HandleMessage(request(1, "tools/call", `{"name":"demo__list_files","arguments":{}}`))
		resp := sink.await(t, "1")
		if resp.Error == nil || resp.Error.Code != gateway.CodeRefused {
			t.Fatalf("got %s / %+v", resp.Result, resp.Error)
		}
	})
}

func TestMemberNamesThatDifferOnlyInCaseAreRefused(t *testing.T) {
	g := newTestGateway(t, testConfig(t, demoBackend(t, "demo")))
	s, sink := initSession(t, g)
	for i, params := range []string{
		// The stages would judge "arguments"; the Go demo backend would
		// act on "Arguments", the last of the two.
		`{"name":"demo__delete_records","arguments":{"customer_ids":["cus_1001"]},"Arguments":{"customer_ids":["cus_1002","cus_1003"]}}`,
		`{"name":"demo__delete_records","arguments":{"customer_ids":["cus_1001"],"Customer_IDs":["cus_1002"]}}`,
		`{"name":"demo__read_file","NAME":"demo__delete_records","arguments":{"path":"hello.txt"}}`,
	} {
		id := i + 1
		s.HandleMessage(request(id, "tools/call", params))
		resp := sink.await(t, fmt.Sprint(id))
		if resp.Error == nil || resp.Error.Code != jsonrpc.CodeInvalidParams || !strings.Contains(resp.Error.Message, "differ only in case") {
			t.Errorf("%s: got %s / %+v, want -32602 naming the names", params, resp.Result, resp.Error)
		}
	}
	// Nothing was deleted: every customer is still there.
	s.HandleMessage(request(9, "tools/call", `{"name":"demo__lookup_customer","arguments":{"customer_id":"cus_1002"}}`))
	if resp := sink.await(t, "9"); resp.Error != nil || strings.Contains(string(resp.Result), "no customer") || !strings.Contains(string(resp.Result), "cus_1002") {
		t.Errorf("lookup after the refused calls: %s / %+v", resp.Result, resp.Error)
	}
}

func TestAListChangedFloodIsCoalesced(t *testing.T) {
	exe, _ := os.Executable()
	g := newTestGateway(t, testConfig(t, config.Backend{ID: "lc", Command: exe, Env: map[string]string{"SALLYPORT_TEST_LISTCHANGED": "1"}}))
	s, sink := initSession(t, g)
	s.HandleMessage(request(1, "tools/call", `{"name":"lc__flood","arguments":{}}`))
	sink.await(t, "1")
	// Once the flood is over, a ping's answer comes after every
	// notification the gateway decided to send for it.
	time.Sleep(500 * time.Millisecond)
	s.HandleMessage(request(2, "ping", ""))
	sink.await(t, "2")
	sink.mu.Lock()
	n := 0
	for _, m := range sink.msgs {
		if m.Method == "notifications/tools/list_changed" {
			n++
		}
	}
	sink.mu.Unlock()
	if n == 0 || n > 200 {
		t.Fatalf("2000 backend list_changed became %d client notifications; want them coalesced", n)
	}
}

func TestProgressThatDoesNotIncreaseIsDropped(t *testing.T) {
	exe, _ := os.Executable()
	g := newTestGateway(t, testConfig(t, config.Backend{ID: "lc", Command: exe, Env: map[string]string{"SALLYPORT_TEST_LISTCHANGED": "1"}}))
	s, sink := initSession(t, g)
	s.HandleMessage(request(1, "tools/call", `{"name":"lc__prog","arguments":{},"_meta":{"progressToken":"p"}}`))
	sink.await(t, "1")
	sink.mu.Lock()
	defer sink.mu.Unlock()
	var got []string
	for _, m := range sink.msgs {
		if m.Method == "notifications/progress" {
			v, _ := jsonrpc.Member(m.Params, "progress")
			got = append(got, string(v))
		}
	}
	if strings.Join(got, ",") != "1,2" {
		t.Fatalf("client saw progress %v, want 1,2", got)
	}
}

func TestAClientCannotCancelAnotherClientsRequest(t *testing.T) {
	g := newTestGateway(t, testConfig(t, demoBackend(t, "demo")))
	a, sinkA := initSession(t, g)
	b, sinkB := initSession(t, g)
	slow := `{"name":"demo__generate_report","arguments":{"seconds":0.5,"steps":2}}`
	a.HandleMessage(request(1, "tools/call", slow))
	b.HandleMessage(request(1, "tools/call", slow))
	// A cancels "its" request 1, and a request 1 it does not have.
	a.HandleMessage(jsonrpc.NewNotification("notifications/cancelled", json.RawMessage(`{"requestId":1}`)))
	a.HandleMessage(jsonrpc.NewNotification("notifications/cancelled", json.RawMessage(`{"requestId":"1"}`)))
	resp := sinkB.await(t, "1")
	if resp.Error != nil || !strings.Contains(string(resp.Result), "Customer base report") {
		t.Fatalf("B's call was affected by A's cancellation: %s / %+v", resp.Result, resp.Error)
	}
	// A's own call got no answer (MCP: a cancelled request is not answered).
	// Had it not been cancelled, it would have finished with B's; give it a
	// moment more, then a ping's answer marks the end of what A received.
	time.Sleep(300 * time.Millisecond)
	a.HandleMessage(request(2, "ping", ""))
	sinkA.await(t, "2")
	sinkA.mu.Lock()
	defer sinkA.mu.Unlock()
	for _, m := range sinkA.msgs {
		if m.IsResponse() && string(m.ID) == "1" {
			t.Fatalf("A's cancelled call was answered: %s", m.Encode())
		}
	}
}
