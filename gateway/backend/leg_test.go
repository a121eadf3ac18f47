package backend

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
)

// The test binary doubles as a small MCP backend over stdio when
// SALLYPORT_FIXTURE is set; its behaviour is chosen by the variable's value
// (a comma-separated list of quirks).
func TestMain(m *testing.M) {
	if quirks := os.Getenv("SALLYPORT_FIXTURE"); quirks != "" {
		fixture(strings.Split(quirks, ","))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func has(quirks []string, q string) bool {
	for _, x := range quirks {
		if x == q {
			return true
		}
	}
	return false
}

// fixture is a line-oriented MCP server: initialize, tools/list with tools
// echo, big, slow and crash, and tools/call for each.
func fixture(quirks []string) {
	if has(quirks, "ignore-term") {
		signal.Ignore(syscall.SIGTERM)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	send := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		out.WriteString(s + "\n")
		out.Flush()
	}
	if has(quirks, "banner") {
		send("hello from a chatty backend, not JSON")
		send(`{"jsonrpc":"2.0","id":1,"result":{},"Result":{}}`) // invalid: case-variant key
		send(strings.Repeat("x", 300<<10))                       // over the 256 KiB test limit
	}
	if has(quirks, "orphan") {
		// A child that inherits stdout and outlives this process.
		child := exec.Command("sleep", os.Getenv("SALLYPORT_FIXTURE_SLEEP"))
		child.Stdout = os.Stdout
		child.Start()
	}
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			if has(quirks, "ignore-term") {
				select {} // a backend that does not exit on EOF or SIGTERM
			}
			return
		}
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Name      string          `json:"name"`
				Arguments map[string]any  `json:"arguments"`
				Meta      map[string]any  `json:"_meta"`
				RequestID json.RawMessage `json:"requestId"`
			} `json:"params"`
		}
		if json.Unmarshal([]byte(line), &req) != nil {
			continue
		}
		if req.Method == "notifications/cancelled" {
			fmt.Fprintf(os.Stderr, "cancelled %s\n", req.Params.RequestID)
			continue
		}
		if req.ID == nil {
			continue
		}
		reply := func(result string) { send(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":` + result + `}`) }
		switch req.Method {
		case "initialize":
			if has(quirks, "stall") {
				defer func() { select {} }() // answers, then never reads again
			}
			reply(`{"protocolVersion":"2025-06-18","capabilities":{"tools":{"listChanged":true}},"serverInfo":{"name":"fixture","version":"1"}}`)
		case "tools/list":
			reply(`{"tools":[{"name":"echo","inputSchema":{"type":"object","$schema":"https://json-schema.org/draft/2020-12/schema"},"_meta":{"x.vendor/k":1},"futureField":[1,2]},{"name":"big","inputSchema":{"type":"object"}},{"name":"slow","inputSchema":{"type":"object"}},{"name":"crash","inputSchema":{"type":"object"}},{"name":"bad name!","inputSchema":{"type":"object"}}]}`)
		case "tools/call":
			switch req.Params.Name {
			case "echo":
				b, _ := json.Marshal(req.Params.Arguments["message"])
				tok, _ := json.Marshal(req.Params.Meta["progressToken"])
				reply(`{"content":[{"type":"text","text":` + string(b) + `}],"seenToken":` + string(tok) + `}`)
			case "big":
				reply(`{"content":[{"type":"text","text":"` + strings.Repeat("b", 200<<10) + `"}]}`)
			case "slow":
				go func(id json.RawMessage) {
					time.Sleep(2 * time.Second)
					send(`{"jsonrpc":"2.0","id":` + string(id) + `,"result":{"content":[]}}`)
				}(req.ID)
			case "crash":
				os.Exit(3)
			}
		default:
			send(`{"jsonrpc":"2.0","id":` + string(req.ID) + `,"error":{"code":-32601,"message":"nope"}}`)
		}
	}
}

func fixtureSpec(t *testing.T, quirks string) *config.Backend {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &config.Backend{
		ID: "fx", Transport: "stdio", Command: exe, Isolation: "session",
		Env:             map[string]string{"SALLYPORT_FIXTURE": quirks},
		MaxMessageBytes: 256 << 10,
		Timeouts: config.Timeouts{
			Startup: config.Duration(10 * time.Second), Request: config.Duration(10 * time.Second),
			Shutdown: config.Duration(300 * time.Millisecond),
		},
	}
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestLeg(t *testing.T, spec *config.Backend) *Leg {
	t.Helper()
	l := NewLeg(Options{Spec: spec, Logger: testLogger(), ClientName: "test", ClientVersion: "1"})
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func processAlive(pid int) bool {
	// A zombie still answers signal 0; read its state.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func TestLegCallsAndFidelity(t *testing.T) {
	l := newTestLeg(t, fixtureSpec(t, "banner"))
	ctx := context.Background()

	t.Run("junk and oversized stdout lines are dropped, the session survives", func(t *testing.T) {
		resp, err := l.Call(ctx, "tools/call", json.RawMessage(`{"name":"echo","arguments":{"message":"hi"}}`), nil)
		if err != nil || resp.Error != nil {
			t.Fatalf("call: %v %v", err, resp)
		}
		if !strings.Contains(string(resp.Result), `"text":"hi"`) {
			t.Fatalf("result %s", resp.Result)
		}
	})
	t.Run("tool definitions are kept byte for byte and bad names are left out", func(t *testing.T) {
		entries, err := l.List(ctx, "tools")
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 4 {
			t.Fatalf("got %d entries, want 4 (bad name left out)", len(entries))
		}
		want := `{"name":"echo","inputSchema":{"type":"object","$schema":"https://json-schema.org/draft/2020-12/schema"},"_meta":{"x.vendor/k":1},"futureField":[1,2]}`
		if string(entries[0].Raw) != want {
			t.Fatalf("definition changed:\n got %s\nwant %s", entries[0].Raw, want)
		}
	})
	t.Run("a progress token is the leg's own, never the client's", func(t *testing.T) {
		resp, err := l.Call(ctx, "tools/call", json.RawMessage(`{"name":"echo","arguments":{"message":"x"},"_meta":{"progressToken":"client-tok"}}`), func(json.RawMessage) {})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(resp.Result), "client-tok") || !strings.Contains(string(resp.Result), `"seenToken":`) {
			t.Fatalf("backend saw %s", resp.Result)
		}
	})
	t.Run("a message near the size limit passes", func(t *testing.T) {
		resp, err := l.Call(ctx, "tools/call", json.RawMessage(`{"name":"big"}`), nil)
		if err != nil || len(resp.Result) < 200<<10 {
			t.Fatalf("big: %v (%d bytes)", err, len(resp.Result))
		}
	})
	t.Run("concurrent calls each get their own answer", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 50 {
			wg.Go(func() {
				msg := fmt.Sprintf("m%d", i)
				resp, err := l.Call(ctx, "tools/call", json.RawMessage(`{"name":"echo","arguments":{"message":"`+msg+`"}}`), nil)
				if err != nil || !strings.Contains(string(resp.Result), `"text":"`+msg+`"`) {
					t.Errorf("call %d: %v %s", i, err, resp.Result)
				}
			})
		}
		wg.Wait()
	})
}

func TestLegCrashGivesAnErrorAndRestarts(t *testing.T) {
	l := newTestLeg(t, fixtureSpec(t, "plain"))
	ctx := context.Background()
	if err := l.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	first := l.Pid()
	slow := make(chan error, 1)
	go func() {
		_, err := l.Call(ctx, "tools/call", json.RawMessage(`{"name":"slow"}`), nil)
		slow <- err
	}()
	time.Sleep(100 * time.Millisecond)
	_, err := l.Call(ctx, "tools/call", json.RawMessage(`{"name":"crash"}`), nil)
	for _, err := range []error{err, <-slow} {
		ge, ok := err.(*gateway.Error)
		if !ok || ge.Code != gateway.CodeBackendUnavailable {
			t.Fatalf("in-flight call got %v, want a backend-unavailable error", err)
		}
	}
	resp, err := l.Call(ctx, "tools/call", json.RawMessage(`{"name":"echo","arguments":{"message":"again"}}`), nil)
	if err != nil || !strings.Contains(string(resp.Result), "again") {
		t.Fatalf("call after crash: %v", err)
	}
	if l.Pid() == first || processAlive(first) {
		t.Fatalf("expected a new process: old %d new %d", first, l.Pid())
	}
}

func TestLegCancellationReachesTheBackend(t *testing.T) {
	l := newTestLeg(t, fixtureSpec(t, "plain"))
	// Started first: under load a start can take longer than the wait
	// below, and a cancelled start is another error.
	if err := l.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel(fmt.Errorf("client went away")) }()
	_, err := l.Call(ctx, "tools/call", json.RawMessage(`{"name":"slow"}`), nil)
	ge, ok := err.(*gateway.Error)
	if !ok || ge.Code != gateway.CodeRequestCancelled {
		t.Fatalf("got %v", err)
	}
	// The leg still works, and the late answer to the cancelled call is dropped.
	resp, err := l.Call(context.Background(), "tools/call", json.RawMessage(`{"name":"echo","arguments":{"message":"ok"}}`), nil)
	if err != nil || resp.Error != nil {
		t.Fatalf("after cancel: %v", err)
	}
}

func TestLegCloseEscalatesToSIGKILL(t *testing.T) {
	l := newTestLeg(t, fixtureSpec(t, "ignore-term"))
	if err := l.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	pid := l.Pid()
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Fatalf("backend %d survived Close", pid)
	}
	if _, err := l.Call(context.Background(), "tools/list", nil, nil); err == nil {
		t.Fatal("call on a closed leg succeeded")
	}
}

func TestLegStartFailureIsReported(t *testing.T) {
	spec := fixtureSpec(t, "plain")
	spec.Command = "/nonexistent/mcp-server"
	l := newTestLeg(t, spec)
	_, err := l.Call(context.Background(), "tools/list", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("got %v", err)
	}
	state, lastErr := l.Status()
	if state != StateDown || lastErr == nil {
		t.Fatalf("state %s err %v", state, lastErr)
	}
}

func TestEnvironmentIsAllowListed(t *testing.T) {
	t.Setenv("SALLYPORT_TEST_SECRET", "s3cret")
	t.Setenv("SALLYPORT_TEST_PASS", "passed")
	spec := &config.Backend{EnvPassthrough: []string{"SALLYPORT_TEST_PASS"}, Env: map[string]string{"EXTRA": "1"}}
	env := strings.Join(backendEnv(spec), "\n")
	if strings.Contains(env, "s3cret") {
		t.Error("a gateway secret reached the backend environment")
	}
	for _, want := range []string{"SALLYPORT_TEST_PASS=passed", "EXTRA=1", "PATH="} {
		if !strings.Contains(env, want) {
			t.Errorf("backend environment lacks %s", want)
		}
	}
}

func TestABackendThatStopsReadingCannotHangTheGateway(t *testing.T) {
	l := newTestLeg(t, fixtureSpec(t, "stall"))
	if err := l.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	pid := l.Pid()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	big := json.RawMessage(`{"name":"echo","arguments":{"message":"` + strings.Repeat("z", 1<<20) + `"}}`)
	done := make(chan error, 1)
	go func() { _, err := l.Call(ctx, "tools/call", big, nil); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a call to a backend that does not read succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the call hung past its deadline")
	}
	closed := make(chan struct{})
	go func() { l.Close(context.Background()); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close hung behind a blocked write")
	}
	if processAlive(pid) {
		t.Fatalf("backend %d survived", pid)
	}
}

func TestALeaderExitIsNoticedWhileItsChildHoldsStdout(t *testing.T) {
	spec := fixtureSpec(t, "orphan")
	// A duration unique to this run names the child, so nothing else matches.
	sleep := fmt.Sprintf("30.%d", time.Now().UnixNano()%1000000)
	spec.Env["SALLYPORT_FIXTURE_SLEEP"] = sleep
	l := newTestLeg(t, spec)
	if err := l.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := l.Call(context.Background(), "tools/call", json.RawMessage(`{"name":"crash"}`), nil)
	ge, ok := err.(*gateway.Error)
	if !ok || ge.Code != gateway.CodeBackendUnavailable {
		t.Fatalf("got %v; want backend unavailable, not a timeout", err)
	}
	// The orphaned child was in the backend's process group: it is gone too.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("pgrep", "-xf", "sleep "+sleep).Output()
		alive := false
		for _, f := range strings.Fields(string(out)) {
			var pid int
			fmt.Sscan(f, &pid)
			alive = alive || processAlive(pid) // zombies do not count: init here does not reap
		}
		if !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the crashed backend's child survived: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
