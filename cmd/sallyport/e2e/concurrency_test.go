package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// concurrentClients is how many clients share one gateway at once.
const concurrentClients = 50

func TestConcurrentClients(t *testing.T) {
	t.Parallel()
	needNode(t)
	sandbox := t.TempDir()

	for _, isolation := range []string{"shared", "session"} {
		t.Run("50 clients each get only their own results and progress / isolation "+isolation, func(t *testing.T) {
			demo := demoStdio("demo", sandbox, isolation)
			everything := everythingStdio("everything", isolation)
			// Fifty backends starting at once on two cores are slow: give
			// them room, this is not what the test measures.
			slow := &timeoutsConfig{Startup: "120s", Request: "120s", Shutdown: "5s"}
			demo.Timeouts, everything.Timeouts = slow, slow
			g := newGateway(t, baseConfig(demo, everything))
			token := g.token("alice", "dev")
			g.serve()

			// Every client is fresh, so all of them use the same JSON-RPC
			// ids (1 for initialize, then 2, 3, ...): the gateway has to
			// keep them apart.
			clients := make([]*goClient, concurrentClients)
			var wg sync.WaitGroup
			errs := make([]error, concurrentClients)
			for i := range clients {
				wg.Go(func() { clients[i], errs[i] = connectGo(g.URL, token) })
			}
			wg.Wait()
			for i, c := range clients {
				if c != nil {
					t.Cleanup(func() { _ = c.Close() })
				}
				if errs[i] != nil {
					t.Fatalf("client %d: %v", i, errs[i])
				}
			}

			nonce := newMarker()
			start := make(chan struct{})
			for i, c := range clients {
				// Each client asks for a slightly different report length,
				// which the report echoes back, and for progress under its
				// own token; meanwhile it echoes its own message.
				seconds := 0.5 + float64(i)/1000
				progressToken := fmt.Sprintf("progress-%d-%s", i, nonce)
				message := fmt.Sprintf("client-%d-%s", i, nonce)
				wg.Go(func() {
					<-start
					ctx, cancel := context.WithTimeout(context.Background(), 2*callWait)
					defer cancel()
					res, err := c.call(ctx, "demo__generate_report", map[string]any{"seconds": seconds, "steps": 5}, progressToken)
					if err != nil {
						t.Errorf("client %d: demo__generate_report: %v", i, err)
						return
					}
					if res.IsError {
						t.Errorf("client %d: demo__generate_report: isError: %s", i, resultText(res))
						return
					}
					var report struct {
						Seconds float64 `json:"seconds"`
						Steps   int     `json:"steps"`
					}
					data, _ := json.Marshal(res.StructuredContent)
					if err := json.Unmarshal(data, &report); err != nil || report.Seconds != seconds || report.Steps != 5 {
						t.Errorf("client %d: got report %s, want seconds %g and steps 5: a result for another client?", i, data, seconds)
					}
				})
				wg.Go(func() {
					<-start
					for round := range 3 {
						ctx, cancel := context.WithTimeout(context.Background(), 2*callWait)
						res, err := c.call(ctx, "everything__echo", map[string]any{"message": fmt.Sprintf("%s-%d", message, round)}, nil)
						cancel()
						if err != nil {
							t.Errorf("client %d: everything__echo: %v", i, err)
							return
						}
						if got, want := resultText(res), fmt.Sprintf("Echo: %s-%d", message, round); got != want {
							t.Errorf("client %d: everything__echo returned %q, want %q", i, got, want)
						}
					}
				})
			}
			close(start)
			wg.Wait()

			for i, c := range clients {
				own := fmt.Sprintf("progress-%d-%s", i, nonce)
				progress := c.progress()
				if len(progress) == 0 {
					t.Errorf("client %d got no progress notifications for its generate_report", i)
				}
				for _, n := range progress {
					if tok := progressTokenOf(n); tok != own {
						t.Errorf("client %d (token %s) got progress for token %v: misrouted", i, own, tok)
					}
				}
			}
		})
	}
}

func progressTokenOf(n mcp.JSONRPCNotification) any {
	return n.Params.AdditionalFields["progressToken"]
}
