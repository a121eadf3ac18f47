package demo

// These tests drive Run over io.Pipe with raw JSON-RPC lines, as the gateway
// does with the demo-server process. mcp-go's stdio session is process-wide,
// so they do not run in parallel with each other.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// wireMessage is any JSON-RPC 2.0 message as read from stdout.
type wireMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// validateJSONRPC checks that line is exactly one JSON-RPC 2.0 request,
// notification or response, ended by a newline.
func validateJSONRPC(line []byte) error {
	if !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
		return fmt.Errorf("not one newline-terminated line")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	for key := range fields {
		if !slices.Contains([]string{"jsonrpc", "id", "method", "params", "result", "error"}, key) {
			return fmt.Errorf("unexpected member %q", key)
		}
	}
	var m wireMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return err
	}
	if m.JSONRPC != "2.0" {
		return fmt.Errorf("jsonrpc = %q", m.JSONRPC)
	}
	_, hasID := fields["id"]
	_, hasResult := fields["result"]
	_, hasError := fields["error"]
	switch {
	case m.Method != "":
		if hasResult || hasError {
			return fmt.Errorf("a request or notification with a result or error")
		}
	case !hasID:
		return fmt.Errorf("a response without an id")
	case hasResult == hasError:
		return fmt.Errorf("a response needs exactly one of result and error")
	case hasError && (m.Error == nil || m.Error.Message == ""):
		return fmt.Errorf("an error without code and message")
	}
	if hasID {
		var id any
		if err := json.Unmarshal(m.ID, &id); err != nil {
			return err
		}
		switch id.(type) {
		case string, float64:
		case nil:
			if !hasError {
				return fmt.Errorf("a null id outside an error response")
			}
		default:
			return fmt.Errorf("id %s is neither a string nor a number", m.ID)
		}
	}
	return nil
}

// stdioHarness runs Run over a pair of pipes.
type stdioHarness struct {
	t     *testing.T
	stdin *io.PipeWriter
	lines chan []byte
	done  chan error

	mu            sync.Mutex
	all           [][]byte
	notifications []wireMessage
}

func startRun(t *testing.T, ctx context.Context, opts Options) *stdioHarness {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	h := &stdioHarness{t: t, stdin: inW, lines: make(chan []byte, 1024), done: make(chan error, 1)}
	go func() {
		err := Run(ctx, opts, inR, outW)
		outW.Close()
		h.done <- err
	}()
	go func() {
		r := bufio.NewReader(outR)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				h.lines <- line
			}
			if err != nil {
				close(h.lines)
				return
			}
		}
	}()
	// Closing stdin ends Run, and releases mcp-go's reading goroutine if ctx
	// ended Run first.
	t.Cleanup(func() {
		inW.Close()
		select {
		case <-h.done:
		case <-time.After(waitTimeout):
			t.Error("Run did not return after stdin closed")
		}
	})
	return h
}

// send writes v as one JSON line to the server's stdin.
func (h *stdioHarness) send(v any) {
	h.t.Helper()
	line, err := json.Marshal(v)
	if err != nil {
		h.t.Fatal(err)
	}
	h.sendRaw(append(line, '\n'))
}

func (h *stdioHarness) sendRaw(line []byte) {
	h.t.Helper()
	if _, err := h.stdin.Write(line); err != nil {
		h.t.Fatalf("write stdin: %v", err)
	}
}

// next reads one stdout line, checks it is valid JSON-RPC and records it.
func (h *stdioHarness) next() (wireMessage, bool) {
	h.t.Helper()
	select {
	case line, ok := <-h.lines:
		if !ok {
			return wireMessage{}, false
		}
		if err := validateJSONRPC(line); err != nil {
			h.t.Fatalf("stdout line is not valid JSON-RPC (%v): %.200s", err, line)
		}
		var m wireMessage
		if err := json.Unmarshal(line, &m); err != nil {
			h.t.Fatal(err)
		}
		h.mu.Lock()
		h.all = append(h.all, line)
		if m.Method != "" {
			h.notifications = append(h.notifications, m)
		}
		h.mu.Unlock()
		return m, true
	case <-time.After(waitTimeout):
		h.t.Fatal("no output from the server")
		return wireMessage{}, false
	}
}

// await reads stdout until the response to request id arrives.
func (h *stdioHarness) await(id string) wireMessage {
	h.t.Helper()
	for {
		m, ok := h.next()
		if !ok {
			h.t.Fatalf("stdout closed before the response to %s", id)
		}
		if m.Method == "" && string(m.ID) == id {
			return m
		}
	}
}

// call sends a request and returns the result of its response.
func (h *stdioHarness) call(id int, method string, params any) json.RawMessage {
	h.t.Helper()
	h.send(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	m := h.await(fmt.Sprint(id))
	if m.Error != nil {
		h.t.Fatalf("%s: error %d %s", method, m.Error.Code, m.Error.Message)
	}
	return m.Result
}

// progress returns the progress notifications seen so far for token.
func (h *stdioHarness) progress(token string) []progressParams {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []progressParams
	for _, n := range h.notifications {
		var p progressParams
		if n.Method == string(mcp.MethodNotificationProgress) && json.Unmarshal(n.Params, &p) == nil && p.ProgressToken == token {
			out = append(out, p)
		}
	}
	return out
}

// awaitProgress reads stdout until n progress notifications for token have
// arrived; they may trail the response.
func (h *stdioHarness) awaitProgress(token string, n int) []progressParams {
	h.t.Helper()
	for len(h.progress(token)) < n {
		if _, ok := h.next(); !ok {
			h.t.Fatalf("stdout closed after %d of %d progress notifications", len(h.progress(token)), n)
		}
	}
	return h.progress(token)
}

// initialize performs the MCP handshake.
func (h *stdioHarness) initialize() mcp.InitializeResult {
	h.t.Helper()
	raw := h.call(1, "initialize", map[string]any{
		"protocolVersion": mcp.LATEST_LEGACY_PROTOCOL_VERSION,
		"capabilities":    map[string]any{},
		"clientInfo":      map[string]any{"name": "raw-test", "version": "1.0.0"},
	})
	var res mcp.InitializeResult
	if err := json.Unmarshal(raw, &res); err != nil {
		h.t.Fatal(err)
	}
	h.send(map[string]any{"jsonrpc": "2.0", "method": "notifications/initialized"})
	return res
}

func decodeToolResult(t *testing.T, raw json.RawMessage) *mcp.CallToolResult {
	t.Helper()
	res, err := mcp.ParseCallToolResult(&raw)
	if err != nil {
		t.Fatalf("parse tool result: %v", err)
	}
	return res
}

func TestRunServesRawJSONRPC(t *testing.T) {
	env := newTestEnv(t)
	h := startRun(t, t.Context(), env.options(nil))

	init := h.initialize()
	t.Run("initialize names the server and describes it", func(t *testing.T) {
		if init.ServerInfo.Name != serverName || init.ServerInfo.Version == "" || init.Instructions == "" {
			t.Errorf("initialize result = %+v", init)
		}
		if init.Capabilities.Tools == nil || init.Capabilities.Resources == nil || init.Capabilities.Prompts == nil {
			t.Errorf("capabilities = %+v", init.Capabilities)
		}
	})
	t.Run("tools/list returns the six tools", func(t *testing.T) {
		var res mcp.ListToolsResult
		if err := json.Unmarshal(h.call(2, "tools/list", map[string]any{}), &res); err != nil {
			t.Fatal(err)
		}
		if len(res.Tools) != 6 {
			t.Errorf("got %d tools", len(res.Tools))
		}
	})
	t.Run("tools/call read_file returns the file", func(t *testing.T) {
		res := decodeToolResult(t, h.call(3, "tools/call", map[string]any{"name": "read_file", "arguments": map[string]any{"path": "notes/plan.md"}}))
		if res.IsError || !strings.Contains(resultText(res), "Ship widgets.") {
			t.Errorf("result = %v %q", res.IsError, resultText(res))
		}
	})
	t.Run("a 1 MiB file comes back in one response line of over 2 MB", func(t *testing.T) {
		res := decodeToolResult(t, h.call(4, "tools/call", map[string]any{"name": "read_file", "arguments": map[string]any{"path": "data/limit.txt"}}))
		if res.IsError || len(resultText(res)) != maxReadBytes {
			t.Fatalf("result = %v, %d bytes", res.IsError, len(resultText(res)))
		}
		h.mu.Lock()
		last := h.all[len(h.all)-1]
		h.mu.Unlock()
		if len(last) < 2*maxReadBytes {
			t.Errorf("response line is %d bytes, want text and structured content", len(last))
		}
	})
	t.Run("a 2 MB request line is read whole", func(t *testing.T) {
		body := strings.Repeat("0123456789abcdef", (2<<20)/16)
		res := decodeToolResult(t, h.call(5, "tools/call", map[string]any{"name": "send_email", "arguments": map[string]any{
			"to": []string{"ana.ruiz@example.com"}, "subject": "Large attachment", "body": body,
		}}))
		if res.IsError {
			t.Fatalf("send_email: %s", resultText(res))
		}
		lines := readOutbox(t, env.outbox)
		if len(lines) != 1 || lines[0].Body != body {
			t.Fatalf("outbox has %d lines; want one with the whole %d-byte body", len(lines), len(body))
		}
	})
	t.Run("tools/call generate_report sends progress notifications", func(t *testing.T) {
		res := decodeToolResult(t, h.call(6, "tools/call", map[string]any{
			"name":      "generate_report",
			"arguments": map[string]any{"seconds": 0, "steps": 3},
			"_meta":     map[string]any{"progressToken": "p1"},
		}))
		if res.IsError {
			t.Fatalf("generate_report: %s", resultText(res))
		}
		got := h.awaitProgress("p1", 3)
		for i, p := range got {
			if p.Progress != float64(i+1) || p.Total != 3 {
				t.Errorf("notification %d = %+v", i, p)
			}
		}
	})
	t.Run("a line that is not JSON gets a parse error response", func(t *testing.T) {
		h.sendRaw([]byte("this is not json\n"))
		m := h.await("null")
		if m.Error == nil || m.Error.Code != mcp.PARSE_ERROR {
			t.Errorf("response = %+v", m)
		}
		h.call(7, "ping", map[string]any{})
	})
	t.Run("closing stdin ends Run without error", func(t *testing.T) {
		h.stdin.Close()
		for {
			if _, ok := h.next(); !ok {
				break
			}
		}
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
			h.done <- err // for the cleanup
		case <-time.After(waitTimeout):
			t.Fatal("Run did not return")
		}
	})
	t.Run("every stdout line was valid JSON-RPC", func(t *testing.T) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, line := range h.all {
			if err := validateJSONRPC(line); err != nil {
				t.Errorf("%v: %.200s", err, line)
			}
		}
		if len(h.all) < 10 {
			t.Errorf("only %d lines seen", len(h.all))
		}
	})
}

func TestRunCancelledRequest(t *testing.T) {
	env := newTestEnv(t)
	logs := newLogRecorder()
	h := startRun(t, t.Context(), env.options(slog.New(logs)))
	h.initialize()

	h.send(map[string]any{"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": map[string]any{
		"name":      "generate_report",
		"arguments": map[string]any{"seconds": 60, "steps": 100},
		"_meta":     map[string]any{"progressToken": "c1"},
	}})
	h.awaitProgress("c1", 1)
	h.send(map[string]any{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": map[string]any{"requestId": 2, "reason": "test"}})

	// mcp-go still answers a cancelled request; the answer is the handler's
	// error. The gateway must be ready to drop it.
	m := h.await("2")
	if m.Error == nil || !strings.Contains(m.Error.Message, "cancelled") {
		t.Errorf("response to the cancelled request = %+v", m)
	}
	attrs := logs.waitFor(t, "report cancelled")
	if steps := attrs[logKeyStep].Int64(); steps < 1 || steps >= 100 {
		t.Errorf("report stopped after %d steps", steps)
	}
}

func TestRunEndsWithContext(t *testing.T) {
	env := newTestEnv(t)
	ctx, cancel := context.WithCancel(t.Context())
	h := startRun(t, ctx, env.options(nil))
	h.initialize()

	t.Run("a second Run in the same process is refused", func(t *testing.T) {
		err := Run(t.Context(), env.options(nil), strings.NewReader(""), io.Discard)
		if err == nil || !strings.Contains(err.Error(), "already serving") {
			t.Errorf("second Run = %v", err)
		}
	})
	t.Run("cancelling the context ends Run without error", func(t *testing.T) {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
			h.done <- err // for the cleanup
		case <-time.After(waitTimeout):
			t.Fatal("Run did not return")
		}
	})
}

func TestRunRejectsBadOptions(t *testing.T) {
	err := Run(t.Context(), Options{}, strings.NewReader(""), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "sandbox") {
		t.Errorf("Run with no sandbox = %v", err)
	}
}
