package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file holds the isolation test of issue 3: many clients at once, all
// using the same request id and the same progress token, calling through one
// gateway a tool of one backend definition that sends progress and asks the
// client for sampling. Each client is a raw Streamable HTTP client that
// records every message it receives, on the call's stream and on its GET
// stream, so that anything misrouted is seen.

// isolationClients is how many clients share the gateway at once.
const isolationClients = 50

// buildTestBackend builds testdata/testbackend (see its doc comment) into a
// temporary folder and returns the binary's path.
func buildTestBackend(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "testbackend")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/sallyport/e2e/testdata/testbackend")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build testdata/testbackend: %v\n%s", err, out)
	}
	return bin
}

func testBackendStdio(id, bin, isolation string, args ...string) backendConfig {
	return backendConfig{
		ID: id, Transport: "stdio", Command: bin, Args: args, Isolation: isolation,
		// Many backends starting at once on two cores are slow: give them
		// room, this is not what the tests measure.
		Timeouts: &timeoutsConfig{Startup: "120s", Request: "120s", Shutdown: "5s"},
	}
}

// ---------------------------------------------------------------------------
// A recording raw client

// streamClient is one raw Streamable HTTP session that answers sampling
// requests with a canned, per-client answer and records everything it
// receives.
type streamClient struct {
	s     *rawSession
	nonce string // put in the arguments and in the sampling answer

	mu       sync.Mutex
	received []streamMessage // everything but the call's own answer

	getDone chan struct{}
	getErr  error
}

// streamMessage is one message a client received and where.
type streamMessage struct {
	Stream string // "POST" (the call's stream) or "GET"
	Msg    rpcMessage
	Raw    string
}

func (c *streamClient) record(stream string, m rpcMessage, raw []byte) {
	c.mu.Lock()
	c.received = append(c.received, streamMessage{Stream: stream, Msg: m, Raw: string(raw)})
	c.mu.Unlock()
}

func (c *streamClient) messages() []streamMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]streamMessage(nil), c.received...)
}

// openStreamClient initializes a session declaring the sampling capability,
// with request id 1, and opens its GET stream.
func openStreamClient(url, token, nonce string) (*streamClient, error) {
	c := &streamClient{s: &rawSession{url: url, token: token}, nonce: nonce, getDone: make(chan struct{})}
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",` +
		`"capabilities":{"sampling":{}},"clientInfo":{"name":"sallyport-e2e-isolation","version":"1.0.0"}}}`
	req, err := c.s.newRequest(http.MethodPost, []byte(init))
	if err != nil {
		return nil, err
	}
	r, err := tryRaw(req)
	if err != nil {
		return nil, fmt.Errorf("initialize: %w", err)
	}
	m, ok := r.response()
	if r.Status != http.StatusOK || !ok || m.Error != nil {
		return nil, fmt.Errorf("initialize: HTTP %d: %s", r.Status, r.Body)
	}
	var res struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(m.Result, &res); err != nil {
		return nil, fmt.Errorf("initialize result %s: %v", m.Result, err)
	}
	c.s.version, c.s.id = res.ProtocolVersion, r.Header.Get("Mcp-Session-Id")
	if c.s.id == "" {
		return nil, errors.New("initialize: no Mcp-Session-Id")
	}
	if req, err = c.s.newRequest(http.MethodPost, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)); err != nil {
		return nil, err
	}
	if r, err = tryRaw(req); err != nil || r.Status != http.StatusAccepted {
		return nil, fmt.Errorf("notifications/initialized: HTTP %d %v: %s", r.Status, err, r.Body)
	}

	// The GET stream: its headers come once the gateway has registered it.
	if req, err = c.s.newRequest(http.MethodGet, nil); err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := streamHTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET stream: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("GET stream: HTTP %d: %s", resp.StatusCode, body)
	}
	go func() {
		defer close(c.getDone)
		defer resp.Body.Close()
		c.getErr = readSSE(resp.Body, func(m rpcMessage, raw []byte) error {
			c.record("GET", m, raw)
			if m.Method != "" && m.ID != nil {
				return c.answer(m)
			}
			return nil
		})
	}()
	return c, nil
}

// streamHTTP is for streams, which last as long as the session: no overall
// timeout (the tests bound them by closing the session).
var streamHTTP = &http.Client{}

// newRequest builds a request to the MCP endpoint with this session's
// headers.
func (s *rawSession) newRequest(method string, body []byte) (*http.Request, error) {
	req, err := http.NewRequest(method, s.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	if s.id != "" {
		req.Header.Set("Mcp-Session-Id", s.id)
	}
	if s.version != "" {
		req.Header.Set("MCP-Protocol-Version", s.version)
	}
	return req, nil
}

// answer answers a request from the server: sampling with a result that
// carries the client's nonce, anything else with method not found.
func (c *streamClient) answer(m rpcMessage) error {
	var body []byte
	if m.Method == "sampling/createMessage" {
		body, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": map[string]any{
			"role": "assistant", "model": "model-" + c.nonce, "stopReason": "endTurn",
			"content": map[string]any{"type": "text", "text": "sampled-for-" + c.nonce},
		}})
	} else {
		body, _ = json.Marshal(map[string]any{"jsonrpc": "2.0", "id": m.ID,
			"error": map[string]any{"code": -32601, "message": "not offered by this test client"}})
	}
	req, err := c.s.newRequest(http.MethodPost, body)
	if err != nil {
		return err
	}
	r, err := tryRaw(req)
	if err != nil {
		return fmt.Errorf("answering %s: %w", m.Method, err)
	}
	if r.Status != http.StatusAccepted {
		return fmt.Errorf("answering %s: HTTP %d, want 202: %s", m.Method, r.Status, r.Body)
	}
	return nil
}

// call sends tools/call with id 1 and progress token "t", answers the
// server's requests on the call's stream, records everything else, and
// returns the answer.
func (c *streamClient) call(ctx context.Context, tool string, args map[string]any) (rpcMessage, error) {
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": map[string]any{
		"name": tool, "arguments": args, "_meta": map[string]any{"progressToken": "t"},
	}})
	req, err := c.s.newRequest(http.MethodPost, body)
	if err != nil {
		return rpcMessage{}, err
	}
	resp, err := streamHTTP.Do(req.WithContext(ctx))
	if err != nil {
		return rpcMessage{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return rpcMessage{}, fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	var answer *rpcMessage
	handle := func(m rpcMessage, raw []byte) error {
		if m.Method == "" && string(m.ID) == "1" {
			if answer != nil {
				return fmt.Errorf("a second answer to id 1: %s", raw)
			}
			answer = &m
			return nil
		}
		c.record("POST", m, raw)
		if m.Method != "" && m.ID != nil {
			return c.answer(m)
		}
		return nil
	}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		err = readSSE(resp.Body, handle)
	} else {
		var b []byte
		if b, err = io.ReadAll(resp.Body); err == nil {
			for _, m := range decodeMessages("application/json", b) {
				if err = handle(m, b); err != nil {
					break
				}
			}
		}
	}
	if err != nil {
		return rpcMessage{}, err
	}
	if answer == nil {
		return rpcMessage{}, errors.New("the call's stream ended without its answer")
	}
	return *answer, nil
}

// close ends the session (DELETE) and waits for its GET stream to end.
func (c *streamClient) close() error {
	req, err := c.s.newRequest(http.MethodDelete, nil)
	if err != nil {
		return err
	}
	r, err := tryRaw(req)
	if err != nil {
		return err
	}
	if r.Status != http.StatusNoContent && r.Status != http.StatusOK {
		return fmt.Errorf("DELETE: HTTP %d: %s", r.Status, r.Body)
	}
	select {
	case <-c.getDone:
	case <-time.After(callWait):
		return errors.New("the GET stream did not end after DELETE")
	}
	return nil
}

// readSSE reads an event stream and passes each JSON-RPC message to fn,
// as it comes.
func readSSE(r io.Reader, fn func(m rpcMessage, raw []byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var data []string
	for {
		line, err := br.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if v, ok := strings.CutPrefix(line, "data:"); ok {
			data = append(data, strings.TrimPrefix(v, " "))
		} else if line == "" && len(data) > 0 {
			raw := []byte(strings.Join(data, "\n"))
			data = nil
			var m rpcMessage
			if jerr := json.Unmarshal(raw, &m); jerr != nil {
				return fmt.Errorf("event data is not a JSON-RPC message: %q", raw)
			}
			if ferr := fn(m, raw); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// ---------------------------------------------------------------------------
// What each client must have received

// progressParams are a progress notification's params.
type progressParams struct {
	ProgressToken json.RawMessage `json:"progressToken"`
	Progress      json.Number     `json:"progress"`
	Total         json.Number     `json:"total"`
	Message       string          `json:"message"`
}

// checkOwnTraffic reports, for one client, everything it received that is not
// exactly its own: three progress notifications under token "t" carrying
// its nonce, and (when wantSampling) one sampling request carrying its
// nonce. Nothing else may arrive.
func checkOwnTraffic(c *streamClient, wantSampling bool) []string {
	var problems []string
	var progress []string
	sampling := 0
	for _, r := range c.messages() {
		switch {
		case r.Msg.Method == "notifications/progress":
			var p progressParams
			if err := json.Unmarshal(r.Msg.Params, &p); err != nil {
				problems = append(problems, fmt.Sprintf("undecodable progress on %s: %s", r.Stream, r.Raw))
				continue
			}
			if string(p.ProgressToken) != `"t"` || !strings.HasSuffix(p.Message, " for "+c.nonce) || r.Stream != "POST" {
				problems = append(problems, fmt.Sprintf("progress that is not its own (want token \"t\" and nonce %s, on the call's stream), on %s: %s", c.nonce, r.Stream, r.Raw))
				continue
			}
			progress = append(progress, p.Progress.String()+"/"+p.Total.String())
		case r.Msg.Method == "sampling/createMessage" && r.Msg.ID != nil:
			var p struct {
				Messages []struct {
					Content struct {
						Text string `json:"text"`
					} `json:"content"`
				} `json:"messages"`
			}
			_ = json.Unmarshal(r.Msg.Params, &p)
			if !wantSampling || len(p.Messages) != 1 || p.Messages[0].Content.Text != "nonce:"+c.nonce {
				problems = append(problems, fmt.Sprintf("a sampling request that is not its own (nonce %s), on %s: %s", c.nonce, r.Stream, r.Raw))
				continue
			}
			sampling++
		default:
			problems = append(problems, fmt.Sprintf("an unexpected message on %s: %s", r.Stream, r.Raw))
		}
	}
	if got := strings.Join(progress, " "); got != "1/3 2/3 3/3" {
		problems = append(problems, fmt.Sprintf("its own progress was [%s], want [1/3 2/3 3/3]", got))
	}
	if wantSampling && sampling != 1 {
		problems = append(problems, fmt.Sprintf("got %d sampling requests of its own, want exactly 1", sampling))
	}
	return problems
}

// callResult decodes a tools/call answer into its text and isError.
func callResult(m rpcMessage) (text string, isError bool, err error) {
	if m.Error != nil {
		return "", false, fmt.Errorf("JSON-RPC error %d: %s", m.Error.Code, m.Error.Message)
	}
	var res struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
		IsError bool `json:"isError"`
	}
	if err := json.Unmarshal(m.Result, &res); err != nil {
		return "", false, fmt.Errorf("result %s: %v", m.Result, err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		b.WriteString(c.Text)
	}
	return b.String(), res.IsError, nil
}

// openStreamClients opens n clients at once; nonce(i) is client i's nonce.
func openStreamClients(t *testing.T, url, token string, n int, nonce func(int) string) []*streamClient {
	t.Helper()
	clients := make([]*streamClient, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() { clients[i], errs[i] = openStreamClient(url, token, nonce(i)) })
	}
	wg.Wait()
	for i, c := range clients {
		if c != nil {
			t.Cleanup(func() { _ = c.close() })
		}
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
	}
	return clients
}

// callAll makes every client call tool at once, each with its own nonce in
// the arguments, and returns the answers.
func callAll(t *testing.T, clients []*streamClient, tool string) []rpcMessage {
	t.Helper()
	answers := make([]rpcMessage, len(clients))
	errs := make([]error, len(clients))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 2*callWait)
			defer cancel()
			answers[i], errs[i] = c.call(ctx, tool, map[string]any{"nonce": c.nonce})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d (%s): %s: %v", i, clients[i].nonce, tool, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return answers
}

// closeAll ends every session, so that whatever a GET stream was going to
// carry has been received.
func closeAll(t *testing.T, clients []*streamClient) {
	t.Helper()
	for i, c := range clients {
		if err := c.close(); err != nil {
			t.Errorf("client %d: closing: %v", i, err)
		}
		if c.getErr != nil {
			t.Errorf("client %d: GET stream: %v", i, c.getErr)
		}
	}
}

// offeredCapabilities calls the backend's offered_capabilities tool on a
// fresh session and returns the capability names the backend was offered.
func offeredCapabilities(t *testing.T, url, token string) map[string]json.RawMessage {
	t.Helper()
	c, err := openStreamClient(url, token, "capabilities-probe")
	if err != nil {
		t.Fatalf("probe client: %v", err)
	}
	t.Cleanup(func() { _ = c.close() })
	ctx, cancel := contextWithCallWait()
	defer cancel()
	m, err := c.call(ctx, "iso__offered_capabilities", map[string]any{})
	if err != nil {
		t.Fatalf("iso__offered_capabilities: %v", err)
	}
	text, isError, err := callResult(m)
	if err != nil || isError {
		t.Fatalf("iso__offered_capabilities: %q isError=%v %v", text, isError, err)
	}
	var caps map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &caps); err != nil {
		t.Fatalf("iso__offered_capabilities returned %q: %v", text, err)
	}
	return caps
}

func TestIsolation(t *testing.T) {
	t.Parallel()
	bin := buildTestBackend(t)

	t.Run("50 clients with the same request id and progress token each get only their own progress, sampling request and result", func(t *testing.T) {
		t.Parallel()
		g := newGateway(t, baseConfig(testBackendStdio("iso", bin, "session")))
		token := g.token("alice", "dev")
		g.serve()

		if caps := offeredCapabilities(t, g.URL, token); caps["sampling"] == nil {
			t.Fatalf("a session-isolated backend was offered %v; want the sampling capability its client declared", keys(caps))
		}

		marker := newMarker()
		clients := openStreamClients(t, g.URL, token, isolationClients, func(i int) string {
			return fmt.Sprintf("client-%02d-%s", i, marker)
		})
		answers := callAll(t, clients, "iso__progress_then_sample")
		closeAll(t, clients)

		misrouted := 0
		for i, c := range clients {
			problems := checkOwnTraffic(c, true)
			text, isError, err := callResult(answers[i])
			want := fmt.Sprintf("nonce=%s sampled=sampled-for-%s model=model-%s", c.nonce, c.nonce, c.nonce)
			switch {
			case err != nil:
				problems = append(problems, "its result: "+err.Error())
			case isError || text != want:
				problems = append(problems, fmt.Sprintf("its result was %q (isError %v), want %q", text, isError, want))
			}
			misrouted += len(problems)
			for _, p := range problems {
				t.Errorf("client %d: %s", i, p)
			}
		}
		if misrouted > 0 {
			t.Errorf("%d misrouted, missing or unexpected messages across %d clients; zero is the only pass", misrouted, len(clients))
		}
	})

	t.Run("a shared backend is offered no sampling, its sampling request fails cleanly and reaches no client", func(t *testing.T) {
		t.Parallel()
		g := newGateway(t, baseConfig(testBackendStdio("iso", bin, "shared")))
		token := g.token("alice", "dev")
		g.serve()

		caps := offeredCapabilities(t, g.URL, token)
		for _, c := range []string{"sampling", "elicitation", "roots"} {
			if caps[c] != nil {
				t.Errorf("a shared backend was offered %q (%s); want none of the client capabilities", c, caps[c])
			}
		}

		marker := newMarker()
		clients := openStreamClients(t, g.URL, token, 4, func(i int) string {
			return fmt.Sprintf("shared-%d-%s", i, marker)
		})
		answers := callAll(t, clients, "iso__progress_then_sample")
		closeAll(t, clients)

		for i, c := range clients {
			// Progress is still each caller's own; no sampling request may
			// reach anyone.
			for _, p := range checkOwnTraffic(c, false) {
				t.Errorf("client %d: %s", i, p)
			}
			text, isError, err := callResult(answers[i])
			if err != nil {
				t.Errorf("client %d: the tool call failed instead of its sampling request: %v", i, err)
				continue
			}
			if !isError || !strings.Contains(text, "sampling failed") || !strings.Contains(text, "sampling/createMessage") {
				t.Errorf("client %d: the tool returned %q (isError %v); want its sampling request refused by the gateway", i, text, isError)
			}
		}
	})
}

func keys(m map[string]json.RawMessage) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
