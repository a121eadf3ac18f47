package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestStdio(t *testing.T) {
	t.Parallel()
	needNode(t)
	cfg := baseConfig(everythingStdio("everything", "shared"))

	t.Run("the TypeScript SDK client lists and calls through sallyport stdio", func(t *testing.T) {
		t.Parallel()
		g := newGateway(t, cfg)
		lines := runTSClient(t, []string{envMarker + "=" + g.marker},
			"--stdio", sallyportBin, "stdio", "-c", g.cfgPath, "--",
			"list-tools",
			"call", "everything__echo", `{"message":"over stdio"}`,
			"call", "everything__get-sum", `{"a":20,"b":22}`,
			"call", "nosuchbackend__echo", `{"message":"x"}`,
			"ping")
		if len(lines) != 6 {
			t.Fatalf("got %d output lines, want 6", len(lines))
		}
		if names := tsToolNames(t, lines[1]); !slices.Contains(names, "everything__echo") || !slices.Contains(names, "everything__get-sum") {
			t.Errorf("tools %v lack everything__echo or everything__get-sum", names)
		}
		if text, _ := tsText(t, lines[2]); text != "Echo: over stdio" {
			t.Errorf("everything__echo returned %q", text)
		}
		if text, _ := tsText(t, lines[3]); !strings.Contains(text, "42") {
			t.Errorf("everything__get-sum returned %q", text)
		}
		if l := lines[4]; l.OK || l.Error == nil || l.Error.Code == nil || *l.Error.Code != -32602 {
			t.Errorf("unknown tool: got ok=%v result=%s error=%+v; want JSON-RPC error -32602", l.OK, l.Result, l.Error)
		}
		if !lines[5].OK {
			t.Errorf("ping: %+v", lines[5].Error)
		}
		// The SDK closed the gateway's stdin and signalled it: the gateway
		// and its backend must be gone.
		if !waitFor(leftoverWait+stopWait, func() bool { return len(markedLive(g.marker)) == 0 }) {
			t.Errorf("after the client closed, processes of this gateway remain:\n%s", formatProcs(markedLive(g.marker)))
			killAll(markedLive(g.marker))
		}
	})

	t.Run("stdout carries only JSON-RPC messages and the gateway exits when stdin closes", func(t *testing.T) {
		t.Parallel()
		g := newGateway(t, cfg)
		cmd := exec.Command(sallyportBin, "stdio", "-c", g.cfgPath)
		cmd.Dir = g.dir
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		p := startProc(t, "sallyport stdio", g.marker, cmd)
		r := newLineReader(stdout)

		send := func(msg string) {
			t.Helper()
			if _, err := io.WriteString(stdin, msg+"\n"); err != nil {
				t.Fatalf("write to gateway stdin: %v", err)
			}
		}
		send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
		init := r.waitResponse(t, "1")
		if init.Error != nil || !strings.Contains(string(init.Result), `"protocolVersion"`) {
			t.Fatalf("initialize: %+v %s", init.Error, init.Result)
		}
		send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
		send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
		send(`{"jsonrpc":"2.0","id":"three","method":"tools/call","params":{"name":"everything__echo","arguments":{"message":"raw stdio"}}}`)
		send(`{"jsonrpc":"2.0","id":4,"method":"ping"}`)
		send(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"nosuchbackend__echo","arguments":{}}}`)

		if m := r.waitResponse(t, "2"); m.Error != nil || !strings.Contains(string(m.Result), `"everything__echo"`) {
			t.Errorf("tools/list: %+v %.500s", m.Error, m.Result)
		}
		if m := r.waitResponse(t, `"three"`); m.Error != nil || !strings.Contains(string(m.Result), "Echo: raw stdio") {
			t.Errorf("tools/call everything__echo: %+v %s", m.Error, m.Result)
		}
		if m := r.waitResponse(t, "4"); m.Error != nil || string(m.Result) != "{}" {
			t.Errorf("ping: %+v %s", m.Error, m.Result)
		}
		if m := r.waitResponse(t, "5"); m.Error == nil || m.Error.Code != -32602 {
			t.Errorf("unknown tool: got error %+v result %s; want -32602", m.Error, m.Result)
		}

		// End of input ends the gateway, backends included.
		stdin.Close()
		select {
		case <-p.done:
		case <-time.After(stopWait):
			t.Errorf("sallyport stdio still running %v after its stdin closed", stopWait)
		}
		r.waitEOF(t)
		for _, bad := range r.invalid() {
			t.Errorf("stdout line is not a JSON-RPC 2.0 message: %q", bad)
		}
	})
}

// lineReader reads JSON-RPC lines from a stdio server's stdout and keeps
// every line that is not a JSON-RPC 2.0 message.
type lineReader struct {
	mu      sync.Mutex
	msgs    []rpcMessage
	bad     []string
	changed chan struct{}
	eof     chan struct{}
}

func newLineReader(out io.Reader) *lineReader {
	r := &lineReader{changed: make(chan struct{}), eof: make(chan struct{})}
	go func() {
		defer close(r.eof)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			line := sc.Text()
			m, ok := parseJSONRPCLine(line)
			r.mu.Lock()
			if ok {
				r.msgs = append(r.msgs, m)
			} else {
				r.bad = append(r.bad, line)
			}
			close(r.changed)
			r.changed = make(chan struct{})
			r.mu.Unlock()
		}
	}()
	return r
}

// parseJSONRPCLine accepts one JSON-RPC 2.0 request, notification or
// response, strictly.
func parseJSONRPCLine(line string) (rpcMessage, bool) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(line), &raw); err != nil {
		return rpcMessage{}, false
	}
	var m rpcMessage
	if err := json.Unmarshal([]byte(line), &m); err != nil || m.JSONRPC != "2.0" {
		return rpcMessage{}, false
	}
	_, hasID := raw["id"]
	_, hasResult := raw["result"]
	_, hasError := raw["error"]
	switch {
	case m.Method != "" && !hasResult && !hasError:
		return m, true // request or notification
	case m.Method == "" && hasID && hasResult != hasError:
		return m, true // response
	}
	return rpcMessage{}, false
}

// waitResponse waits for the response with the given raw JSON id.
func (r *lineReader) waitResponse(t testing.TB, id string) rpcMessage {
	t.Helper()
	deadline := time.After(callWait)
	for {
		m, ok, changed := r.find(id)
		if ok {
			return m
		}
		select {
		case <-changed:
		case <-r.eof:
			if m, ok, _ := r.find(id); ok {
				return m
			}
			t.Fatalf("stdout ended without a response to id %s; non-JSON-RPC lines: %q", id, r.invalid())
		case <-deadline:
			t.Fatalf("no response to id %s within %v; non-JSON-RPC lines: %q", id, callWait, r.invalid())
		}
	}
}

func (r *lineReader) find(id string) (rpcMessage, bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if m.Method == "" && string(m.ID) == id {
			return m, true, r.changed
		}
	}
	return rpcMessage{}, false, r.changed
}

func (r *lineReader) waitEOF(t testing.TB) {
	t.Helper()
	select {
	case <-r.eof:
	case <-time.After(stopWait):
		t.Errorf("stdout still open %v after stdin closed", stopWait)
	}
}

func (r *lineReader) invalid() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.bad)
}

// markedLive lists live processes carrying marker in their environment.
func markedLive(marker string) []procInfo {
	var out []procInfo
	for _, q := range listProcs() {
		if q.State != 'Z' && q.State != 'X' && hasMarker(q.PID, marker) {
			out = append(out, q)
		}
	}
	return out
}

func killAll(ps []procInfo) {
	for _, q := range ps {
		_ = syscall.Kill(q.PID, syscall.SIGKILL)
	}
}
