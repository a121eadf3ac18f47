package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestLegacySSEBothSides runs the server-request scenarios (sampling,
// elicitation, roots: the messages mcp-go's own SSE client and server do
// not carry) over the legacy HTTP+SSE transport on each side of the
// gateway, and requires the client to see what it sees direct:
//   - an sse backend: server-everything in its sse mode behind the gateway;
//   - the /sse frontend: a TypeScript SDK SSEClientTransport client.
func TestLegacySSEBothSides(t *testing.T) {
	t.Parallel()
	needNode(t)

	port := freePort(t)
	cmd := exec.Command(nodeBin, everythingJS(), "sse")
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "NODE_OPTIONS=--require "+loopbackPreload())
	waitListening(t, startProc(t, "server-everything sse", "", cmd), port)
	sseBackend := newGateway(t, baseConfig(backendConfig{
		ID: "everything", Transport: "sse", URL: fmt.Sprintf("http://127.0.0.1:%d/sse", port), Isolation: "session",
	}))
	backendToken := sseBackend.token("alice", "dev")
	sseBackend.serve()

	sseFront := newGateway(t, baseConfig(everythingStdio("everything", "session")))
	frontToken := sseFront.token("alice", "dev")
	sseFront.serve()

	paths := []struct {
		name string
		args []string
	}{
		{"through the gateway to an sse backend", []string{"--http", sseBackend.URL, "--token", backendToken}},
		{"through the gateway's /sse frontend", []string{"--sse", strings.TrimSuffix(sseFront.URL, "/mcp") + "/sse", "--token", frontToken}},
	}
	n := 0
	for _, sc := range featureScenarios {
		if !strings.Contains(sc.name, "request reaches the client") { // sampling, elicitation, roots
			continue
		}
		n++
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			direct := runTSClient(t, nil, append(append([]string{"--stdio", nodeBin, everythingJS(), "stdio", "--"}, sc.flags...), sc.actions("")...)...)[1:]
			for _, p := range paths {
				t.Run(p.name, func(t *testing.T) {
					through := runTSClient(t, nil, append(append(p.args, sc.flags...), sc.actions(everythingPrefix)...)...)
					through = stripPrefix(t, through[1:], everythingPrefix)
					sc.check(t, through)
					compareTSLines(t, direct, through)
				})
			}
		})
	}
	if n != 3 {
		t.Fatalf("found %d server-request scenarios, want sampling, elicitation and roots", n)
	}
}
