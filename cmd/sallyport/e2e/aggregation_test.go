package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
)

// aggregationBed is a gateway in front of four real backends: server-everything
// over stdio and over Streamable HTTP, server-filesystem and server-memory.
type aggregationBed struct {
	g        *gateway
	token    string
	fsRoot   string
	fsFile   string              // a file under fsRoot
	fsText   string              // its content
	expected map[string][]string // backend id -> tool names listed directly
}

func newAggregationBed(t *testing.T) *aggregationBed {
	t.Helper()
	needNode(t)
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := &aggregationBed{fsRoot: root, fsFile: filepath.Join(root, "notes.txt"), fsText: "sallyport e2e " + newMarker() + "\n"}
	if err := os.WriteFile(b.fsFile, []byte(b.fsText), 0o600); err != nil {
		t.Fatal(err)
	}
	remoteURL, _ := startEverythingHTTP(t)

	// The tools each backend really offers, listed with no gateway in
	// between (server-filesystem's names change between releases).
	b.expected = map[string][]string{}
	for id, args := range map[string][]string{
		"everything": {"--stdio", nodeBin, everythingJS(), "stdio", "--", "list-tools"},
		"remote":     {"--http", remoteURL, "list-tools"},
		"fs":         {"--stdio", nodeBin, filesystemJS(), root, "--", "list-tools"},
		"memory":     {"--stdio", "env", "MEMORY_FILE_PATH=" + filepath.Join(t.TempDir(), "direct.jsonl"), nodeBin, memoryJS(), "--", "list-tools"},
	} {
		b.expected[id] = tsToolNames(t, runTSClient(t, nil, args...)[1])
	}
	for _, want := range []struct{ id, tool string }{
		{"everything", "echo"}, {"everything", "get-sum"}, {"remote", "echo"},
		{"fs", "read_text_file"}, {"memory", "create_entities"}, {"memory", "read_graph"},
	} {
		if !slices.Contains(b.expected[want.id], want.tool) {
			t.Fatalf("%s offers %v directly, without %s: the pinned package changed", want.id, b.expected[want.id], want.tool)
		}
	}

	cfg := baseConfig(
		everythingStdio("everything", "session"),
		remoteHTTP("remote", remoteURL),
		filesystemStdio("fs", root, "shared"),
		memoryStdio("memory", filepath.Join(t.TempDir(), "memory.jsonl"), "shared"),
	)
	b.g = newGateway(t, cfg)
	b.token = b.g.token("alice", "dev", "ops")
	b.g.serve()
	return b
}

// checkToolNames asserts that names holds every backend tool under its
// prefix and nothing without a known prefix.
func (b *aggregationBed) checkToolNames(t *testing.T, names []string) {
	t.Helper()
	for id, tools := range b.expected {
		for _, tool := range tools {
			if !slices.Contains(names, id+"__"+tool) {
				t.Errorf("tool %s__%s missing from the gateway's list", id, tool)
			}
		}
	}
	for _, name := range names {
		id, _, ok := strings.Cut(name, "__")
		if _, known := b.expected[id]; !ok || !known {
			t.Errorf("gateway lists %q, which has no backend prefix", name)
		}
	}
	if t.Failed() {
		t.Logf("gateway tools: %v", names)
	}
}

func TestAggregation(t *testing.T) {
	t.Parallel()
	b := newAggregationBed(t)

	t.Run("the TypeScript SDK client sees every backend's tools under its prefix and calls route by prefix", func(t *testing.T) {
		entity := "ts-entity-" + newMarker()
		lines := runTSClient(t, nil, "--http", b.g.URL, "--token", b.token,
			"list-tools",
			"call", "everything__echo", `{"message":"hello from ts"}`,
			"call", "remote__echo", `{"message":"hello remote"}`,
			"call", "everything__get-sum", `{"a":2,"b":40}`,
			"call", "fs__read_text_file", mustJSON(t, map[string]any{"path": b.fsFile}),
			"call", "memory__create_entities", mustJSON(t, map[string]any{"entities": []any{
				map[string]any{"name": entity, "entityType": "test", "observations": []string{"made by tsclient"}}}}),
			"call", "memory__read_graph", `{}`,
			"call", "nosuchbackend__echo", `{"message":"x"}`,
			"call", "everything__no-such-tool", `{}`,
			"ping",
		)
		if len(lines) != 11 {
			t.Fatalf("got %d output lines, want 11", len(lines))
		}
		connect := lines[0]
		if connect.ProtocolVersion == "" || connect.ServerInfo == nil || connect.ServerInfo.Name == "" {
			t.Errorf("initialize result lacks protocol version or server info: %+v", connect)
		}
		t.Logf("negotiated %s with %+v", connect.ProtocolVersion, connect.ServerInfo)

		b.checkToolNames(t, tsToolNames(t, lines[1]))
		if text, _ := tsText(t, lines[2]); text != "Echo: hello from ts" {
			t.Errorf("everything__echo returned %q", text)
		}
		if text, _ := tsText(t, lines[3]); text != "Echo: hello remote" {
			t.Errorf("remote__echo returned %q", text)
		}
		if text, _ := tsText(t, lines[4]); !strings.Contains(text, "42") {
			t.Errorf("everything__get-sum 2+40 returned %q", text)
		}
		if text, isErr := tsText(t, lines[5]); isErr || text != b.fsText {
			t.Errorf("fs__read_text_file returned %q (isError %v), want %q", text, isErr, b.fsText)
		}
		if _, isErr := tsText(t, lines[6]); isErr {
			t.Errorf("memory__create_entities failed: %s", lines[6].Result)
		}
		if text, _ := tsText(t, lines[7]); !strings.Contains(text, entity) {
			t.Errorf("memory__read_graph does not hold %s: %q", entity, text)
		}
		for _, l := range lines[8:10] {
			if l.OK || l.Error == nil || l.Error.Code == nil || *l.Error.Code != -32602 {
				t.Errorf("call %s: got ok=%v result=%s error=%+v; want JSON-RPC error -32602", l.Tool, l.OK, l.Result, l.Error)
			}
		}
		if !lines[10].OK {
			t.Errorf("ping: %+v", lines[10].Error)
		}
	})

	t.Run("mcp-go's client sees every backend's tools under its prefix and calls route by prefix", func(t *testing.T) {
		c := dialGo(t, b.g.URL, b.token)
		b.checkToolNames(t, c.toolNames(t))
		if text := c.mustCall(t, "everything__echo", map[string]any{"message": "hello from go"}); text != "Echo: hello from go" {
			t.Errorf("everything__echo returned %q", text)
		}
		if text := c.mustCall(t, "remote__echo", map[string]any{"message": "go remote"}); text != "Echo: go remote" {
			t.Errorf("remote__echo returned %q", text)
		}
		if text := c.mustCall(t, "everything__get-sum", map[string]any{"a": 2, "b": 40}); !strings.Contains(text, "42") {
			t.Errorf("everything__get-sum 2+40 returned %q", text)
		}
		if text := c.mustCall(t, "fs__read_text_file", map[string]any{"path": b.fsFile}); text != b.fsText {
			t.Errorf("fs__read_text_file returned %q, want %q", text, b.fsText)
		}
		entity := "go-entity-" + newMarker()
		c.mustCall(t, "memory__create_entities", map[string]any{"entities": []any{
			map[string]any{"name": entity, "entityType": "test", "observations": []string{"made by mcp-go"}}}})
		if text := c.mustCall(t, "memory__read_graph", map[string]any{}); !strings.Contains(text, entity) {
			t.Errorf("memory__read_graph does not hold %s: %q", entity, text)
		}
		for _, tool := range []string{"nosuchbackend__echo", "everything__no-such-tool", "echo"} {
			ctx, cancel := context.WithTimeout(context.Background(), callWait)
			res, err := c.call(ctx, tool, map[string]any{"message": "x"}, nil)
			cancel()
			if !errors.Is(err, mcp.ErrInvalidParams) {
				t.Errorf("call %s: got result %v, error %v; want JSON-RPC error -32602", tool, describeResult(res), err)
			}
		}
	})
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func describeResult(res *mcp.CallToolResult) string {
	if res == nil {
		return "none"
	}
	return fmt.Sprintf("{isError:%v text:%q}", res.IsError, resultText(res))
}
