package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAuditServerRequestTimeout: a backend asks the client for sampling,
// and the client (which declared sampling) never answers. The gateway
// answers the backend itself when the request timeout passes, and that
// answer is on record like a client's: a client_to_backend result row,
// error -32001, pointing at the server request's row.
func TestAuditServerRequestTimeout(t *testing.T) {
	needNode(t)
	b := everythingStdio("every", "session")
	b.Timeouts = &timeoutsConfig{Startup: "30s", Request: "2s", Shutdown: "2s"}
	g := newGateway(t, baseConfig(b))
	token := g.token("alice")
	g.serve()

	s := &rawSession{url: g.URL, token: token}
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"silent-sampler","version":"1"}}}`
	r := doRaw(t, s.newRawRequest(t, []byte(init)))
	if r.Status != http.StatusOK {
		t.Fatalf("initialize: HTTP %d: %s", r.Status, r.Body)
	}
	s.id, s.version = r.Header.Get("Mcp-Session-Id"), "2025-11-25"
	if n := doRaw(t, s.newRawRequest(t, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))); n.Status != http.StatusAccepted {
		t.Fatalf("notifications/initialized: HTTP %d", n.Status)
	}
	// The answer to the call comes once the sampling request timed out;
	// the sampling request itself arrives on the call's stream and is
	// never answered.
	start := time.Now()
	s.call(t, 2, "every__trigger-sampling-request", map[string]any{"prompt": "anyone there?", "maxTokens": 5})
	t.Logf("the call returned after %v", time.Since(start).Round(time.Millisecond))

	// Give the gateway's own answer (sent when its timer fires) time to
	// be written, then stop it: every row is then on disk.
	waitFor(10*time.Second, func() bool {
		for _, r := range exportRows(t, "-c", g.cfgPath) {
			if r.Kind == "result" && r.Direction == "client_to_backend" && strings.HasPrefix(r.Method, "sampling/") {
				return true
			}
		}
		return false
	})
	g.proc.stop(t)
	verifyOK(t, "-c", g.cfgPath)
	rows := exportRows(t, "-c", g.cfgPath)
	var req, res *auditRow
	for i := range rows {
		r := &rows[i]
		switch {
		case r.Kind == "server_request" && r.Method == "sampling/createMessage":
			req = r
		case r.Kind == "result" && r.Direction == "client_to_backend" && r.Method == "sampling/createMessage":
			res = r
		}
	}
	if req == nil {
		t.Fatalf("no server_request row for sampling/createMessage in %v", rows)
	}
	if res == nil {
		t.Fatalf("no row for the gateway's answer to the unanswered sampling request (row %d)", req.Seq)
	}
	if res.Ref != req.Seq || res.ErrorCode != -32001 || res.Outcome != "error" || !strings.Contains(res.Error, "did not answer") {
		t.Errorf("the timeout answer's row is %s; want ref %d, outcome error, code -32001", res, req.Seq)
	}
}
