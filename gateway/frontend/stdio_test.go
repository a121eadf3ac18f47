package frontend

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/proxy"
)

func TestServeStdio(t *testing.T) {
	exe, _ := os.Executable()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("sandbox text"), 0o644)
	cfg := config.Default()
	cfg.Backends = []config.Backend{{
		ID: "demo", Transport: "stdio", Command: exe, Isolation: "session",
		Env:             map[string]string{"SALLYPORT_TEST_BACKEND": dir},
		MaxMessageBytes: cfg.Limits.MaxMessageBytes,
		Timeouts:        config.Timeouts{Startup: config.Duration(20 * time.Second), Request: config.Duration(20 * time.Second), Shutdown: config.Duration(2 * time.Second)},
	}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	g := proxy.New(proxy.Options{Config: cfg, Logger: log, Version: "test"})
	defer g.Shutdown(context.Background())

	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- ServeStdio(context.Background(), g, gateway.Principal{ID: "local"}, inR, outW, jsonrpc.Limits{}, log)
		outW.Close()
	}()
	lines := bufio.NewScanner(outR)
	lines.Buffer(nil, 8<<20)
	next := func() *jsonrpc.Message {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("stdout ended: %v", lines.Err())
		}
		m, err := jsonrpc.Decode(lines.Bytes(), jsonrpc.Limits{})
		if err != nil {
			t.Fatalf("stdout carried a line that is not JSON-RPC: %q", lines.Text())
		}
		return m
	}
	send := func(s string) { io.WriteString(inW, s+"\n") }

	send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	if m := next(); !strings.Contains(string(m.Result), `"protocolVersion":"2024-11-05"`) {
		t.Fatalf("initialize: %s", m.Encode())
	}
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send(`not json at all`)
	if m := next(); m.Error == nil || m.Error.Code != jsonrpc.CodeParseError || string(m.ID) != "null" {
		t.Fatalf("garbage line: %s", m.Encode())
	}
	send("{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\",\"params\":{\"s\":\"raw\nnewline\"}}")
	if m := next(); m.Error == nil || m.Error.Code != jsonrpc.CodeParseError {
		t.Fatalf("raw newline in a string: %s", m.Encode())
	}
	next() // the second half of the split line is garbage too
	send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"demo__read_file","arguments":{"path":"a.txt"}}}`)
	m := next()
	if m.Error != nil || !strings.Contains(string(m.Result), "sandbox text") {
		t.Fatalf("call: %s", m.Encode())
	}
	inW.Close() // EOF: the session ends and its backend is stopped
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("ServeStdio did not return after EOF")
	}
	if n := g.Sessions(); n != 0 {
		t.Fatalf("%d sessions left open", n)
	}
}
