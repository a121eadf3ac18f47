package dlp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

const testHashKey = "0123456789abcdef-test-key"

// newTestStage builds a stage from cfg with the limits filled in as the
// configuration's defaults would.
func newTestStage(t *testing.T, cfg config.DLP) *Stage {
	t.Helper()
	if cfg.MaxDecodedBytes == 0 {
		cfg.MaxDecodedBytes = config.DefaultDLPMaxDecodedBytes
	}
	if cfg.MaxDecodeDepth == 0 {
		cfg.MaxDecodeDepth = config.DefaultDLPMaxDecodeDepth
	}
	s, err := NewStage(cfg, nil)
	if err != nil {
		t.Fatalf("NewStage: %v", err)
	}
	return s
}

// recorder is the next handler: it records what it was handed.
type recorder struct {
	calls int
	msg   *jsonrpc.Message
	args  json.RawMessage
}

func (r *recorder) Handle(_ context.Context, x *gateway.Exchange) error {
	r.calls++
	r.msg, r.args = x.Message, x.Arguments
	return nil
}

func deliverNothing(context.Context, *gateway.Exchange) error { return nil }

// toolCall is a tools/call request to backend for tool, as the proxy
// hands it to the pipeline.
func toolCall(t *testing.T, backend, tool, args string) *gateway.Exchange {
	t.Helper()
	params := `{"name":` + quote(tool) + `,"arguments":` + args + `}`
	if !json.Valid([]byte(params)) {
		t.Fatalf("invalid params %s", params)
	}
	x := gateway.NewExchange(deliverNothing)
	x.Direction, x.Kind, x.Method = gateway.ClientToBackend, gateway.KindRequest, "tools/call"
	x.Backend, x.Target = backend, tool
	x.Message = jsonrpc.NewRequest(json.RawMessage(`7`), "tools/call", json.RawMessage(params))
	x.Arguments, _ = jsonrpc.Member(x.Message.Params, "arguments")
	return x
}

// toolResult is the result of a tools/call of tool on backend.
func toolResult(t *testing.T, backend, tool, result string) *gateway.Exchange {
	t.Helper()
	if !json.Valid([]byte(result)) {
		t.Fatalf("invalid result %s", result)
	}
	x := gateway.NewExchange(deliverNothing)
	x.Direction, x.Kind, x.Method = gateway.BackendToClient, gateway.KindResult, "tools/call"
	x.Backend, x.Target = backend, tool
	x.Message = jsonrpc.NewResult(json.RawMessage(`7`), json.RawMessage(result))
	return x
}

// textResult is a tool result with one text content block per text.
func textResult(texts ...string) string {
	var b strings.Builder
	b.WriteString(`{"content":[`)
	for i, s := range texts {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"type":"text","text":` + quote(s) + `}`)
	}
	b.WriteString(`]}`)
	return b.String()
}

// finding is a gateway.Finding as the tests compare it.
type finding struct {
	det, cat, path string
	off, n         int
	action         string
	enc            string
	inKey          bool
}

func findingsOf(fs []gateway.Finding) []finding {
	out := []finding{}
	for _, f := range fs {
		out = append(out, finding{f.Detector, f.Category, f.Path, f.Offset, f.Length, f.Action, f.Encoding, f.InKey})
	}
	return out
}

// handle runs x through s with a recorder as next.
func handle(s *Stage, x *gateway.Exchange) (*recorder, error) {
	r := &recorder{}
	err := s.Handle(context.Background(), x, r)
	return r, err
}

// refused checks that err refuses the message with CodeRefused and a
// message containing every one of want, and none of never.
func refused(t *testing.T, err error, r *recorder, want []string, never ...string) {
	t.Helper()
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Code != gateway.CodeRefused {
		t.Fatalf("Handle: %v, want a gateway.Error with CodeRefused", err)
	}
	for _, w := range want {
		if !strings.Contains(ge.Message, w) {
			t.Errorf("message %q does not contain %q", ge.Message, w)
		}
	}
	for _, v := range never {
		if strings.Contains(ge.Message, v) || strings.Contains(gateway.RPCError(err).Message, v) {
			t.Errorf("message %q contains the value %q", ge.Message, v)
		}
	}
	if r.calls != 0 {
		t.Errorf("next was called %d times for a refused message", r.calls)
	}
}

func textOf(t *testing.T, m *jsonrpc.Message, i int) string {
	t.Helper()
	var res struct {
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	}
	if err := json.Unmarshal(m.Result, &res); err != nil || i >= len(res.Content) {
		t.Fatalf("result %s: %v", m.Result, err)
	}
	return res.Content[i].Text
}

func TestStageDefaults(t *testing.T) {
	s := newTestStage(t, config.DLP{})

	t.Run("a secret in a request is blocked", func(t *testing.T) {
		x := toolCall(t, "github", "create_issue", `{"title":"hi","token":`+quote(ghp)+`}`)
		r, err := handle(s, x)
		refused(t, err, r, []string{"blocked by DLP", "github-pat in params.arguments.token"}, ghp)
		want := []finding{{"github-pat", "secret", "params.arguments.token", 0, 40, "block", "", false}}
		if got := findingsOf(x.Findings); !reflect.DeepEqual(got, want) {
			t.Errorf("findings %+v, want %+v", got, want)
		}
	})

	t.Run("a blocked request keeps no secret for the audit row", func(t *testing.T) {
		x := toolCall(t, "github", "create_issue", `{"title":"hi","token":`+quote(ghp)+`,"body":`+quote("b64 "+b64url("key: "+awsKey+" ~~~"))+`}`)
		r, err := handle(s, x)
		refused(t, err, r, []string{"github-pat in params.arguments.token"}, ghp)
		for _, b := range [][]byte{x.Arguments, x.Message.Params} {
			if bytes.Contains(b, []byte(ghp)) || bytes.Contains(b, []byte(b64url("key: "+awsKey+" ~~~"))) {
				t.Errorf("a blocked secret is still in %s", b)
			}
		}
		if !bytes.Contains(x.Arguments, []byte(`"token":"[REDACTED:github-pat]"`)) || !bytes.Contains(x.Arguments, []byte(`"title":"hi"`)) {
			t.Errorf("arguments %s, want the token redacted and the rest kept", x.Arguments)
		}
	})

	t.Run("a secret in a resource URI leaves the target too", func(t *testing.T) {
		uri := "postgres://app:Xk9mP2vL7qR4@db.internal/orders"
		for _, blocked := range []bool{true, false} {
			st := s
			if !blocked {
				st = newTestStage(t, config.DLP{Rules: []config.DLPRule{{Detectors: []string{"secret"}, Action: "redact"}}})
			}
			x := gateway.NewExchange(deliverNothing)
			x.Direction, x.Kind, x.Method = gateway.ClientToBackend, gateway.KindRequest, "resources/read"
			x.Backend, x.Target = "db", uri
			x.Message = jsonrpc.NewRequest(json.RawMessage(`7`), "resources/read", json.RawMessage(`{"uri":`+quote(uri)+`}`))
			r, err := handle(st, x)
			if blocked {
				refused(t, err, r, []string{"database-url-password in params.uri"}, "Xk9mP2vL7qR4")
			} else if err != nil || r.calls != 1 {
				t.Fatalf("Handle: %v, next called %d times", err, r.calls)
			}
			if want := "postgres://app:[REDACTED:database-url-password]@db.internal/orders"; x.Target != want {
				t.Errorf("blocked %v: target %q, want %q", blocked, x.Target, want)
			}
		}
	})

	t.Run("a blocked secret in a member name leaves no arguments", func(t *testing.T) {
		x := toolCall(t, "github", "create_issue", `{"title":"hi",`+quote(ghp)+`:1}`)
		r, err := handle(s, x)
		refused(t, err, r, []string{"github-pat in params.arguments (a member name)"}, ghp)
		if x.Arguments != nil {
			t.Errorf("arguments %s, want none", x.Arguments)
		}
	})

	t.Run("an encoded secret in a request is blocked and says so", func(t *testing.T) {
		x := toolCall(t, "github", "create_issue", `{"body":"`+b64url("key: "+awsKey+" ~~~")+`"}`)
		r, err := handle(s, x)
		refused(t, err, r, []string{"aws-access-token in params.arguments.body (base64-encoded)"}, awsKey)
	})

	t.Run("a secret in a result is redacted", func(t *testing.T) {
		x := toolResult(t, "github", "get_env", textResult("ok", "GITHUB_TOKEN="+ghp+"\nHOME=/root"))
		orig := x.Message
		r, err := handle(s, x)
		if err != nil || r.calls != 1 {
			t.Fatalf("Handle: %v, next called %d times", err, r.calls)
		}
		if got := textOf(t, r.msg, 1); got != "GITHUB_TOKEN=[REDACTED:github-pat]\nHOME=/root" {
			t.Errorf("text %q", got)
		}
		if got := textOf(t, r.msg, 0); got != "ok" {
			t.Errorf("the other block changed: %q", got)
		}
		if r.msg != x.Message || bytes.Contains(r.msg.Result, []byte(ghp)) {
			t.Errorf("next did not get the redacted message: %s", r.msg.Result)
		}
		if !bytes.Contains(orig.Result, []byte(ghp)) {
			t.Error("the original message was modified")
		}
		want := []finding{{"github-pat", "secret", "result.content[1].text", 13, 40, "redact", "", false}}
		if got := findingsOf(x.Findings); !reflect.DeepEqual(got, want) {
			t.Errorf("findings %+v, want %+v", got, want)
		}
	})

	t.Run("a card in a result is masked", func(t *testing.T) {
		x := toolResult(t, "billing", "get_customer", textResult("card 4111 1111 1111 1111 exp 12/29"))
		r, err := handle(s, x)
		if err != nil || r.calls != 1 {
			t.Fatalf("Handle: %v", err)
		}
		if got := textOf(t, r.msg, 0); got != "card **** **** **** 1111 exp 12/29" {
			t.Errorf("text %q", got)
		}
		want := []finding{{"CREDIT_CARD", "pii", "result.content[0].text", 5, 19, "mask", "", false}}
		if got := findingsOf(x.Findings); !reflect.DeepEqual(got, want) {
			t.Errorf("findings %+v, want %+v", got, want)
		}
	})

	t.Run("a card number as a JSON number is masked to a string", func(t *testing.T) {
		x := toolResult(t, "billing", "get_customer", `{"structuredContent":{"card":4111111111111111,"n":1}}`)
		r, err := handle(s, x)
		if err != nil || r.calls != 1 {
			t.Fatalf("Handle: %v", err)
		}
		if want := `{"structuredContent":{"card":"************1111","n":1}}`; !jsonEqual(t, r.msg.Result, want) {
			t.Errorf("result %s, want %s", r.msg.Result, want)
		}
	})

	t.Run("a card in a request is flagged", func(t *testing.T) {
		x := toolCall(t, "billing", "charge", `{"card":"4111 1111 1111 1111"}`)
		orig := x.Message
		r, err := handle(s, x)
		if err != nil || r.calls != 1 || r.msg != orig {
			t.Fatalf("Handle: %v; the message was replaced: %v", err, r.msg != orig)
		}
		want := []finding{{"CREDIT_CARD", "pii", "params.arguments.card", 0, 19, "flag", "", false}}
		if got := findingsOf(x.Findings); !reflect.DeepEqual(got, want) {
			t.Errorf("findings %+v, want %+v", got, want)
		}
	})

	t.Run("an email is flagged and unchanged", func(t *testing.T) {
		x := toolResult(t, "crm", "lookup", textResult("contact: alice@example.com"))
		orig := x.Message
		r, err := handle(s, x)
		if err != nil || r.calls != 1 {
			t.Fatalf("Handle: %v", err)
		}
		if r.msg != orig || textOf(t, r.msg, 0) != "contact: alice@example.com" {
			t.Errorf("the message changed: %s", r.msg.Result)
		}
		f := x.Findings
		if len(f) != 1 || f[0].Confidence <= 0 || f[0].Confidence > 1 {
			t.Fatalf("findings %+v", f)
		}
		want := []finding{{"EMAIL_ADDRESS", "pii", "result.content[0].text", 9, 17, "flag", "", false}}
		if got := findingsOf(f); !reflect.DeepEqual(got, want) {
			t.Errorf("findings %+v, want %+v", got, want)
		}
	})

	t.Run("nothing found", func(t *testing.T) {
		x := toolResult(t, "crm", "lookup", textResult("nothing to see"))
		orig := x.Message
		r, err := handle(s, x)
		if err != nil || r.calls != 1 || r.msg != orig || len(x.Findings) != 0 {
			t.Errorf("Handle: %v, findings %+v", err, x.Findings)
		}
	})

	t.Run("an exchange without a message is passed on", func(t *testing.T) {
		x := gateway.NewExchange(deliverNothing)
		r, err := handle(s, x)
		if err != nil || r.calls != 1 {
			t.Errorf("Handle: %v, calls %d", err, r.calls)
		}
	})

	t.Run("a notification is scanned", func(t *testing.T) {
		x := gateway.NewExchange(deliverNothing)
		x.Direction, x.Kind, x.Method = gateway.ClientToBackend, gateway.KindNotification, "notifications/message"
		x.Message = jsonrpc.NewNotification("notifications/message", json.RawMessage(`{"data":`+quote(ghp)+`}`))
		r, err := handle(s, x)
		refused(t, err, r, []string{"github-pat in params.data"}, ghp)
	})

	t.Run("a secret in an error message from a backend is redacted", func(t *testing.T) {
		x := gateway.NewExchange(deliverNothing)
		x.Direction, x.Kind, x.Method, x.Backend = gateway.BackendToClient, gateway.KindResult, "tools/call", "github"
		x.Message = jsonrpc.NewError(json.RawMessage(`7`), -32000, "bad credentials "+ghp, json.RawMessage(`{"x":"key `+awsKey+`","code":3}`))
		r, err := handle(s, x)
		if err != nil || r.calls != 1 {
			t.Fatalf("Handle: %v", err)
		}
		e := r.msg.Error
		if e == nil || e.Message != "bad credentials [REDACTED:github-pat]" || e.Code != -32000 {
			t.Fatalf("error %+v", e)
		}
		if want := `{"x":"key [REDACTED:aws-access-token]","code":3}`; !jsonEqual(t, e.Data, want) {
			t.Errorf("data %s, want %s", e.Data, want)
		}
		want := []finding{
			{"github-pat", "secret", "error.message", 16, 40, "redact", "", false},
			{"aws-access-token", "secret", "error.data.x", 4, 20, "redact", "", false},
		}
		if got := findingsOf(x.Findings); !reflect.DeepEqual(got, want) {
			t.Errorf("findings %+v, want %+v", got, want)
		}
	})

	t.Run("a secret in an error message to a backend is blocked", func(t *testing.T) {
		x := gateway.NewExchange(deliverNothing)
		x.Direction, x.Kind = gateway.ClientToBackend, gateway.KindResult
		x.Message = jsonrpc.NewError(json.RawMessage(`7`), -1, "no: "+ghp, nil)
		r, err := handle(s, x)
		refused(t, err, r, []string{"github-pat in error.message"}, ghp)
	})
}

func jsonEqual(t *testing.T, got json.RawMessage, want string) bool {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatalf("%s: %v", want, err)
	}
	return reflect.DeepEqual(a, b)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestStageRules(t *testing.T) {
	type exch func(t *testing.T) *gateway.Exchange
	req := func(backend, tool, args string) exch {
		return func(t *testing.T) *gateway.Exchange { return toolCall(t, backend, tool, args) }
	}
	res := func(backend, tool string, texts ...string) exch {
		return func(t *testing.T) *gateway.Exchange { return toolResult(t, backend, tool, textResult(texts...)) }
	}
	const alice, bob = "alice@example.com", "bob@example.org"
	tests := []struct {
		name    string
		rules   []config.DLPRule
		x       exch
		actions []string // per finding, in order; nil: none
		blocked bool
	}{
		{name: "first match wins", x: res("crm", "lookup", alice),
			rules:   []config.DLPRule{{Detectors: []string{"EMAIL_ADDRESS"}, Action: "redact"}, {Detectors: []string{"EMAIL_ADDRESS"}, Action: "block"}},
			actions: []string{"redact"}},
		{name: "a rule for another detector does not apply", x: res("crm", "lookup", alice),
			rules:   []config.DLPRule{{Detectors: []string{"PHONE_NUMBER"}, Action: "block"}},
			actions: []string{"flag"}},
		{name: "an empty rule matches everything", x: res("crm", "lookup", alice+" "+ghp),
			rules:   []config.DLPRule{{Action: "flag"}},
			actions: []string{"flag", "flag"}},
		{name: "category pii", x: res("crm", "lookup", alice+" "+ghp),
			rules:   []config.DLPRule{{Detectors: []string{"pii"}, Action: "redact"}},
			actions: []string{"redact", "redact"}},
		{name: "category secret", x: req("gh", "create", `{"a":`+quote(alice+" "+ghp)+`}`),
			rules:   []config.DLPRule{{Detectors: []string{"secret"}, Action: "flag"}},
			actions: []string{"flag", "flag"}},
		{name: "category and id together", x: res("crm", "lookup", alice+" 4111111111111111 "+ghp),
			rules:   []config.DLPRule{{Detectors: []string{"CREDIT_CARD", "secret"}, Action: "hash"}},
			actions: []string{"flag", "hash", "hash"}},
		{name: "direction / a request", x: req("crm", "send", `{"to":"`+alice+`"}`),
			rules:   []config.DLPRule{{Direction: "client_to_backend", Action: "block"}},
			actions: []string{"block"}, blocked: true},
		{name: "direction / not a result", x: res("crm", "send", alice),
			rules:   []config.DLPRule{{Direction: "client_to_backend", Action: "block"}},
			actions: []string{"flag"}},
		{name: "direction / a result", x: res("crm", "send", alice),
			rules:   []config.DLPRule{{Direction: "backend_to_client", Action: "mask"}},
			actions: []string{"mask"}},
		{name: "backends / a pattern matches", x: res("github-enterprise", "t", alice),
			rules:   []config.DLPRule{{Backends: []string{"jira", "github*"}, Action: "redact"}},
			actions: []string{"redact"}},
		{name: "backends / no pattern matches", x: res("gitlab", "t", alice),
			rules:   []config.DLPRule{{Backends: []string{"jira", "github*"}, Action: "redact"}},
			actions: []string{"flag"}},
		{name: "tools / a pattern matches", x: req("mail", "send_mail", `{"to":"`+alice+`"}`),
			rules:   []config.DLPRule{{Tools: []string{"send_*"}, Action: "block"}},
			actions: []string{"block"}, blocked: true},
		{name: "tools / no pattern matches", x: req("mail", "read_mail", `{"to":"`+alice+`"}`),
			rules:   []config.DLPRule{{Tools: []string{"send_*"}, Action: "block"}},
			actions: []string{"flag"}},
		{name: "tools / a resource URI", x: func(t *testing.T) *gateway.Exchange {
			x := toolResult(t, "fs", "file:///etc/passwd", `{"contents":[{"uri":"file:///etc/passwd","text":"root: `+alice+`"}]}`)
			x.Method = "resources/read"
			return x
		}, rules: []config.DLPRule{{Tools: []string{"file:///etc/*"}, Action: "redact"}}, actions: []string{"redact"}},
		{name: "fields / exact", x: req("mail", "send", `{"to":"`+alice+`","cc":"`+bob+`"}`),
			rules:   []config.DLPRule{{Fields: []string{"params.arguments.cc"}, Action: "block"}},
			actions: []string{"flag", "block"}, blocked: true},
		{name: "fields / a member wildcard", x: req("mail", "send", `{"to":"`+alice+`","nested":{"cc":"`+bob+`"}}`),
			rules:   []config.DLPRule{{Fields: []string{"params.arguments.*"}, Action: "redact"}},
			actions: []string{"redact", "redact"}},
		{name: "fields / an element wildcard", x: res("crm", "lookup", "x", alice, bob),
			rules:   []config.DLPRule{{Fields: []string{"result.content[*].text"}, Action: "redact"}},
			actions: []string{"redact", "redact"}},
		{name: "fields / an index", x: res("crm", "lookup", "x", alice, bob),
			rules:   []config.DLPRule{{Fields: []string{"result.content[2]"}, Action: "redact"}},
			actions: []string{"flag", "redact"}},
		{name: "fields / a prefix covers what is inside", x: res("crm", "lookup", alice),
			rules:   []config.DLPRule{{Fields: []string{"result.content"}, Action: "mask"}},
			actions: []string{"mask"}},
		{name: "fields / a mismatch", x: req("mail", "send", `{"to":"`+alice+`"}`),
			rules:   []config.DLPRule{{Fields: []string{"params.arguments.cc", "result.content[*].text", "params.arguments.to.x"}, Action: "block"}},
			actions: []string{"flag"}},
		{name: "fields / params do not cover the result", x: res("crm", "lookup", alice),
			rules:   []config.DLPRule{{Fields: []string{"params.content"}, Action: "block"}},
			actions: []string{"flag"}},
		{name: "values / exact", x: res("crm", "lookup", alice+" "+bob),
			rules:   []config.DLPRule{{Values: []string{alice}, Action: "allow"}, {Action: "redact"}},
			actions: []string{"redact"}},
		{name: "values / sha256", x: res("crm", "lookup", alice+" "+bob),
			rules:   []config.DLPRule{{Values: []string{"sha256:" + sha256Hex(bob)}, Action: "redact"}},
			actions: []string{"flag", "redact"}},
		{name: "values / sha256 in upper case", x: res("crm", "lookup", alice+" "+bob),
			rules:   []config.DLPRule{{Values: []string{"sha256:" + strings.ToUpper(sha256Hex(alice))}, Action: "redact"}},
			actions: []string{"redact", "flag"}},
		{name: "values / a short sha256: prefix is a plain value", x: res("crm", "lookup", alice),
			rules:   []config.DLPRule{{Values: []string{"sha256:" + sha256Hex(alice)[:63]}, Action: "redact"}},
			actions: []string{"flag"}},
		{name: "values / a secret by digest", x: req("gh", "create", `{"t":"`+ghp+`"}`),
			rules:   []config.DLPRule{{Values: []string{"sha256:" + sha256Hex(ghp)}, Action: "allow"}},
			actions: nil},
		{name: "patterns / full match", x: res("crm", "lookup", alice+" "+bob),
			rules:   []config.DLPRule{{Patterns: []string{`[a-z]+@example\.com`}, Action: "redact"}},
			actions: []string{"redact", "flag"}},
		{name: "patterns / a partial match is not one", x: res("crm", "lookup", alice),
			rules:   []config.DLPRule{{Patterns: []string{`example`, `alice`}, Action: "redact"}},
			actions: []string{"flag"}},
		{name: "patterns / an alternation is anchored as a whole", x: res("crm", "lookup", alice),
			rules:   []config.DLPRule{{Patterns: []string{`x|alice@example\.com`}, Action: "redact"}},
			actions: []string{"redact"}},
		{name: "values or patterns", x: res("crm", "lookup", alice+" "+bob),
			rules:   []config.DLPRule{{Values: []string{alice}, Patterns: []string{`bob@.*`}, Action: "redact"}},
			actions: []string{"redact", "redact"}},
		{name: "all matchers of a rule must match", x: res("crm", "lookup", alice),
			rules:   []config.DLPRule{{Detectors: []string{"EMAIL_ADDRESS"}, Direction: "backend_to_client", Backends: []string{"crm"}, Tools: []string{"other"}, Action: "redact"}},
			actions: []string{"flag"}},
		{name: "allow drops the finding", x: req("gh", "create", `{"t":"`+ghp+`","to":"`+alice+`"}`),
			rules:   []config.DLPRule{{Detectors: []string{"github-pat"}, Action: "allow"}},
			actions: []string{"flag"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStage(t, config.DLP{HashKey: testHashKey, Rules: tt.rules})
			x := tt.x(t)
			r, err := handle(s, x)
			if tt.blocked {
				refused(t, err, r, []string{"blocked by DLP"})
			} else if err != nil || r.calls != 1 {
				t.Fatalf("Handle: %v, next called %d times", err, r.calls)
			}
			var got []string
			for _, f := range x.Findings {
				got = append(got, f.Action)
			}
			if !reflect.DeepEqual(got, tt.actions) {
				t.Errorf("actions %v, want %v (findings %+v)", got, tt.actions, x.Findings)
			}
		})
	}
}

func TestStageAllowCounts(t *testing.T) {
	s := newTestStage(t, config.DLP{Rules: []config.DLPRule{{Values: []string{"alice@example.com"}, Action: "allow"}}})
	x := toolResult(t, "crm", "lookup", textResult("alice@example.com", "alice@example.com bob@example.org"))
	r, err := handle(s, x)
	if err != nil || r.calls != 1 {
		t.Fatalf("Handle: %v", err)
	}
	want := []finding{{"EMAIL_ADDRESS", "pii", "result.content[1].text", 18, 15, "flag", "", false}}
	if got := findingsOf(x.Findings); !reflect.DeepEqual(got, want) {
		t.Errorf("findings %+v, want %+v", got, want)
	}
	st, _ := s.Status()
	if got := st.(Status).Allowlisted; got != 2 {
		t.Errorf("Allowlisted %d, want 2", got)
	}
	// Only allowed findings: x.Findings is empty, the message unchanged.
	x = toolResult(t, "crm", "lookup", textResult("alice@example.com"))
	orig := x.Message
	if r, err := handle(s, x); err != nil || r.msg != orig || len(x.Findings) != 0 {
		t.Errorf("Handle: %v, findings %+v", err, x.Findings)
	}
}

func TestStageRewrites(t *testing.T) {
	hashRule := func(dets ...string) config.DLPRule { return config.DLPRule{Detectors: dets, Action: "hash"} }
	key := []byte(testHashKey)
	tokenRE := regexp.MustCompile(`^\[HASH:EMAIL_ADDRESS:[0-9a-f]{16}\]$`)

	t.Run("hash / same value, same token; another value, another token", func(t *testing.T) {
		s := newTestStage(t, config.DLP{HashKey: testHashKey, Rules: []config.DLPRule{hashRule("EMAIL_ADDRESS")}})
		x := toolResult(t, "crm", "lookup", textResult("alice@example.com", "to alice@example.com", "bob@example.org"))
		r, err := handle(s, x)
		if err != nil || r.calls != 1 {
			t.Fatalf("Handle: %v", err)
		}
		a0, a1, b := textOf(t, r.msg, 0), strings.TrimPrefix(textOf(t, r.msg, 1), "to "), textOf(t, r.msg, 2)
		if !tokenRE.MatchString(a0) || !tokenRE.MatchString(b) {
			t.Fatalf("tokens %q %q", a0, b)
		}
		if a0 != a1 || a0 == b {
			t.Errorf("alice %q and %q, bob %q", a0, a1, b)
		}
		if a0 != HashToken(key, "EMAIL_ADDRESS", "alice@example.com") {
			t.Errorf("token %q is not HashToken's", a0)
		}
		// Another stage with the same key gives the same token; another
		// key another one.
		other := newTestStage(t, config.DLP{HashKey: testHashKey + "2", Rules: []config.DLPRule{hashRule("EMAIL_ADDRESS")}})
		x2 := toolResult(t, "crm", "lookup", textResult("alice@example.com"))
		r2, err := handle(other, x2)
		if err != nil || textOf(t, r2.msg, 0) == a0 {
			t.Errorf("another key: %v, %q", err, textOf(t, r2.msg, 0))
		}
	})

	t.Run("HashToken", func(t *testing.T) {
		tok := HashToken(key, "jwt", "v")
		if !regexp.MustCompile(`^\[HASH:jwt:[0-9a-f]{16}\]$`).MatchString(tok) {
			t.Errorf("HashToken = %q", tok)
		}
		if tok != HashToken(key, "jwt", "v") || tok == HashToken(key, "jwt", "w") || tok == HashToken([]byte("another key of 16+"), "jwt", "v") {
			t.Error("HashToken is not a keyed function of the value")
		}
		if a, b := HashToken(key, "jwt", "v"), HashToken(key, "EMAIL_ADDRESS", "v"); a[len(a)-17:] != b[len(b)-17:] {
			t.Errorf("the digest depends on the detector: %q %q", a, b)
		}
	})

	t.Run("hash key from a file, trimmed", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "key")
		if err := os.WriteFile(f, []byte("  "+testHashKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		s := newTestStage(t, config.DLP{HashKeyFile: f, Rules: []config.DLPRule{hashRule("EMAIL_ADDRESS")}})
		x := toolResult(t, "crm", "lookup", textResult("alice@example.com"))
		r, err := handle(s, x)
		if err != nil || textOf(t, r.msg, 0) != HashToken(key, "EMAIL_ADDRESS", "alice@example.com") {
			t.Errorf("Handle: %v, %q", err, textOf(t, r.msg, 0))
		}
	})

	tests := []struct {
		name  string
		rules []config.DLPRule
		texts []string
		want  []string
	}{
		{name: "mask / a short value", rules: []config.DLPRule{{Detectors: []string{"IP_ADDRESS"}, Action: "mask"}},
			texts: []string{"bind ::1 and 10.0.0.1"}, want: []string{"bind ::* and **.*.0.1"}},
		{name: "mask / an email keeps its tld", rules: []config.DLPRule{{Action: "mask"}},
			texts: []string{"alice@example.com"}, want: []string{"*****@*******.com"}},
		{name: "several findings in one string", texts: []string{"mail alice@example.com card 4111 1111 1111 1111 key " + ghp + "."},
			want: []string{"mail alice@example.com card **** **** **** 1111 key [REDACTED:github-pat]."}},
		{name: "several findings of one detector in one string", rules: []config.DLPRule{{Action: "redact"}},
			texts: []string{"a@example.com,b@example.com c@example.com"},
			want:  []string{"[REDACTED:EMAIL_ADDRESS],[REDACTED:EMAIL_ADDRESS] [REDACTED:EMAIL_ADDRESS]"}},
		{name: "findings in several strings", rules: []config.DLPRule{{Detectors: []string{"EMAIL_ADDRESS"}, Action: "redact"}},
			texts: []string{"alice@example.com", "nothing", "key " + ghp, "bob@example.org!"},
			want:  []string{"[REDACTED:EMAIL_ADDRESS]", "nothing", "key [REDACTED:github-pat]", "[REDACTED:EMAIL_ADDRESS]!"}},
		{name: "overlapping spans merge, the stronger action wins",
			rules: []config.DLPRule{{Detectors: []string{"private-key"}, Action: "mask"}, {Detectors: []string{"aws-access-token"}, Action: "redact"}},
			texts: []string{"key: -----BEGIN RSA PRIVATE KEY-----\n" + awsKey + "\n" + pemBody + "\n-----END RSA PRIVATE KEY-----\nend"},
			want:  []string{"key: [REDACTED:aws-access-token]\nend"}},
		{name: "overlapping spans with one action",
			texts: []string{"key: -----BEGIN RSA PRIVATE KEY-----\n" + awsKey + "\n" + pemBody + "\n-----END RSA PRIVATE KEY-----\nend"},
			want:  []string{"key: [REDACTED:private-key]\nend"}},
		{name: "an encoded secret is redacted whole", texts: []string{"blob " + b64url("key: "+awsKey+" ~~~") + " end"},
			want: []string{"blob [REDACTED:aws-access-token] end"}},
		{name: "flag and allow change nothing", rules: []config.DLPRule{{Detectors: []string{"secret"}, Action: "allow"}, {Action: "flag"}},
			texts: []string{ghp + " alice@example.com"}, want: []string{ghp + " alice@example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStage(t, config.DLP{HashKey: testHashKey, Rules: tt.rules})
			x := toolResult(t, "b", "t", textResult(tt.texts...))
			r, err := handle(s, x)
			if err != nil || r.calls != 1 {
				t.Fatalf("Handle: %v", err)
			}
			for i, w := range tt.want {
				if got := textOf(t, r.msg, i); got != w {
					t.Errorf("text %d = %q, want %q", i, got, w)
				}
			}
		})
	}

	t.Run("arguments follow the redacted params", func(t *testing.T) {
		s := newTestStage(t, config.DLP{Rules: []config.DLPRule{{Detectors: []string{"EMAIL_ADDRESS"}, Action: "redact"}}})
		x := toolCall(t, "mail", "send", `{"to":"alice@example.com","n":1}`)
		origArgs := x.Arguments
		r, err := handle(s, x)
		if err != nil || r.calls != 1 {
			t.Fatalf("Handle: %v", err)
		}
		if want := `{"to":"[REDACTED:EMAIL_ADDRESS]","n":1}`; !jsonEqual(t, x.Arguments, want) || !jsonEqual(t, r.args, want) {
			t.Errorf("arguments %s, want %s", x.Arguments, want)
		}
		inParams, _ := jsonrpc.Member(x.Message.Params, "arguments")
		if !bytes.Equal(inParams, x.Arguments) {
			t.Errorf("arguments %s differ from the params' %s", x.Arguments, inParams)
		}
		if name, _ := jsonrpc.Member(x.Message.Params, "name"); string(name) != `"send"` {
			t.Errorf("name %s", name)
		}
		if !bytes.Contains(origArgs, []byte("alice@example.com")) {
			t.Error("the original arguments were modified")
		}
		if x.Message.Method != "tools/call" || string(x.Message.ID) != "7" {
			t.Errorf("the envelope changed: %+v", x.Message)
		}
	})

	t.Run("a finding in a member name is blocked, not redacted", func(t *testing.T) {
		s := newTestStage(t, config.DLP{Rules: []config.DLPRule{{Action: "redact"}}})
		x := toolResult(t, "crm", "lookup", `{"structuredContent":{"by alice@example.com":"x"}}`)
		r, err := handle(s, x)
		refused(t, err, r, []string{`EMAIL_ADDRESS in result.structuredContent (a member name)`})
		want := []finding{{"EMAIL_ADDRESS", "pii", `result.structuredContent`, 3, 17, "block", "", true}}
		if got := findingsOf(x.Findings); !reflect.DeepEqual(got, want) {
			t.Errorf("findings %+v, want %+v", got, want)
		}
	})

	t.Run("a finding in a member name can be flagged", func(t *testing.T) {
		s := newTestStage(t, config.DLP{})
		x := toolResult(t, "crm", "lookup", `{"structuredContent":{"by alice@example.com":"x"}}`)
		if r, err := handle(s, x); err != nil || r.calls != 1 || len(x.Findings) != 1 || x.Findings[0].Action != "flag" {
			t.Errorf("Handle: %v, findings %+v", err, x.Findings)
		}
	})

	t.Run("a secret in a member name of a result is blocked", func(t *testing.T) {
		s := newTestStage(t, config.DLP{})
		x := toolResult(t, "crm", "lookup", `{"structuredContent":{"`+ghp+`":"x"}}`)
		r, err := handle(s, x)
		refused(t, err, r, []string{"github-pat in result.structuredContent (a member name)"})
	})
}

func TestMask(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"a", "*"},
		{"abcd", "****"},
		{"ab-1", "**-*"},
		{"abcde", "*bcde"},
		{"4111111111111111", "************1111"},
		{"4111 1111 1111 1111", "**** **** **** 1111"},
		{"alice@example.com", "*****@*******.com"},
		{"DE89 3704 0044 0532 0130 00", "**** **** **** **** ***0 00"},
		{"éé12345", "***2345"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Mask(tt.in); got != tt.want {
				t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestStageBlockMessage(t *testing.T) {
	s := newTestStage(t, config.DLP{})
	var args []string
	var secrets []string
	for i := range 7 {
		tok := checksummed("ghp_", tokenBody[:29]+string(rune('a'+i)))
		secrets = append(secrets, tok)
		args = append(args, quote(string(rune('a'+i)))+":"+quote(tok))
	}
	x := toolCall(t, "gh", "create", "{"+strings.Join(args, ",")+`,"z":"`+ghp+" "+ghp+`"}`)
	r, err := handle(s, x)
	refused(t, err, r, []string{"github-pat in params.arguments.a, github-pat in params.arguments.b", "and 3 more"}, secrets...)
	if strings.Contains(err.Error(), ghp) {
		t.Error("the error contains the value")
	}
	if len(x.Findings) != 9 {
		t.Errorf("%d findings, want 9", len(x.Findings))
	}
	// One finding per value is named once.
	x = toolCall(t, "gh", "create", `{"z":"`+ghp+" "+ghp+`"}`)
	_, err = handle(s, x)
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Message != "blocked by DLP: the message contains github-pat in params.arguments.z" {
		t.Errorf("message %v", err)
	}
}

func TestStageScanFailures(t *testing.T) {
	t.Run("malformed params are refused", func(t *testing.T) {
		s := newTestStage(t, config.DLP{})
		x := gateway.NewExchange(deliverNothing)
		x.Direction, x.Kind, x.Method = gateway.ClientToBackend, gateway.KindRequest, "tools/call"
		x.Message = jsonrpc.NewRequest(json.RawMessage(`1`), "tools/call", json.RawMessage(`{"arguments":{"a":`))
		r, err := handle(s, x)
		refused(t, err, r, []string{"DLP scan failed"})
		var ge *gateway.Error
		errors.As(err, &ge)
		if ge.Err == nil || !strings.Contains(ge.Err.Error(), "malformed JSON") {
			t.Errorf("cause %v", ge.Err)
		}
		if gateway.RPCError(err).Message != "DLP scan failed: the message was not forwarded" {
			t.Errorf("client message %q", gateway.RPCError(err).Message)
		}
		if st, _ := s.Status(); st.(Status).Failures != 1 {
			t.Errorf("status %+v", st)
		}
	})

	t.Run("nesting too deep is refused as a limit", func(t *testing.T) {
		s := newTestStage(t, config.DLP{})
		x := toolResult(t, "b", "t", `{"a":`+strings.Repeat("[", 300)+strings.Repeat("]", 300)+`}`)
		r, err := handle(s, x)
		refused(t, err, r, []string{"DLP scan limit exceeded"})
		if !errors.Is(err, ErrLimit) {
			t.Errorf("%v does not wrap ErrLimit", err)
		}
	})

	t.Run("the decoding budget is refused as a limit", func(t *testing.T) {
		s := newTestStage(t, config.DLP{MaxDecodedBytes: 16})
		x := toolCall(t, "b", "t", `{"blob":"`+b64url("nothing to see in this text at all")+`"}`)
		r, err := handle(s, x)
		refused(t, err, r, []string{"DLP scan limit exceeded"})
		if !errors.Is(err, ErrLimit) {
			t.Errorf("%v does not wrap ErrLimit", err)
		}
	})

	t.Run("decoding off", func(t *testing.T) {
		s := newTestStage(t, config.DLP{MaxDecodeDepth: -1, MaxDecodedBytes: 16})
		x := toolCall(t, "b", "t", `{"blob":"`+b64url("key: "+awsKey+" ~~~")+`"}`)
		if r, err := handle(s, x); err != nil || r.calls != 1 || len(x.Findings) != 0 {
			t.Errorf("Handle: %v, findings %+v", err, x.Findings)
		}
	})

	t.Run("a redaction that finds no value is refused", func(t *testing.T) {
		// A result that is a bare string: its path, "result", is not one
		// redaction can name, so the stage fails closed.
		s := newTestStage(t, config.DLP{})
		x := toolResult(t, "b", "t", quote("key "+ghp))
		r, err := handle(s, x)
		refused(t, err, r, []string{"DLP redaction failed"}, ghp)
	})
}

func TestNewStageErrors(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("  short-key \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hash := []config.DLPRule{{Action: "hash"}}
	tests := []struct {
		name string
		cfg  config.DLP
		err  string
	}{
		{name: "unknown detector", cfg: config.DLP{Detectors: []string{"EMAIL_ADDRESS", "nope"}}, err: `dlp.detectors: unknown DLP detector "nope"`},
		{name: "unknown detector in a rule", cfg: config.DLP{Rules: []config.DLPRule{{Action: "flag"}, {Detectors: []string{"nope"}, Action: "flag"}}},
			err: `dlp.rules[1]: unknown detector "nope"`},
		{name: "bad field path", cfg: config.DLP{Rules: []config.DLPRule{{Fields: []string{"arguments.to"}, Action: "flag"}}},
			err: "dlp.rules[0]: fields: path \"arguments.to\" must start with params, result or error"},
		{name: "whole-root field path", cfg: config.DLP{Rules: []config.DLPRule{{Fields: []string{"params"}, Action: "flag"}}},
			err: "dlp.rules[0]: fields:"},
		{name: "bad direction", cfg: config.DLP{Rules: []config.DLPRule{{Direction: "both", Action: "flag"}}}, err: `direction "both"`},
		{name: "bad action", cfg: config.DLP{Rules: []config.DLPRule{{Action: "drop"}}}, err: `action "drop"`},
		{name: "no action", cfg: config.DLP{Rules: []config.DLPRule{{}}}, err: `action ""`},
		{name: "bad pattern", cfg: config.DLP{Rules: []config.DLPRule{{Patterns: []string{"("}, Action: "flag"}}}, err: "dlp.rules[0]: patterns:"},
		{name: "bad backend pattern", cfg: config.DLP{Rules: []config.DLPRule{{Backends: []string{"["}, Action: "flag"}}}, err: `pattern "["`},
		{name: "bad tool pattern", cfg: config.DLP{Rules: []config.DLPRule{{Tools: []string{"a[b"}, Action: "flag"}}}, err: `pattern "a[b"`},
		{name: "hash without a key", cfg: config.DLP{Rules: hash}, err: "dlp.rules[0]: action hash needs dlp.hash_key or dlp.hash_key_file"},
		{name: "unreadable hash key file", cfg: config.DLP{HashKeyFile: filepath.Join(dir, "missing"), Rules: hash}, err: "dlp.hash_key_file:"},
		{name: "short hash key file", cfg: config.DLP{HashKeyFile: short, Rules: hash}, err: "the key must be at least 16 characters"},
		{name: "short hash key file without a hash rule", cfg: config.DLP{HashKeyFile: short}, err: "the key must be at least 16 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.MaxDecodeDepth, tt.cfg.MaxDecodedBytes = config.DefaultDLPMaxDecodeDepth, config.DefaultDLPMaxDecodedBytes
			s, err := NewStage(tt.cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("NewStage = %v, %v; want an error with %q", s, err, tt.err)
			}
		})
	}
}

func TestStageStatusAndMetrics(t *testing.T) {
	s := newTestStage(t, config.DLP{Rules: []config.DLPRule{
		{Values: []string{"allowed@example.com"}, Action: "allow"},
		{Detectors: []string{"PHONE_NUMBER"}, Action: "redact"},
	}})
	if s.Name() != "dlp" {
		t.Errorf("Name %q", s.Name())
	}
	st, ok := s.Status()
	if want := (Status{Detectors: int(numDetectors), Rules: 2}); !ok || st != want {
		t.Errorf("Status = %+v, %v; want %+v", st, ok, want)
	}

	run := func(x *gateway.Exchange) { handle(s, x) }
	run(toolCall(t, "gh", "create", `{"t":"`+ghp+`"}`))                                      // blocked
	run(toolResult(t, "gh", "get", textResult("x "+ghp, "call 415-555-0132")))               // rewritten
	run(toolResult(t, "crm", "lookup", textResult("allowed@example.com alice@example.com"))) // flagged
	malformed := toolResult(t, "crm", "lookup", `{}`)
	malformed.Message.Result = json.RawMessage(`{"a":`)
	run(malformed)                                                                                 // failure
	run(toolResult(t, "crm", "lookup", textResult("4111 1111 1111 1111 and 5555 5555 5555 4444"))) // rewritten

	st, _ = s.Status()
	want := Status{Detectors: int(numDetectors), Rules: 2, Scanned: 5, Blocked: 1, Rewritten: 2, Failures: 1, Allowlisted: 1}
	if st != want {
		t.Errorf("Status = %+v, want %+v", st, want)
	}
	b, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(b), `"messages_scanned":5`) || !strings.Contains(string(b), `"findings_allowlisted":1`) {
		t.Errorf("Status JSON %s, %v", b, err)
	}

	var buf bytes.Buffer
	s.WriteMetrics(&buf)
	out := buf.String()
	for _, line := range []string{
		"sallyport_dlp_messages_scanned_total 5\n",
		"sallyport_dlp_messages_blocked_total 1\n",
		"sallyport_dlp_messages_rewritten_total 2\n",
		"sallyport_dlp_failures_total 1\n",
		"sallyport_dlp_findings_allowlisted_total 1\n",
		"# TYPE sallyport_dlp_findings_total counter\n",
		"# TYPE sallyport_dlp_bytes_scanned_total counter\n",
		`sallyport_dlp_findings_total{detector="github-pat",action="block"} 1` + "\n",
		`sallyport_dlp_findings_total{detector="github-pat",action="redact"} 1` + "\n",
		`sallyport_dlp_findings_total{detector="PHONE_NUMBER",action="redact"} 1` + "\n",
		`sallyport_dlp_findings_total{detector="EMAIL_ADDRESS",action="flag"} 1` + "\n",
		`sallyport_dlp_findings_total{detector="CREDIT_CARD",action="mask"} 2` + "\n",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("metrics lack %q:\n%s", line, out)
		}
	}
	if strings.Contains(out, `action="allow"`) || strings.Contains(out, `detector="jwt"`) {
		t.Errorf("metrics have counters for nothing:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^sallyport_dlp_bytes_scanned_total [1-9][0-9]*$`).MatchString(out) {
		t.Errorf("bytes scanned missing or zero:\n%s", out)
	}

	t.Run("detectors restricted", func(t *testing.T) {
		s := newTestStage(t, config.DLP{Detectors: []string{"EMAIL_ADDRESS", "jwt"}})
		if st, _ := s.Status(); st.(Status).Detectors != 2 {
			t.Errorf("Status %+v", st)
		}
		x := toolCall(t, "gh", "create", `{"t":"`+ghp+`","to":"alice@example.com"}`)
		if r, err := handle(s, x); err != nil || r.calls != 1 || len(x.Findings) != 1 || x.Findings[0].Detector != "EMAIL_ADDRESS" {
			t.Errorf("Handle: %v, findings %+v", err, x.Findings)
		}
	})
}

func TestStageInChain(t *testing.T) {
	s := newTestStage(t, config.DLP{})
	var delivered *jsonrpc.Message
	h := gateway.Chain(s)
	x := gateway.NewExchange(func(_ context.Context, x *gateway.Exchange) error {
		delivered = x.Message
		return nil
	})
	x.Direction, x.Kind = gateway.BackendToClient, gateway.KindResult
	x.Message = jsonrpc.NewResult(json.RawMessage(`1`), json.RawMessage(textResult("k "+ghp)))
	if err := h.Handle(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	if delivered == nil || bytes.Contains(delivered.Encode(), []byte(ghp)) || !bytes.Contains(delivered.Encode(), []byte("[REDACTED:github-pat]")) {
		t.Errorf("delivered %s", delivered.Encode())
	}
	if got := gateway.AuditFindingsText(x.Findings); got != `[{"detector":"github-pat","path":"result.content[0].text","offset":2,"length":40,"action":"redact"}]` {
		t.Errorf("audit findings %s", got)
	}
}
