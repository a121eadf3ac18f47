package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// This file holds the server-everything integration tests of issue 3: every
// MCP feature beyond tools/call, run with the TypeScript SDK client once
// directly against server-everything over stdio and once through `sallyport
// serve` (server-everything as a session-isolated stdio backend), asserting
// that the client saw the same thing both ways, modulo the namespace prefix
// and JSON-RPC ids.

// everythingPrefix is how the gateway namespaces server-everything's tools
// and prompts in these tests.
const everythingPrefix = "everything__"

// featureScenario is one feature exercised both ways.
type featureScenario struct {
	name string
	// flags are tsclient options: the client capabilities and canned
	// answers.
	flags []string
	// actions are tsclient actions; p is the prefix tool and prompt names
	// take ("" direct, everythingPrefix through the gateway).
	actions func(p string) []string
	// check looks at the action lines of one run (connect line dropped,
	// names already stripped of the prefix), beyond their equality.
	check func(t *testing.T, lines []tsLine)
}

// A resource of server-everything's that exists whatever the version: its
// docs folder is exposed as static resources.
const (
	everythingDocURI  = "demo://resource/static/document/features.md"
	everythingDocURI2 = "demo://resource/static/document/architecture.md"
	everythingDocURI3 = "demo://resource/static/document/structure.md"
	everythingDocURI4 = "demo://resource/static/document/startup.md"
)

var featureScenarios = []featureScenario{
	{
		name: "a sampling request reaches the client and its canned answer reaches the tool",
		flags: []string{"--sampling-reply", `{"model":"sallyport-canned-model","role":"assistant",` +
			`"content":{"type":"text","text":"canned sampling answer 5f1e"},"stopReason":"endTurn"}`},
		actions: func(p string) []string {
			return []string{
				"call", p + "trigger-sampling-request", `{"prompt":"what is a sallyport?","maxTokens":42}`,
				"wait-requests", "*", "1", "30",
			}
		},
		check: func(t *testing.T, lines []tsLine) {
			text := callText(t, lines[0])
			for _, want := range []string{"canned sampling answer 5f1e", "sallyport-canned-model", "endTurn"} {
				if !strings.Contains(text, want) {
					t.Errorf("trigger-sampling-request returned %q; want it to hold the client's answer (%q)", text, want)
				}
			}
			reqs := receivedMessages(t, lines[1], "requests")
			if len(reqs) != 1 || reqs[0].Method != "sampling/createMessage" {
				t.Fatalf("server requests: got %s, want exactly one sampling/createMessage", describeReceived(reqs))
			}
			var p struct {
				Messages []struct {
					Content struct{ Text string } `json:"content"`
				} `json:"messages"`
				MaxTokens int `json:"maxTokens"`
			}
			if err := json.Unmarshal(reqs[0].Params, &p); err != nil || len(p.Messages) != 1 ||
				!strings.Contains(p.Messages[0].Content.Text, "what is a sallyport?") || p.MaxTokens != 42 {
				t.Errorf("sampling/createMessage params %s: want the tool's prompt and maxTokens 42", reqs[0].Params)
			}
		},
	},
	{
		name: "an elicitation request reaches the client and the accepted content reaches the tool",
		flags: []string{"--elicitation-reply", `{"action":"accept","content":{"name":"Ada Lovelace","check":true,` +
			`"email":"ada@example.com","integer":7}}`},
		actions: func(p string) []string {
			return []string{
				"call", p + "trigger-elicitation-request", `{}`,
				"wait-requests", "*", "1", "30",
			}
		},
		check: func(t *testing.T, lines []tsLine) {
			text := callText(t, lines[0])
			for _, want := range []string{"User provided the requested information", "- Name: Ada Lovelace",
				"- Agreed to terms: true", "- Email: ada@example.com", "- Favorite Integer: 7"} {
				if !strings.Contains(text, want) {
					t.Errorf("trigger-elicitation-request returned %q; want %q", text, want)
				}
			}
			reqs := receivedMessages(t, lines[1], "requests")
			if len(reqs) != 1 || reqs[0].Method != "elicitation/create" {
				t.Fatalf("server requests: got %s, want exactly one elicitation/create", describeReceived(reqs))
			}
			if !bytes.Contains(reqs[0].Params, []byte(`"requestedSchema"`)) {
				t.Errorf("elicitation/create params %s: no requestedSchema", reqs[0].Params)
			}
		},
	},
	{
		name: "a roots request reaches the client and the tool lists the client's roots",
		flags: []string{"--roots", `[{"uri":"file:///srv/sallyport-root-one","name":"Root One"},` +
			`{"uri":"file:///srv/sallyport-root-two","name":"Root Two"}]`},
		actions: func(p string) []string {
			return []string{
				// Any call starts the backend (through the gateway a
				// session's backend starts on first use); server-everything
				// then asks for the roots on its own and logs that it got
				// them. Waiting for that log keeps get-roots-list from
				// asking a second time.
				"call", p + "echo", `{"message":"start"}`,
				"wait-notifications", "notifications/message", "1", "30",
				"call", p + "get-roots-list", `{}`,
				"wait-requests", "*", "1", "0",
			}
		},
		check: func(t *testing.T, lines []tsLine) {
			logs := receivedMessages(t, lines[1], "notifications")
			if len(logs) != 1 || !bytes.Contains(logs[0].Params, []byte("Roots updated: 2 root(s) received from client")) {
				t.Errorf("log messages: got %s, want server-everything's one \"Roots updated: 2 root(s)\"", describeReceived(logs))
			}
			text := callText(t, lines[2])
			for _, want := range []string{"Current MCP Roots (2 total)", "Root One", "file:///srv/sallyport-root-one",
				"Root Two", "file:///srv/sallyport-root-two"} {
				if !strings.Contains(text, want) {
					t.Errorf("get-roots-list returned %q; want %q", text, want)
				}
			}
			reqs := receivedMessages(t, lines[3], "requests")
			if len(reqs) != 1 || reqs[0].Method != "roots/list" {
				t.Errorf("server requests: got %s, want exactly one roots/list", describeReceived(reqs))
			}
		},
	},
	{
		name: "progress from a long-running tool reaches the client under the client's own token",
		actions: func(p string) []string {
			return []string{
				"call", p + "trigger-long-running-operation", `{"duration":0.3,"steps":3}`,
				"wait-notifications", "notifications/progress", "3", "30",
			}
		},
		check: func(t *testing.T, lines []tsLine) {
			callText(t, lines[0])
			got := receivedMessages(t, lines[1], "notifications")
			var values []string
			for _, n := range got {
				var p struct {
					Progress      json.Number     `json:"progress"`
					Total         json.Number     `json:"total"`
					ProgressToken json.RawMessage `json:"progressToken"`
				}
				_ = json.Unmarshal(n.Params, &p)
				// The SDK client's progress token is the call's request id:
				// 1, after initialize's 0.
				values = append(values, fmt.Sprintf("%s/%s token %s", p.Progress, p.Total, p.ProgressToken))
			}
			if want := []string{"1/3 token 1", "2/3 token 1", "3/3 token 1"}; strings.Join(values, ", ") != strings.Join(want, ", ") {
				t.Errorf("progress: got [%s], want [%s]", strings.Join(values, ", "), strings.Join(want, ", "))
			}
		},
	},
	{
		name: "a subscribed resource's updates reach the subscribed client",
		actions: func(p string) []string {
			return []string{
				"read", everythingDocURI,
				"subscribe", everythingDocURI,
				// Starts the simulated updates: one at once, then one every
				// five seconds.
				"call", p + "toggle-subscriber-updates", `{}`,
				"wait-notifications", "notifications/resources/updated", "1", "30",
				"wait-notifications", "notifications/message", "1", "30",
			}
		},
		check: func(t *testing.T, lines []tsLine) {
			if lines[0].Action != "read" || !lines[0].OK || !bytes.Contains(lines[0].Result, []byte(everythingDocURI)) {
				t.Errorf("read %s: got %+v", everythingDocURI, lines[0])
			}
			callText(t, lines[2])
			updates := receivedMessages(t, lines[3], "notifications")
			want := `{"uri":"` + everythingDocURI + `"}`
			if len(updates) == 0 || canonicalJSON(t, updates[0].Params) != want {
				t.Errorf("resource updates: got %s, want one for %s", describeReceived(updates), everythingDocURI)
			}
			logs := receivedMessages(t, lines[4], "notifications")
			if len(logs) != 1 || !bytes.Contains(logs[0].Params, []byte("Received Subscribe Resource request for URI: "+everythingDocURI)) {
				t.Errorf("log messages: got %s, want server-everything's acknowledgement of the subscription", describeReceived(logs))
			}
		},
	},
	{
		name: "completions of completable-prompt and of a resource template come from server-everything",
		actions: func(p string) []string {
			return []string{
				"complete", `{"ref":{"type":"ref/prompt","name":"` + p + `completable-prompt"},"argument":{"name":"department","value":"S"}}`,
				"complete", `{"ref":{"type":"ref/prompt","name":"` + p + `completable-prompt"},"argument":{"name":"name","value":""},` +
					`"context":{"arguments":{"department":"Engineering"}}}`,
				"complete", `{"ref":{"type":"ref/resource","uri":"demo://resource/dynamic/text/{resourceId}"},` +
					`"argument":{"name":"resourceId","value":"42"}}`,
			}
		},
		check: func(t *testing.T, lines []tsLine) {
			for i, want := range [][]string{{"Sales", "Support"}, {"Alice", "Bob", "Charlie"}, {"42"}} {
				var res struct {
					Completion struct {
						Values []string `json:"values"`
					} `json:"completion"`
				}
				if !lines[i].OK || json.Unmarshal(lines[i].Result, &res) != nil {
					t.Errorf("complete %d: got %+v (error %+v)", i, lines[i], lines[i].Error)
					continue
				}
				if strings.Join(res.Completion.Values, ",") != strings.Join(want, ",") {
					t.Errorf("complete %d: got values %q, want %q", i, res.Completion.Values, want)
				}
			}
		},
	},
	{
		name: "log level changes decide which log messages reach the client",
		actions: func(p string) []string {
			// Each subscription makes server-everything log one info
			// message, sent only when the session's level lets info
			// through. The first level is set before the backend has
			// started, as a client does right after initialize.
			return []string{
				"set-level", "warning",
				"subscribe", everythingDocURI,
				"set-level", "info",
				"subscribe", everythingDocURI2,
				"set-level", "error",
				"subscribe", everythingDocURI3,
				"set-level", "debug",
				"subscribe", everythingDocURI4,
				"wait-notifications", "notifications/message", "2", "30",
			}
		},
		check: func(t *testing.T, lines []tsLine) {
			logs := receivedMessages(t, lines[8], "notifications")
			var got []string
			for _, l := range logs {
				var p struct {
					Level string `json:"level"`
					Data  string `json:"data"`
				}
				_ = json.Unmarshal(l.Params, &p)
				got = append(got, p.Level+": "+p.Data)
			}
			want := []string{
				"info: Received Subscribe Resource request for URI: " + everythingDocURI2 + " ",
				"info: Received Subscribe Resource request for URI: " + everythingDocURI4 + " ",
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("log messages:\ngot:\n  %s\nwant (level warning hides the first, error the third):\n  %s",
					strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		},
	},
}

func TestEverythingFeatures(t *testing.T) {
	t.Parallel()
	needNode(t)
	g := newGateway(t, baseConfig(everythingStdio("everything", "session")))
	token := g.token("alice", "dev")
	g.serve()

	for _, sc := range featureScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			direct := runTSClient(t, nil, append(append([]string{"--stdio", nodeBin, everythingJS(), "stdio", "--"}, sc.flags...), sc.actions("")...)...)
			through := runTSClient(t, nil, append(append([]string{"--http", g.URL, "--token", token}, sc.flags...), sc.actions(everythingPrefix)...)...)
			direct, through = direct[1:], stripPrefix(t, through[1:], everythingPrefix)
			if n := countTSActions(t, sc.actions("")); len(direct) != n || len(through) != n {
				t.Fatalf("%d actions, but direct printed %d action lines and through the gateway %d", n, len(direct), len(through))
			}
			t.Run("direct, the client sees what the scenario expects", func(t *testing.T) { sc.check(t, direct) })
			t.Run("through the gateway, the client sees what the scenario expects", func(t *testing.T) { sc.check(t, through) })
			t.Run("the client sees the same through the gateway as direct", func(t *testing.T) {
				compareTSLines(t, direct, through)
			})
		})
	}
}

// countTSActions counts the tsclient actions in args.
func countTSActions(t *testing.T, args []string) int {
	t.Helper()
	arity := map[string]int{
		"list-tools": 0, "list-prompts": 0, "list-resources": 0, "list-resource-templates": 0, "ping": 0,
		"read": 1, "subscribe": 1, "unsubscribe": 1, "set-level": 1, "complete": 1,
		"call": 2, "get-prompt": 2, "wait-notifications": 3, "wait-requests": 3,
	}
	n := 0
	for i := 0; i < len(args); i++ {
		a, ok := arity[args[i]]
		if !ok {
			t.Fatalf("unknown tsclient action %q", args[i])
		}
		i += a
		n++
	}
	return n
}

// receivedEntry is one server request or notification as tsclient prints it.
type receivedEntry struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

// receivedMessages returns what a wait-requests or wait-notifications line
// lists (key is "requests" or "notifications"); it fails the test if the
// wait did not succeed.
func receivedMessages(t *testing.T, l tsLine, key string) []receivedEntry {
	t.Helper()
	if l.Action != "wait-"+key {
		t.Fatalf("want a wait-%s line, got %+v", key, l)
	}
	var res map[string][]receivedEntry
	if err := json.Unmarshal(l.Result, &res); err != nil {
		t.Fatalf("wait-%s result %s: %v", key, l.Result, err)
	}
	if !l.OK {
		t.Errorf("wait-%s: %s; got %s", key, l.Error.Message, describeReceived(res[key]))
	}
	return res[key]
}

func describeReceived(es []receivedEntry) string {
	if len(es) == 0 {
		return "nothing"
	}
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "\n    %s %s", e.Method, e.Params)
	}
	return b.String()
}

// callText is tsText that also fails on an isError result.
func callText(t *testing.T, l tsLine) string {
	t.Helper()
	text, isError := tsText(t, l)
	if isError {
		t.Errorf("call %s: isError result: %s", l.Tool, text)
	}
	return text
}

// canonicalJSON re-encodes JSON with sorted object members and numbers
// exactly as written, so two encodings of the same value compare equal.
func canonicalJSON(t testing.TB, raw []byte) string {
	t.Helper()
	if len(bytes.TrimSpace(raw)) == 0 {
		return ""
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, raw)
	}
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// stripPrefix removes the namespace prefix from the gateway run's lines:
// from tool names and from anywhere in results (prompt names in requests
// do not come back, but a tool may repeat its name).
func stripPrefix(t *testing.T, lines []tsLine, prefix string) []tsLine {
	t.Helper()
	out := make([]tsLine, len(lines))
	for i, l := range lines {
		l.Tool = strings.TrimPrefix(l.Tool, prefix)
		if len(l.Result) > 0 {
			l.Result = json.RawMessage(strings.ReplaceAll(canonicalJSON(t, l.Result), prefix, ""))
		}
		out[i] = l
	}
	return out
}

// compareTSLines asserts that two runs printed the same action lines:
// same actions, outcomes and results. The "progress" member of call lines
// is left out: the TypeScript SDK itself drops a call's last progress
// notification now and then (see tsclient.mjs); the progress scenario
// compares the notifications as they arrived instead.
func compareTSLines(t *testing.T, direct, through []tsLine) {
	t.Helper()
	if len(direct) != len(through) {
		t.Fatalf("direct printed %d action lines, through the gateway %d", len(direct), len(through))
	}
	for i := range direct {
		d, g := direct[i], through[i]
		step := fmt.Sprintf("action %d (%s %s)", i+1, d.Action, d.Tool)
		if d.Action != g.Action || d.Tool != g.Tool || d.OK != g.OK {
			t.Errorf("%s: direct %s %s ok=%v, through the gateway %s %s ok=%v (error %+v)",
				step, d.Action, d.Tool, d.OK, g.Action, g.Tool, g.OK, g.Error)
			continue
		}
		if dr, gr := canonicalJSON(t, d.Result), canonicalJSON(t, g.Result); dr != gr {
			t.Errorf("%s: the client saw different results\ndirect:\n  %s\nthrough the gateway (prefix %q removed):\n  %s",
				step, dr, everythingPrefix, gr)
		}
		if (d.Error == nil) != (g.Error == nil) || (d.Error != nil && d.Error.Message != g.Error.Message) {
			t.Errorf("%s: direct error %+v, through the gateway %+v", step, d.Error, g.Error)
		}
	}
}
