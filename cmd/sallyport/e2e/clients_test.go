package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// This file holds the clients the tests drive the gateway with: the
// TypeScript SDK (testdata/tsclient.mjs), mcp-go, and raw HTTP.

// ---------------------------------------------------------------------------
// The TypeScript SDK client (testdata/tsclient.mjs)

// tsLine is one line of tsclient.mjs output.
type tsLine struct {
	Action          string            `json:"action"`
	Tool            string            `json:"tool"`
	OK              bool              `json:"ok"`
	Result          json.RawMessage   `json:"result"`
	Progress        []json.RawMessage `json:"progress"`
	Error           *tsError          `json:"error"`
	ProtocolVersion string            `json:"protocolVersion"`
	ServerInfo      *struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"serverInfo"`
}

type tsError struct {
	Code    *int   `json:"code"`
	Message string `json:"message"`
}

// runTSClient runs tsclient.mjs with args and returns its output lines; the
// first is the connect line. extraEnv is added to its environment.
func runTSClient(t testing.TB, extraEnv []string, args ...string) []tsLine {
	t.Helper()
	needNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*callWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, append([]string{tsclientJS()}, args...)...)
	cmd.Env = append(append(os.Environ(), envNodeModules+"="+nodeModules), extraEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("tsclient %v: timed out\nstdout:\n%s\nstderr:\n%s", args, stdout.String(), tail(stderr.String(), 16<<10))
	}
	if err != nil {
		t.Fatalf("tsclient %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, stdout.String(), tail(stderr.String(), 16<<10))
	}
	var lines []tsLine
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var l tsLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("tsclient printed a line that is not JSON: %q", sc.Text())
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 || lines[0].Action != "connect" || !lines[0].OK {
		t.Fatalf("tsclient %v: no successful connect line\nstdout:\n%s\nstderr:\n%s", args, stdout.String(), tail(stderr.String(), 16<<10))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- tsclient %v stderr ----\n%s", args, tail(stderr.String(), 16<<10))
		}
	})
	return lines
}

func tail(s string, n int) string {
	if len(s) > n {
		return "[...]\n" + s[len(s)-n:]
	}
	return s
}

// tsToolNames returns the tool names of a list-tools line.
func tsToolNames(t testing.TB, l tsLine) []string {
	t.Helper()
	if l.Action != "list-tools" || !l.OK {
		t.Fatalf("want a successful list-tools line, got %+v", l)
	}
	var res struct {
		Tools []struct {
			Name      string `json:"name"`
			Execution struct {
				TaskSupport string `json:"taskSupport"`
			} `json:"execution"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(l.Result, &res); err != nil {
		t.Fatalf("list-tools result: %v", err)
	}
	names := make([]string, 0, len(res.Tools))
	for _, tool := range res.Tools {
		// The gateway does not relay tasks, so it does not list tools that
		// can only run as one (execution.taskSupport "required").
		if tool.Execution.TaskSupport == "required" {
			continue
		}
		names = append(names, tool.Name)
	}
	return names
}

// tsText returns the text of a successful call line's result, and whether the
// result was marked isError.
func tsText(t testing.TB, l tsLine) (string, bool) {
	t.Helper()
	if l.Action != "call" || !l.OK {
		t.Fatalf("want a successful call line, got %+v (error %+v)", l, l.Error)
	}
	var res struct {
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		IsError bool `json:"isError"`
	}
	if err := json.Unmarshal(l.Result, &res); err != nil {
		t.Fatalf("call result: %v", err)
	}
	var b strings.Builder
	for _, c := range res.Content {
		b.WriteString(c.Text)
	}
	return b.String(), res.IsError
}

// ---------------------------------------------------------------------------
// mcp-go's Go client

// bearer adds an Authorization header to every request, DELETE included
// (mcp-go's WithHTTPHeaders leaves it off the DELETE that Close sends).
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// goClient is an initialized mcp-go Streamable HTTP client.
type goClient struct {
	*client.Client
	mu            sync.Mutex
	notifications []mcp.JSONRPCNotification
}

// dialGo connects an mcp-go client to url, sending token as a bearer token
// when it is not empty, and initializes a session with protocol version
// 2025-11-25. The cleanup closes it (which sends DELETE).
func dialGo(t testing.TB, url, token string) *goClient {
	t.Helper()
	c, err := connectGo(url, token)
	if err != nil {
		t.Fatalf("mcp-go client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func connectGo(url, token string) (*goClient, error) {
	var rt http.RoundTripper = http.DefaultTransport.(*http.Transport).Clone()
	if token != "" {
		rt = bearer{token: token, next: rt}
	}
	c, err := client.NewStreamableHttpClient(url, transport.WithHTTPBasicClient(&http.Client{Transport: rt}))
	if err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	gc := &goClient{Client: c}
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		gc.mu.Lock()
		gc.notifications = append(gc.notifications, n)
		gc.mu.Unlock()
	})
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	var req mcp.InitializeRequest
	req.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: "sallyport-e2e-go", Version: "1.0.0"}
	if _, err := c.Initialize(ctx, req); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("initialize: %w", err)
	}
	return gc, nil
}

// progress returns the progress notifications received so far.
func (c *goClient) progress() []mcp.JSONRPCNotification {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []mcp.JSONRPCNotification
	for _, n := range c.notifications {
		if n.Method == string(mcp.MethodNotificationProgress) {
			out = append(out, n)
		}
	}
	return out
}

// call calls a tool. A non-nil progressToken asks for progress.
func (c *goClient) call(ctx context.Context, name string, args map[string]any, progressToken any) (*mcp.CallToolResult, error) {
	var req mcp.CallToolRequest
	req.Params.Name = name
	req.Params.Arguments = args
	if progressToken != nil {
		req.Params.Meta = &mcp.Meta{ProgressToken: progressToken}
	}
	return c.CallTool(ctx, req)
}

// mustCall calls a tool and fails the test unless the call succeeds without
// isError; it returns the result's text.
func (c *goClient) mustCall(t testing.TB, name string, args map[string]any) string {
	t.Helper()
	ctx, cancel := contextWithCallWait()
	defer cancel()
	res, err := c.call(ctx, name, args, nil)
	if err != nil {
		t.Fatalf("call %s %v: %v", name, args, err)
	}
	text := resultText(res)
	if res.IsError {
		t.Fatalf("call %s %v: isError result: %s", name, args, text)
	}
	return text
}

// toolNames lists every tool, following pagination.
func (c *goClient) toolNames(t testing.TB) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	var names []string
	var req mcp.ListToolsRequest
	for {
		res, err := c.ListToolsByPage(ctx, req)
		if err != nil {
			t.Fatalf("tools/list: %v", err)
		}
		for _, tool := range res.Tools {
			names = append(names, tool.Name)
		}
		if res.NextCursor == "" {
			return names
		}
		req.Params.Cursor = res.NextCursor
	}
}

func contextWithCallWait() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callWait)
}

func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := mcp.AsTextContent(c); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// Raw JSON-RPC over HTTP

// rpcMessage is any JSON-RPC message.
type rpcMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

type rpcError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// rawResponse is an HTTP response with the JSON-RPC messages in its body.
type rawResponse struct {
	Status   int
	Header   http.Header
	Body     []byte
	Messages []rpcMessage
}

// rpcErr returns the first JSON-RPC error in the response, or nil.
func (r rawResponse) rpcErr() *rpcError {
	for _, m := range r.Messages {
		if m.Error != nil {
			return m.Error
		}
	}
	return nil
}

// response returns the first message with a result or an error.
func (r rawResponse) response() (rpcMessage, bool) {
	for _, m := range r.Messages {
		if m.Result != nil || m.Error != nil {
			return m, true
		}
	}
	return rpcMessage{}, false
}

var rawHTTP = &http.Client{Timeout: callWait}

// doRaw sends req and reads the whole response, decoding a JSON body or an
// SSE stream of JSON-RPC messages; it fails the test if there is no response.
func doRaw(t testing.TB, req *http.Request) rawResponse {
	t.Helper()
	r, err := tryRaw(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	return r
}

// tryRaw is doRaw returning the error.
func tryRaw(req *http.Request) (rawResponse, error) {
	resp, err := rawHTTP.Do(req)
	if err != nil {
		return rawResponse{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return rawResponse{}, fmt.Errorf("reading body: %w", err)
	}
	return rawResponse{Status: resp.StatusCode, Header: resp.Header, Body: body, Messages: decodeMessages(resp.Header.Get("Content-Type"), body)}, nil
}

func decodeMessages(contentType string, body []byte) []rpcMessage {
	var msgs []rpcMessage
	decode := func(data []byte) {
		data = bytes.TrimSpace(data)
		if len(data) == 0 {
			return
		}
		if data[0] == '[' {
			var batch []rpcMessage
			if json.Unmarshal(data, &batch) == nil {
				msgs = append(msgs, batch...)
			}
			return
		}
		var m rpcMessage
		if json.Unmarshal(data, &m) == nil {
			msgs = append(msgs, m)
		}
	}
	if strings.HasPrefix(contentType, "text/event-stream") {
		for _, event := range strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n\n") {
			var data []string
			for _, line := range strings.Split(event, "\n") {
				if v, ok := strings.CutPrefix(line, "data:"); ok {
					data = append(data, strings.TrimPrefix(v, " "))
				}
			}
			decode([]byte(strings.Join(data, "\n")))
		}
		return msgs
	}
	decode(body)
	return msgs
}

// rawSession is a session opened with plain HTTP requests.
type rawSession struct {
	url     string
	token   string
	id      string // Mcp-Session-Id
	version string // negotiated protocol version
}

// newRawRequest builds a POST to the MCP endpoint with the headers a
// well-behaved client sends on this session.
func (s *rawSession) newRawRequest(t testing.TB, body []byte) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
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
	return req
}

// openRawSession initializes a session with plain HTTP requests.
func openRawSession(t testing.TB, url, token string) *rawSession {
	t.Helper()
	s := &rawSession{url: url, token: token}
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"sallyport-e2e-raw","version":"1.0.0"}}}`
	r := doRaw(t, s.newRawRequest(t, []byte(init)))
	if r.Status != http.StatusOK {
		t.Fatalf("initialize: HTTP %d: %s", r.Status, r.Body)
	}
	m, ok := r.response()
	if !ok || m.Error != nil {
		t.Fatalf("initialize: no result: %s", r.Body)
	}
	var res struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(m.Result, &res); err != nil || res.ProtocolVersion == "" {
		t.Fatalf("initialize result without protocolVersion: %s", m.Result)
	}
	s.version = res.ProtocolVersion
	s.id = r.Header.Get("Mcp-Session-Id")
	if s.id == "" {
		t.Fatalf("initialize: no Mcp-Session-Id header")
	}
	n := doRaw(t, s.newRawRequest(t, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)))
	if n.Status != http.StatusAccepted {
		t.Fatalf("notifications/initialized: HTTP %d, want 202: %s", n.Status, n.Body)
	}
	return s
}

// call sends tools/call with the given id and returns the response.
func (s *rawSession) call(t testing.TB, id int, tool string, args map[string]any) rawResponse {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "id": id, "method": "tools/call",
		"params": map[string]any{"name": tool, "arguments": args},
	})
	if err != nil {
		t.Fatal(err)
	}
	return doRaw(t, s.newRawRequest(t, body))
}
