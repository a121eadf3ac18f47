package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// testTime is the time of every exchange the tests build, so that input
// documents do not depend on the clock.
var testTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testBackends is the configuration the default-policy tests run with.
var testBackends = []config.Backend{
	{ID: "docs", Transport: "stdio", Trusted: true, ReadOnlyTools: []string{"search", "get_*"}},
	{ID: "db", Transport: "stdio", Trusted: true, ReadOnlyTools: []string{"query"}, DestructiveTools: []string{"drop_*"}},
	{ID: "web", Transport: "http", ReadOnlyTools: []string{"fetch"}},
}

var (
	alice     = &gateway.Principal{ID: "alice", Groups: []string{"dev"}, TokenID: "tok_alice"}
	bob       = &gateway.Principal{ID: "bob", Groups: []string{"ops"}, TokenID: "tok_bob"}
	anonymous = &gateway.Principal{ID: "anonymous", Anonymous: true}
	session   = &gateway.SessionInfo{ID: "s1", Transport: "http", ProtocolVersion: "2025-11-25", ClientName: "test", ClientVersion: "1"}
)

// writeFiles writes files (name → content, names may hold '/') under dir.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// policyDir returns a new directory holding files.
func policyDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, files)
	return dir
}

// regoFile returns a policy module of package sallyport with body.
func regoFile(body string) string { return "package sallyport\n\n" + body + "\n" }

// newStage returns a stage on opts, failing the test when it does not load.
func newStage(t testing.TB, opts Options) *Stage {
	t.Helper()
	st, err := NewStage(context.Background(), opts)
	if err != nil {
		t.Fatalf("NewStage: %v", err)
	}
	return st
}

// customStage returns a stage on a policy directory holding one file
// a.rego with body (package sallyport).
func customStage(t testing.TB, body string) *Stage {
	t.Helper()
	return newStage(t, Options{Source: Source{Paths: []string{policyDir(t, map[string]string{"a.rego": regoFile(body)})}}, Backends: testBackends})
}

// toolCall returns a tools/call request for backend's tool (its backend
// name) with args (raw JSON, "" for none) and the backend's definition def
// ("" for none).
func toolCall(p *gateway.Principal, backend, tool, args, def string) *gateway.Exchange {
	params := `{"name":` + string(jsonrpc.Quote(backend+"__"+tool))
	if args != "" {
		params += `,"arguments":` + args
	}
	params += `}`
	x := newExchange(p, gateway.ClientToBackend, gateway.KindRequest, "tools/call", &jsonrpc.Message{ID: json.RawMessage(`1`), Method: "tools/call", Params: json.RawMessage(params)})
	x.Backend, x.Target = backend, tool
	x.Arguments, _ = jsonrpc.Member(x.Message.Params, "arguments")
	if def != "" {
		x.Definition = json.RawMessage(def)
	}
	return x
}

func newExchange(p *gateway.Principal, dir gateway.Direction, kind gateway.Kind, method string, m *jsonrpc.Message) *gateway.Exchange {
	x := gateway.NewExchange(nil)
	x.Direction, x.Kind, x.Method, x.Message = dir, kind, method, m
	x.Principal, x.Session, x.Time = p, session, testTime
	return x
}

// resultOf returns the backend's answer result to the request req.
func resultOf(req *gateway.Exchange, result string) *gateway.Exchange {
	x := newExchange(req.Principal, gateway.BackendToClient, gateway.KindResult, req.Method, &jsonrpc.Message{ID: req.Message.ID, Result: json.RawMessage(result)})
	x.Backend, x.Target, x.Request = req.Backend, req.Target, req
	return x
}

// serverRequest returns a request backend sends to the client.
func serverRequest(p *gateway.Principal, backend, method, params string) *gateway.Exchange {
	x := newExchange(p, gateway.BackendToClient, gateway.KindServerRequest, method, &jsonrpc.Message{ID: json.RawMessage(`"srv-1"`), Method: method, Params: json.RawMessage(params)})
	x.Backend = backend
	return x
}

// notification returns a notification going dir.
func notification(p *gateway.Principal, dir gateway.Direction, backend, method, params string) *gateway.Exchange {
	x := newExchange(p, dir, gateway.KindNotification, method, &jsonrpc.Message{Method: method, Params: json.RawMessage(params)})
	x.Backend = backend
	return x
}

// request returns a request of method with params to backend ("" for the
// gateway itself), targeting target.
func request(p *gateway.Principal, backend, method, target, params string) *gateway.Exchange {
	x := newExchange(p, gateway.ClientToBackend, gateway.KindRequest, method, &jsonrpc.Message{ID: json.RawMessage(`2`), Method: method, Params: json.RawMessage(params)})
	x.Backend, x.Target = backend, target
	return x
}

// recorder is the next handler of a stage under test.
type recorder struct {
	called int
	seen   *gateway.Exchange
	msg    *jsonrpc.Message // the message as next got it
}

func (r *recorder) Handle(_ context.Context, x *gateway.Exchange) error {
	r.called++
	r.seen, r.msg = x, x.Message
	return nil
}

// handle runs x through st and returns the error and what next saw.
func handle(t testing.TB, st *Stage, x *gateway.Exchange) (*recorder, error) {
	t.Helper()
	var next recorder
	err := st.Handle(context.Background(), x, &next)
	if err == nil && next.called != 1 {
		t.Fatalf("Handle passed the exchange on %d times, want once", next.called)
	}
	if err != nil && next.called != 0 {
		t.Fatalf("Handle refused the exchange (%v) but passed it on %d times", err, next.called)
	}
	return &next, err
}

// refusal returns err as a *gateway.Error, failing the test otherwise.
func refusal(t testing.TB, err error) *gateway.Error {
	t.Helper()
	var ge *gateway.Error
	if !errors.As(err, &ge) {
		t.Fatalf("error %v (%T) is not a *gateway.Error", err, err)
	}
	return ge
}

// checkDecision checks the parts every decision the stage makes has.
func checkDecision(t testing.TB, st *Stage, x *gateway.Exchange) *gateway.Decision {
	t.Helper()
	d := x.Decision
	if d == nil {
		t.Fatal("x.Decision is nil")
	}
	if d.PolicyVersion == "" || d.PolicyVersion != st.Current().Version() {
		t.Errorf("PolicyVersion = %q, want the current set's %q", d.PolicyVersion, st.Current().Version())
	}
	if x.Kind == gateway.KindResult {
		// Replay does not evaluate results: their input is not recorded.
		if len(d.Input) != 0 {
			t.Errorf("the decision of a result records its input %s", d.Input)
		}
	} else if len(d.Input) == 0 || !json.Valid(d.Input) {
		t.Errorf("Input = %q, want a JSON document", d.Input)
	}
	if len(d.Rules) == 0 {
		t.Errorf("Rules is empty; every decision of these policies names a rule")
	}
	return d
}

// inputMember decodes one member of a decision's recorded input.
func inputMember(t testing.TB, d *gateway.Decision, key string) any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(d.Input, &doc); err != nil {
		t.Fatalf("Input %s: %v", d.Input, err)
	}
	return doc[key]
}

func TestStageDefaultPolicy(t *testing.T) {
	st := newStage(t, Options{Backends: testBackends})
	if got := st.Current().Source(); got != DefaultSource {
		t.Errorf("Source() = %q, want %q", got, DefaultSource)
	}
	claimsReadOnly := `{"name":"update","annotations":{"readOnlyHint":true,"destructiveHint":false}}`
	tests := []struct {
		name    string
		x       *gateway.Exchange
		verdict string
		rules   []string
		message string // in the refusal
	}{
		{
			name:  "allow / anonymous call of a configured read-only tool of a trusted backend",
			x:     toolCall(anonymous, "docs", "search", `{"query":"q3"}`, `{"name":"search"}`),
			rules: []string{"default/allow"}, verdict: gateway.DecisionAllow,
		},
		{
			name:  "allow / anonymous call of a tool matching a read-only pattern",
			x:     toolCall(anonymous, "docs", "get_page", `{"id":1}`, ""),
			rules: []string{"default/allow"}, verdict: gateway.DecisionAllow,
		},
		{
			name:  "allow / a principal-less call is anonymous and may use read-only tools",
			x:     toolCall(nil, "docs", "search", `{}`, ""),
			rules: []string{"default/allow"}, verdict: gateway.DecisionAllow,
		},
		{
			name:  "deny / anonymous call of a write tool even when the backend annotates it read-only",
			x:     toolCall(anonymous, "docs", "update", `{"id":1}`, claimsReadOnly),
			rules: []string{"default/anonymous-read-only"}, verdict: gateway.DecisionDeny,
			message: "denied by policy: anonymous principals may only use read-only tools and resources of trusted backends",
		},
		{
			name:  "deny / a principal-less write call is anonymous",
			x:     toolCall(nil, "docs", "update", `{}`, ""),
			rules: []string{"default/anonymous-read-only"}, verdict: gateway.DecisionDeny,
			message: "anonymous principals may only use read-only tools",
		},
		{
			name:  "deny / anonymous call of a read-only tool of an untrusted backend",
			x:     toolCall(anonymous, "web", "fetch", `{"url":"https://example.com"}`, ""),
			rules: []string{"default/anonymous-read-only"}, verdict: gateway.DecisionDeny,
			message: "anonymous principals may only use read-only tools",
		},
		{
			name:  "allow / authenticated call of a write tool of an untrusted backend",
			x:     toolCall(alice, "web", "post", `{"body":"x"}`, ""),
			rules: []string{"default/allow"}, verdict: gateway.DecisionAllow,
		},
		{
			name:  "approval / destructive tool (configuration) whose annotations say readOnlyHint true",
			x:     toolCall(alice, "db", "drop_table", `{"table":"users"}`, `{"name":"drop_table","annotations":{"readOnlyHint":true,"destructiveHint":false}}`),
			rules: []string{"default/destructive-tool"}, verdict: gateway.DecisionApproval,
		},
		{
			name:  "approval / anonymous call of a trusted backend's destructive tool goes to a reviewer",
			x:     toolCall(anonymous, "db", "drop_table", `{}`, ""),
			rules: []string{"default/destructive-tool"}, verdict: gateway.DecisionApproval,
		},
		{
			name:  "deny / sampling request with includeContext thisServer",
			x:     serverRequest(alice, "docs", "sampling/createMessage", `{"messages":[],"maxTokens":10,"includeContext":"thisServer"}`),
			rules: []string{"default/sampling-include-context"}, verdict: gateway.DecisionDeny,
			message: `sampling with includeContext "thisServer" is not allowed`,
		},
		{
			name:  "deny / sampling request with includeContext allServers",
			x:     serverRequest(alice, "docs", "sampling/createMessage", `{"messages":[],"maxTokens":10,"includeContext":"allServers"}`),
			rules: []string{"default/sampling-include-context"}, verdict: gateway.DecisionDeny,
			message: `includeContext "allServers"`,
		},
		{
			name:  "allow / sampling request with includeContext none",
			x:     serverRequest(alice, "docs", "sampling/createMessage", `{"messages":[],"maxTokens":10,"includeContext":"none"}`),
			rules: []string{"default/allow"}, verdict: gateway.DecisionAllow,
		},
		{
			name:  "allow / result of an anonymous call passes",
			x:     resultOf(toolCall(anonymous, "docs", "search", `{}`, ""), `{"content":[{"type":"text","text":"hit"}]}`),
			rules: []string{"default/allow"}, verdict: gateway.DecisionAllow,
		},
		{
			name: "allow / error result of a write call passes",
			x: func() *gateway.Exchange {
				x := resultOf(toolCall(alice, "web", "post", `{}`, ""), "")
				x.Message = jsonrpc.NewError(json.RawMessage(`1`), -32000, "backend down", nil)
				return x
			}(),
			rules: []string{"default/allow"}, verdict: gateway.DecisionAllow,
		},
		{
			name:  "allow / progress notification from a backend to an anonymous client passes",
			x:     notification(anonymous, gateway.BackendToClient, "web", "notifications/progress", `{"progressToken":1,"progress":0.5}`),
			rules: []string{"default/allow"}, verdict: gateway.DecisionAllow,
		},
		{
			name:  "allow / cancellation notification from an anonymous client passes",
			x:     notification(anonymous, gateway.ClientToBackend, "web", "notifications/cancelled", `{"requestId":1}`),
			rules: []string{"default/allow"}, verdict: gateway.DecisionAllow,
		},
		{
			name:  "allow / anonymous tools/list, which the gateway answers",
			x:     request(anonymous, "", "tools/list", "", `{}`),
			rules: []string{"default/allow"}, verdict: gateway.DecisionAllow,
		},
		{
			name:  "allow / anonymous resources/read of a trusted backend",
			x:     request(anonymous, "docs", "resources/read", "file:///a.txt", `{"uri":"file:///a.txt"}`),
			rules: []string{"default/allow"}, verdict: gateway.DecisionAllow,
		},
		{
			name:  "deny / anonymous resources/read of an untrusted backend",
			x:     request(anonymous, "web", "resources/read", "https://example.com/", `{"uri":"https://example.com/"}`),
			rules: []string{"default/anonymous-read-only"}, verdict: gateway.DecisionDeny,
			message: "anonymous principals",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := tt.x.Message
			next, err := handle(t, st, tt.x)
			d := checkDecision(t, st, tt.x)
			if got := d.Verdict(); got != tt.verdict {
				t.Errorf("Verdict() = %q (reasons %q), want %q", got, d.Reasons, tt.verdict)
			}
			if !slices.Equal(d.Rules, tt.rules) {
				t.Errorf("Rules = %q, want %q", d.Rules, tt.rules)
			}
			if tt.verdict == gateway.DecisionAllow || tt.verdict == gateway.DecisionApproval {
				// A call that needs approval is passed on: the approval
				// stage holds it, and the Gate refuses it without a grant.
				if err != nil {
					t.Fatalf("Handle: %v", err)
				}
				if next.msg != msg {
					t.Errorf("the message passed on is not the message received")
				}
				return
			}
			ge := refusal(t, err)
			if ge.Code != gateway.CodeRefused {
				t.Errorf("Code = %d, want CodeRefused (%d)", ge.Code, gateway.CodeRefused)
			}
			if !strings.Contains(ge.Message, tt.message) {
				t.Errorf("Message = %q, want it to contain %q", ge.Message, tt.message)
			}
			if tt.verdict == gateway.DecisionDeny && len(d.Reasons) == 0 {
				t.Errorf("a denial has no reasons")
			}
		})
	}

	t.Run("the recorded input of a call holds the tool but not its arguments", func(t *testing.T) {
		x := toolCall(alice, "db", "query", `{"sql":"select 'needle-41'"}`, `{"name":"query","annotations":{"readOnlyHint":true}}`)
		if _, err := handle(t, st, x); err != nil {
			t.Fatal(err)
		}
		d := checkDecision(t, st, x)
		if bytes.Contains(d.Input, []byte("needle-41")) {
			t.Errorf("Input %s holds the arguments", d.Input)
		}
		tool, _ := inputMember(t, d, "tool").(map[string]any)
		want := map[string]any{"name": "db__query", "backend_name": "query", "read_only": true, "destructive": false}
		for k, v := range want {
			if tool[k] != v {
				t.Errorf("input.tool.%s = %v, want %v (tool %v)", k, tool[k], v, tool)
			}
		}
		if h, _ := tool["definition_hash"].(string); len(h) != 64 {
			t.Errorf("input.tool.definition_hash = %q, want a hex SHA-256", h)
		}
		if got := inputMember(t, d, "time"); got != testTime.Format(time.RFC3339Nano) {
			t.Errorf("input.time = %v, want %v", got, testTime.Format(time.RFC3339Nano))
		}
		backend, _ := inputMember(t, d, "backend").(map[string]any)
		if backend["id"] != "db" || backend["trusted"] != true {
			t.Errorf("input.backend = %v", backend)
		}
	})

	t.Run("metrics count evaluations, denials and approvals", func(t *testing.T) {
		st := newStage(t, Options{Backends: testBackends})
		for _, x := range []*gateway.Exchange{
			toolCall(anonymous, "docs", "search", `{}`, ""),
			toolCall(anonymous, "docs", "update", `{}`, ""),
			toolCall(alice, "db", "drop_x", `{}`, ""),
		} {
			st.Handle(context.Background(), x, &recorder{})
		}
		var b bytes.Buffer
		st.WriteMetrics(&b)
		for _, want := range []string{
			"sallyport_policy_evaluations_total 3\n",
			"sallyport_policy_denials_total 1\n",
			"sallyport_policy_approvals_required_total 1\n",
			"sallyport_policy_errors_total 0\n",
			"sallyport_policy_reload_failing 0\n",
		} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("metrics lack %q:\n%s", want, b.String())
			}
		}
	})
}

func TestStageCustomPolicy(t *testing.T) {
	t.Run("per-argument rule", func(t *testing.T) {
		st := customStage(t, `
default decision := {"allow": true, "rules": ["custom/allow"]}

decision := {
	"allow": false,
	"deny_reasons": [sprintf("path %s is outside the root", [input.arguments.path])],
	"rules": ["custom/root"],
} if startswith(input.arguments.path, "/etc")
`)
		tests := []struct {
			name    string
			args    string
			allow   bool
			rules   []string
			message string
		}{
			{name: "deny / per-argument rule on a path outside the root", args: `{"path":"/etc/passwd"}`,
				rules: []string{"custom/root"}, message: "denied by policy: path /etc/passwd is outside the root"},
			{name: "allow / per-argument rule on a path inside the root", args: `{"path":"/home/alice/notes.txt"}`,
				allow: true, rules: []string{"custom/allow"}},
			{name: "allow / per-argument rule when the argument is absent", args: `{"other":"/etc/passwd"}`,
				allow: true, rules: []string{"custom/allow"}},
			{name: "allow / per-argument rule when the call has no arguments", args: "",
				allow: true, rules: []string{"custom/allow"}},
			{name: "deny / per-argument rule reads escaped argument text as decoded", args: `{"path":"\u002fetc/shadow"}`,
				rules: []string{"custom/root"}, message: "path /etc/shadow is outside the root"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				x := toolCall(alice, "docs", "read", tt.args, "")
				_, err := handle(t, st, x)
				d := checkDecision(t, st, x)
				if d.Allow != tt.allow || !slices.Equal(d.Rules, tt.rules) {
					t.Errorf("decision allow=%v rules=%q reasons=%q, want allow=%v rules=%q", d.Allow, d.Rules, d.Reasons, tt.allow, tt.rules)
				}
				if tt.allow {
					if err != nil {
						t.Errorf("Handle: %v", err)
					}
					return
				}
				ge := refusal(t, err)
				if ge.Code != gateway.CodeRefused || !strings.Contains(ge.Message, tt.message) {
					t.Errorf("refusal %d %q, want CodeRefused with %q", ge.Code, ge.Message, tt.message)
				}
			})
		}
	})

	t.Run("redaction", func(t *testing.T) {
		st := customStage(t, `
decision := {"allow": true, "rules": ["custom/redact"], "redact": ["params.arguments.password", "params.arguments.keys[*].secret"]} if {
	input.method == "tools/call"
	input.kind == "request"
} else := {"allow": true, "rules": ["custom/redact-result"], "redact": ["result.content[1].text", "result.structuredContent[\"e-mail\"]"]} if {
	input.kind == "result"
} else := {"allow": true, "rules": ["custom/allow"]}
`)
		tests := []struct {
			name     string
			x        *gateway.Exchange
			params   string // the params next gets, "" for unchanged
			result   string // the result next gets, "" for unchanged
			args     string // x.Arguments after, "" for unchanged
			redacted int
		}{
			{
				name:     "allow / redact paths replace the password and every secret of the arguments",
				x:        toolCall(alice, "docs", "login", `{"user":"alice","password":"hunter2","keys":[{"id":1,"secret":"s1"},{"id":2}]}`, ""),
				params:   `{"name":"docs__login","arguments":{"user":"alice","password":"[REDACTED]","keys":[{"id":1,"secret":"[REDACTED]"},{"id":2}]}}`,
				args:     `{"user":"alice","password":"[REDACTED]","keys":[{"id":1,"secret":"[REDACTED]"},{"id":2}]}`,
				redacted: 2,
			},
			{
				name: "allow / redact paths that name nothing leave the message alone",
				x:    toolCall(alice, "docs", "login", `{"user":"alice"}`, ""),
			},
			{
				name:     "allow / redact paths into a result",
				x:        resultOf(toolCall(alice, "docs", "read", `{}`, ""), `{"content":[{"type":"text","text":"public"},{"type":"text","text":"private"}],"structuredContent":{"e-mail":"a@example.com","n":1}}`),
				result:   `{"content":[{"type":"text","text":"public"},{"type":"text","text":"[REDACTED]"}],"structuredContent":{"e-mail":"[REDACTED]","n":1}}`,
				redacted: 2,
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				orig := tt.x.Message
				origParams, origResult := string(orig.Params), string(orig.Result)
				origArgs := string(tt.x.Arguments)
				next, err := handle(t, st, tt.x)
				if err != nil {
					t.Fatal(err)
				}
				d := checkDecision(t, st, tt.x)
				wantParams, wantResult, wantArgs := tt.params, tt.result, tt.args
				if wantParams == "" {
					wantParams = origParams
				}
				if wantResult == "" {
					wantResult = origResult
				}
				if wantArgs == "" {
					wantArgs = origArgs
				}
				if got := string(next.msg.Params); got != wantParams {
					t.Errorf("params passed on:\n got %s\nwant %s", got, wantParams)
				}
				if got := string(next.msg.Result); got != wantResult {
					t.Errorf("result passed on:\n got %s\nwant %s", got, wantResult)
				}
				if got := string(tt.x.Arguments); got != wantArgs {
					t.Errorf("x.Arguments:\n got %s\nwant %s", got, wantArgs)
				}
				if string(orig.Params) != origParams || string(orig.Result) != origResult {
					t.Errorf("the received message was changed in place: params %s result %s", orig.Params, orig.Result)
				}
				hasReason := slices.ContainsFunc(d.Reasons, func(r string) bool { return strings.HasPrefix(r, "redacted ") })
				if tt.redacted > 0 {
					want := fmt.Sprintf("redacted %d value(s)", tt.redacted)
					if !slices.Contains(d.Reasons, want) {
						t.Errorf("Reasons = %q, want %q", d.Reasons, want)
					}
					if next.msg == orig {
						t.Errorf("a redacted message was passed on as the same *Message")
					}
				} else if hasReason || next.msg != orig {
					t.Errorf("nothing to redact, yet reasons %q and message replaced: %v", d.Reasons, next.msg != orig)
				}
			})
		}
	})

	t.Run("redaction reaches the recorded input", func(t *testing.T) {
		// The audit log keeps Decision.Input as the row's policy_input. A
		// value policy redacts must not be written there in clear.
		st := customStage(t, `decision := {"allow": true, "rules": ["custom/redact"], "redact": ["params.messages[*].content.text"]}`)
		x := serverRequest(alice, "docs", "sampling/createMessage", `{"messages":[{"role":"user","content":{"type":"text","text":"token sk-live-1234"}}],"maxTokens":5,"includeContext":"none"}`)
		next, err := handle(t, st, x)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(next.msg.Params, []byte("sk-live-1234")) {
			t.Fatalf("params passed on still hold the value: %s", next.msg.Params)
		}
		if bytes.Contains(x.Decision.Input, []byte("sk-live-1234")) {
			t.Error("Decision.Input (audit policy_input) keeps params that policy redacted: " + string(x.Decision.Input))
		}
	})

	t.Run("list filtering", func(t *testing.T) {
		st := customStage(t, `
decision := {"allow": false, "deny_reasons": ["secret tools are hidden"], "rules": ["custom/hide-secret"]} if {
	input.listing
	input.tool.backend_name == "secret"
} else := {"allow": false, "deny_reasons": ["bob may not list"], "rules": ["custom/no-bob"]} if {
	input.listing
	input.principal.id == "bob"
} else := {"allow": true, "rules": ["custom/allow"]}
`)
		tools := `{"tools":[{"name":"docs__search","inputSchema":{"type":"object"}},{"name":"docs__secret","inputSchema":{"type":"object"}},{"name":"web__fetch","inputSchema":{"type":"object"}}],"nextCursor":"c1"}`
		listed := []gateway.ListedEntry{{Backend: "docs", Name: "search"}, {Backend: "docs", Name: "secret"}, {Backend: "web", Name: "fetch"}}
		list := func(p *gateway.Principal, listed []gateway.ListedEntry, result string) *gateway.Exchange {
			req := request(p, "", "tools/list", "", `{}`)
			req.Listed = listed
			return resultOf(req, result)
		}
		tests := []struct {
			name    string
			x       *gateway.Exchange
			names   []string // the tools passed on; nil when refused
			reason  string
			rules   []string
			refused string
		}{
			{
				name:   "allow / a tools/list result loses the tool policy hides",
				x:      list(alice, listed, tools),
				names:  []string{"docs__search", "web__fetch"},
				reason: "hid 1 of 3 tools",
				rules:  []string{"custom/allow", "custom/hide-secret"},
			},
			{
				name:   "allow / a tools/list result loses every tool of a principal policy hides them from",
				x:      list(bob, listed, tools),
				names:  []string{},
				reason: "hid 3 of 3 tools",
				rules:  []string{"custom/allow", "custom/hide-secret", "custom/no-bob"},
			},
			{
				name:  "allow / a tools/list result with nothing to hide is passed on unchanged",
				x:     list(alice, listed[:1], `{"tools":[{"name":"docs__search"}]}`),
				names: []string{"docs__search"},
				rules: []string{"custom/allow"},
			},
			{
				name:    "deny / a tools/list result with fewer origins than entries fails closed",
				x:       list(alice, listed[:2], tools),
				refused: "tools/list could not be filtered by policy",
			},
			{
				name:    "deny / a tools/list result with more origins than entries fails closed",
				x:       list(alice, append(slices.Clone(listed), gateway.ListedEntry{Backend: "docs", Name: "extra"}), tools),
				refused: "tools/list could not be filtered by policy",
			},
			{
				name:    "deny / a tools/list result whose tools are not an array fails closed",
				x:       list(alice, listed, `{"tools":{"name":"docs__secret"}}`),
				refused: "tools/list could not be filtered by policy",
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				orig := string(tt.x.Message.Result)
				next, err := handle(t, st, tt.x)
				if tt.refused != "" {
					ge := refusal(t, err)
					if !strings.Contains(ge.Message, tt.refused) {
						t.Errorf("refusal %q, want %q", ge.Message, tt.refused)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				d := checkDecision(t, st, tt.x)
				var res struct {
					Tools []struct {
						Name string `json:"name"`
					} `json:"tools"`
					NextCursor string `json:"nextCursor"`
				}
				if err := json.Unmarshal(next.msg.Result, &res); err != nil {
					t.Fatalf("result passed on %s: %v", next.msg.Result, err)
				}
				names := []string{}
				for _, tool := range res.Tools {
					names = append(names, tool.Name)
				}
				if !slices.Equal(names, tt.names) {
					t.Errorf("tools passed on = %q, want %q", names, tt.names)
				}
				if res.NextCursor != "c1" && strings.Contains(orig, "c1") {
					t.Errorf("nextCursor lost: %s", next.msg.Result)
				}
				if tt.reason == "" {
					if string(next.msg.Result) != orig || len(d.Reasons) != 0 {
						t.Errorf("nothing hidden, yet result %s, reasons %q", next.msg.Result, d.Reasons)
					}
				} else if !slices.Contains(d.Reasons, tt.reason) {
					t.Errorf("Reasons = %q, want %q", d.Reasons, tt.reason)
				}
				if !slices.Equal(d.Rules, tt.rules) {
					t.Errorf("Rules = %q, want %q", d.Rules, tt.rules)
				}
				if string(tt.x.Request.Message.Params) != `{}` {
					t.Errorf("the request was changed")
				}
			})
		}

		t.Run("metrics count hidden entries", func(t *testing.T) {
			st := customStage(t, `decision := {"allow": false} if input.listing else := {"allow": true, "rules": ["custom/allow"]}`)
			handle(t, st, list(alice, listed, tools))
			var b bytes.Buffer
			st.WriteMetrics(&b)
			if !strings.Contains(b.String(), "sallyport_policy_hidden_entries_total 3\n") {
				t.Errorf("metrics:\n%s", b.String())
			}
		})
	})

	t.Run("approval from a custom policy carries its reviewers and timeout", func(t *testing.T) {
		st := customStage(t, `decision := {"allow": true, "rules": ["custom/ask"], "require_approval": {"reason": "payments need a second pair of eyes", "reviewers": "finance", "timeout": "90s"}}`)
		x := toolCall(alice, "docs", "pay", `{"amount":10}`, "")
		_, err := handle(t, st, x)
		d := checkDecision(t, st, x)
		if d.Verdict() != gateway.DecisionApproval {
			t.Fatalf("Verdict() = %q, want approval", d.Verdict())
		}
		want := gateway.ApprovalRequest{Reason: "payments need a second pair of eyes", Reviewers: "finance", Timeout: 90 * time.Second}
		if *d.Approval != want {
			t.Errorf("Approval = %+v, want %+v", *d.Approval, want)
		}
		if err != nil {
			t.Errorf("Handle: %v (the approval stage, not policy, holds the call)", err)
		}
	})

	t.Run("approval with a quorum and retry mode", func(t *testing.T) {
		st := customStage(t, `decision := {"allow": true, "rules": ["custom/ask"], "require_approval": {"reason": "two people", "quorum": 2, "mode": "retry"}}`)
		x := toolCall(alice, "docs", "pay", `{"amount":10}`, "")
		if _, err := handle(t, st, x); err != nil {
			t.Fatalf("Handle: %v", err)
		}
		d := checkDecision(t, st, x)
		want := gateway.ApprovalRequest{Reason: "two people", Quorum: 2, Mode: gateway.ApprovalModeRetry}
		if d.Approval == nil || *d.Approval != want {
			t.Errorf("Approval = %+v, want %+v", d.Approval, want)
		}
	})
}

// slowRule never holds and takes far longer than any deadline the tests
// set to find that out: 25 million iterations.
const slowRule = `
slow if {
	some x in numbers.range(1, 5000)
	some y in numbers.range(1, 5000)
	x * y == -1
}
`

func TestStageFailsClosed(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		reason string // in the single reason
		rules  []string
	}{
		{name: "deny / undefined decision", body: `decision := {"allow": true} if input.method == "never/called"`,
			reason: "policy decision is undefined"},
		{name: "deny / builtin type error under strict builtin errors", body: `decision := {"allow": to_number("x") > 0}`,
			reason: "policy evaluation failed"},
		{name: "deny / division by zero", body: `decision := {"allow": count(input.principal.groups) / 0 > 0}`,
			reason: "policy evaluation failed"},
		{name: "deny / conflicting values of a complete rule",
			body:   "decision := {\"allow\": true} if input.kind == \"request\"\n\ndecision := {\"allow\": false} if input.method == \"tools/call\"",
			reason: "policy evaluation failed"},
		{name: "deny / decision is not an object", body: `decision := true`,
			reason: "policy decision is a boolean, not an object"},
		{name: "deny / decision is an array", body: `decision := [true]`,
			reason: "policy decision is an array, not an object"},
		{name: "deny / allow missing", body: `decision := {"rules": ["custom/x"]}`,
			reason: "policy decision has no allow"},
		{name: "deny / allow is a string", body: `decision := {"allow": "true"}`,
			reason: "policy decision: allow is a string, not a boolean"},
		{name: "deny / allow is null", body: `decision := {"allow": null}`,
			reason: "policy decision: allow is null, not a boolean"},
		{name: "deny / deny_reasons not strings", body: `decision := {"allow": false, "deny_reasons": [1, 2]}`,
			reason: "policy decision: deny_reasons: holds a number, not only strings"},
		{name: "deny / reasons is a string", body: `decision := {"allow": true, "reasons": "fine"}`,
			reason: "policy decision: reasons: is a string, not an array of strings"},
		{name: "deny / rules hold an object", body: `decision := {"allow": true, "rules": [{"id": "x"}]}`,
			reason: "policy decision: rules: holds an object, not only strings"},
		{name: "deny / unknown key require_aproval", body: `decision := {"allow": true, "require_aproval": {"reason": "typo"}}`,
			reason: `policy decision has an unknown key "require_aproval"`},
		{name: "deny / require_approval is a string", body: `decision := {"allow": true, "require_approval": "yes"}`,
			reason: "policy decision: require_approval: is a string, not an object"},
		{name: "deny / require_approval.timeout soon", body: `decision := {"allow": true, "require_approval": {"timeout": "soon"}}`,
			reason: `policy decision: require_approval: timeout "soon" is not a positive duration`},
		{name: "deny / require_approval.timeout negative", body: `decision := {"allow": true, "require_approval": {"timeout": "-5m"}}`,
			reason: `timeout "-5m" is not a positive duration`},
		{name: "deny / require_approval.timeout a number", body: `decision := {"allow": true, "require_approval": {"timeout": 600}}`,
			reason: "timeout is a number, not a duration string"},
		{name: "deny / require_approval.reviewers a list", body: `decision := {"allow": true, "require_approval": {"reviewers": ["ops"]}}`,
			reason: "require_approval: reviewers is an array, not a string"},
		{name: "deny / require_approval unknown key", body: `decision := {"allow": true, "require_approval": {"reviewer": "ops"}}`,
			reason: `require_approval: unknown key "reviewer"`},
		{name: "deny / require_approval.quorum zero", body: `decision := {"allow": true, "require_approval": {"quorum": 0}}`,
			reason: "require_approval: quorum must be a whole number from 1 to 10"},
		{name: "deny / require_approval.quorum a fraction", body: `decision := {"allow": true, "require_approval": {"quorum": 1.5}}`,
			reason: "require_approval: quorum must be a whole number from 1 to 10"},
		{name: "deny / require_approval.quorum a string", body: `decision := {"allow": true, "require_approval": {"quorum": "2"}}`,
			reason: "require_approval: quorum must be a whole number from 1 to 10"},
		{name: "deny / require_approval.mode unknown", body: `decision := {"allow": true, "require_approval": {"mode": "later"}}`,
			reason: `require_approval: mode must be "hold" or "retry"`},
		{name: "deny / redact path with a bad root", body: `decision := {"allow": true, "redact": ["foo.bar"]}`,
			reason: `policy decision: redact: path "foo.bar" must start with params, result or error`},
		{name: "deny / redact path with a bad index", body: `decision := {"allow": true, "redact": ["params.items[x]"]}`,
			reason: `policy decision: redact: path "params.items[x]": bad index "x"`},
		{name: "deny / allow true with deny reasons", body: `decision := {"allow": true, "deny_reasons": ["but no"], "rules": ["custom/mixed"]}`,
			reason: "but no", rules: []string{"custom/mixed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := customStage(t, tt.body)
			x := toolCall(alice, "docs", "search", `{"q":"x"}`, "")
			_, err := handle(t, st, x)
			d := checkDecision(t, st, x)
			if d.Allow || d.Verdict() != gateway.DecisionDeny {
				t.Fatalf("decision %+v allows", d)
			}
			if d.Approval != nil || d.Redact != nil {
				t.Errorf("a denial carries approval %v, redact %q", d.Approval, d.Redact)
			}
			rules := tt.rules
			if rules == nil {
				rules = []string{RuleError}
			}
			if !slices.Equal(d.Rules, rules) {
				t.Errorf("Rules = %q, want %q", d.Rules, rules)
			}
			if len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], tt.reason) {
				t.Errorf("Reasons = %q, want one containing %q", d.Reasons, tt.reason)
			}
			ge := refusal(t, err)
			if ge.Code != gateway.CodeRefused || !strings.Contains(ge.Message, tt.reason) {
				t.Errorf("refusal %d %q, want CodeRefused naming %q", ge.Code, ge.Message, tt.reason)
			}
			var b bytes.Buffer
			st.WriteMetrics(&b)
			wantErrors := "sallyport_policy_errors_total 1\n"
			if tt.rules != nil {
				wantErrors = "sallyport_policy_errors_total 0\n"
			}
			if !strings.Contains(b.String(), wantErrors) {
				t.Errorf("metrics lack %q", wantErrors)
			}
		})
	}

	t.Run("deny / an evaluation past its deadline", func(t *testing.T) {
		dir := policyDir(t, map[string]string{"a.rego": regoFile(slowRule + `
decision := {"allow": true} if not slow
`)})
		st := newStage(t, Options{Source: Source{Paths: []string{dir}}, Timeout: 5 * time.Millisecond})
		x := toolCall(alice, "docs", "search", `{}`, "")
		_, err := handle(t, st, x)
		d := checkDecision(t, st, x)
		if d.Allow || !slices.Equal(d.Rules, []string{RuleError}) || !slices.Equal(d.Reasons, []string{"policy evaluation exceeded its deadline"}) {
			t.Errorf("decision allow=%v rules=%q reasons=%q", d.Allow, d.Rules, d.Reasons)
		}
		if ge := refusal(t, err); !strings.Contains(ge.Message, "exceeded its deadline") {
			t.Errorf("refusal %q", ge.Message)
		}
	})

	t.Run("deny / an evaluation whose caller gave up", func(t *testing.T) {
		dir := policyDir(t, map[string]string{"a.rego": regoFile(slowRule + `
decision := {"allow": true} if not slow
`)})
		st := newStage(t, Options{Source: Source{Paths: []string{dir}}, Timeout: time.Minute})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		x := toolCall(alice, "docs", "search", `{}`, "")
		var next recorder
		err := st.Handle(ctx, x, &next)
		if next.called != 0 {
			t.Fatal("passed on")
		}
		refusal(t, err)
		if d := x.Decision; d.Allow || !slices.Equal(d.Reasons, []string{"policy evaluation was cancelled"}) {
			t.Errorf("decision allow=%v reasons=%q", d.Allow, d.Reasons)
		}
	})

	t.Run("deny / a message whose params do not read as JSON", func(t *testing.T) {
		st := newStage(t, Options{Backends: testBackends})
		x := toolCall(alice, "docs", "search", `{}`, "")
		x.Message = &jsonrpc.Message{ID: json.RawMessage(`1`), Method: "tools/call", Params: json.RawMessage(`{"name":"docs__search","arguments":{"q":"\ud800"}}`)}
		_, err := handle(t, st, x)
		refusal(t, err)
		d := x.Decision
		if d.Allow || !slices.Equal(d.Rules, []string{RuleError}) || len(d.Reasons) != 1 || !strings.HasPrefix(d.Reasons[0], "policy input could not be built") {
			t.Errorf("decision allow=%v rules=%q reasons=%q", d.Allow, d.Rules, d.Reasons)
		}
		if d.PolicyVersion != st.Current().Version() {
			t.Errorf("PolicyVersion = %q", d.PolicyVersion)
		}
	})
}
