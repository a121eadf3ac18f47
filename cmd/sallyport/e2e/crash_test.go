package e2e

import (
	"context"
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// hangWait bounds how long a call whose backend was killed may take to fail.
// The operation itself would take 5 s; the gateway's request timeout is 60 s.
// It only separates "failed" from "hung"; it measures nothing.
const hangWait = 30 * time.Second

func TestBackendKilledMidCall(t *testing.T) {
	t.Parallel()
	needNode(t)
	for _, isolation := range []string{"shared", "session"} {
		t.Run("the caller gets a JSON-RPC error and the next call works / isolation "+isolation, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, baseConfig(everythingStdio("everything", isolation)))
			token := g.token("alice", "dev")
			g.serve()
			c := dialGo(t, g.URL, token)
			c.mustCall(t, "everything__echo", map[string]any{"message": "before"})

			backends := g.backends(everythingJS())
			if len(backends) != 1 {
				t.Fatalf("want 1 server-everything process under the gateway, found:\n%s", formatProcs(backends))
			}
			victim := backends[0]

			type outcome struct {
				res *mcp.CallToolResult
				err error
			}
			done := make(chan outcome, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*callWait)
				defer cancel()
				res, err := c.call(ctx, "everything__trigger-long-running-operation",
					map[string]any{"duration": 5, "steps": 5}, "long-op")
				done <- outcome{res, err}
			}()
			// Kill it once it is surely running: after its first progress
			// notification, or after a moment if progress never comes.
			if !waitFor(3*time.Second, func() bool { return len(c.progress()) > 0 }) {
				t.Logf("no progress within 3 s; killing the backend anyway")
			}
			if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
				t.Fatalf("kill backend %d: %v", victim.PID, err)
			}

			select {
			case o := <-done:
				var te *transport.Error
				switch {
				case o.err == nil:
					t.Errorf("the call returned %s although its backend was killed; want a JSON-RPC error", describeResult(o.res))
				case errors.As(o.err, &te):
					t.Errorf("the call failed at the transport (%v); want a JSON-RPC error response", o.err)
				default:
					t.Logf("the call failed with JSON-RPC error: %v", o.err)
				}
			case <-time.After(hangWait):
				t.Fatalf("the call hangs %v after its backend was killed", hangWait)
			}

			if text := c.mustCall(t, "everything__echo", map[string]any{"message": "after"}); text != "Echo: after" {
				t.Errorf("everything__echo after the crash returned %q", text)
			}
			after := g.backends(everythingJS())
			if slices.ContainsFunc(after, func(q procInfo) bool { return q.PID == victim.PID }) {
				t.Errorf("the killed backend %d still shows under the gateway:\n%s", victim.PID, formatProcs(after))
			}
			// The gateway must reap what it started: no zombie left.
			if !waitFor(leftoverWait, func() bool {
				q, ok := readProcInfo(victim.PID)
				return !ok || q.Start != victim.Start || q.PPID != g.pid()
			}) {
				q, _ := readProcInfo(victim.PID)
				t.Errorf("the killed backend was never reaped by the gateway: %s", q)
			}
		})
	}
}
