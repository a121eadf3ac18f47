package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	churnSessions = 200
	churnWorkers  = 4
	// reapWait bounds how long an idle session with a 2 s timeout may take
	// to disappear with its backend.
	reapWait = 30 * time.Second
)

// demoMarker is in the command line of every demo backend.
const demoMarker = "demo-server"

func TestSessionLifecycle(t *testing.T) {
	t.Parallel()

	t.Run("200 sessions opened and closed leave no backend process behind", func(t *testing.T) {
		t.Parallel()
		g := newGateway(t, baseConfig(demoStdio("demo", t.TempDir(), "session")))
		token := g.token("alice", "dev")
		g.serve()

		var next atomic.Int64
		var sawBackend atomic.Bool
		var mu sync.Mutex
		var closedIDs []string
		var wg sync.WaitGroup
		for range churnWorkers {
			wg.Go(func() {
				for next.Add(1) <= churnSessions {
					c, err := connectGo(g.URL, token)
					if err != nil {
						t.Errorf("open session: %v", err)
						return
					}
					text := c.mustCallNoFatal(t, "demo__list_files", map[string]any{})
					if !sawBackend.Load() && len(g.backends(demoMarker)) > 0 {
						sawBackend.Store(true)
					}
					id := c.GetSessionId()
					// Close sends DELETE for the session.
					if err := c.Close(); err != nil {
						t.Errorf("close session: %v", err)
					}
					if text == "" {
						return
					}
					mu.Lock()
					closedIDs = append(closedIDs, id)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}

		if !sawBackend.Load() {
			t.Fatalf("no demo backend process ever showed under the gateway: the test proves nothing")
		}
		if !waitFor(leftoverWait, func() bool { return len(g.backends(demoMarker)) == 0 }) {
			left := g.backends(demoMarker)
			t.Errorf("%d backend process(es) left under the gateway after %d sessions closed:\n%s",
				len(left), churnSessions, formatProcs(left[:min(len(left), 20)]))
		}
		// A deleted session is gone for good.
		for _, id := range closedIDs[:min(3, len(closedIDs))] {
			s := &rawSession{url: g.URL, token: token, id: id, version: "2025-11-25"}
			if r := doRaw(t, s.newRawRequest(t, []byte(`{"jsonrpc":"2.0","id":9,"method":"ping"}`))); r.Status != http.StatusNotFound {
				t.Errorf("ping on deleted session %s: HTTP %d %s; want 404", id, r.Status, r.Body)
			}
		}
	})

	t.Run("an idle session is reaped with its backend after session_idle_timeout", func(t *testing.T) {
		t.Parallel()
		cfg := baseConfig(demoStdio("demo", t.TempDir(), "session"))
		cfg.HTTP.SessionIdleTimeout = "2s"
		g := newGateway(t, cfg)
		token := g.token("alice", "dev")
		g.serve()

		c := dialGo(t, g.URL, token)
		c.mustCall(t, "demo__list_files", map[string]any{})
		backends := g.backends(demoMarker)
		if len(backends) == 0 {
			t.Fatalf("no demo backend under the gateway after a call in a session-isolated backend")
		}
		id := c.GetSessionId()

		// The client goes silent (no GET stream, no requests).
		if !waitFor(reapWait, func() bool { return len(stillRunning(backends)) == 0 }) {
			t.Fatalf("%v after the session went idle (timeout 2s), its backend still runs:\n%s",
				reapWait, formatProcs(stillRunning(backends)))
		}
		s := &rawSession{url: g.URL, token: token, id: id, version: "2025-11-25"}
		if r := doRaw(t, s.newRawRequest(t, []byte(`{"jsonrpc":"2.0","id":9,"method":"ping"}`))); r.Status != http.StatusNotFound {
			t.Errorf("ping on the reaped session: HTTP %d %s; want 404", r.Status, r.Body)
		}
	})
}

// stillRunning returns those of ps that are still alive (same pid, same start
// time, not a zombie).
func stillRunning(ps []procInfo) []procInfo {
	var out []procInfo
	for _, p := range ps {
		if q, ok := readProcInfo(p.PID); ok && q.Start == p.Start && q.State != 'Z' && q.State != 'X' {
			out = append(out, q)
		}
	}
	return out
}

// mustCallNoFatal is mustCall for goroutines: it reports with Errorf and
// returns "" on failure.
func (c *goClient) mustCallNoFatal(t testing.TB, name string, args map[string]any) string {
	ctx, cancel := contextWithCallWait()
	defer cancel()
	res, err := c.call(ctx, name, args, nil)
	if err != nil {
		t.Errorf("call %s: %v", name, err)
		return ""
	}
	if res.IsError {
		t.Errorf("call %s: isError: %s", name, resultText(res))
		return ""
	}
	if text := resultText(res); text != "" {
		return text
	}
	return fmt.Sprint(res.StructuredContent)
}
