package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// decodeJSON decodes JSON with numbers kept as written, for comparing
// documents.
func decodeJSON(t testing.TB, what string, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%s %q: %v", what, b, err)
	}
	if dec.More() {
		t.Fatalf("%s %q: more than one value", what, b)
	}
	return v
}

// argumentSeeds are tool-call arguments that exercise valueOf and
// appendJSON.
var argumentSeeds = []string{
	`{}`,
	`{"path":"/etc/passwd"}`,
	`{"a":{"b":{"c":{"d":[1,2,{"e":null}]}}}}`,
	`{"s":"\u00e9\u0000\ud83d\ude00 \"quoted\" \\ \/ \b\f\n\r\t","k\u00e9y":"v"}`,
	`{"big":1e400,"small":-1e-400,"neg0":-0,"frac":0.1000,"exp":1E+2,"int":123456789012345678901234567890}`,
	`{"":"empty key","":1}`,
	`{"":{"":[""]}}`,
	`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
	`[]`,
	`"a string"`,
	`42`,
	`-0.0e-0`,
	`true`,
	`null`,
	` { "spaced" : [ 1 , 2 ] , "t" : true } `,
	`{"a":1,"a":2}`,
	`{"bad":"\ud800"}`,
	"{\"raw\":\"\xff\"}",
	`{"nested":"` + strings.Repeat("x", 300) + `"}`,
	strings.Repeat(`[`, 70) + strings.Repeat(`]`, 70),
	strings.Repeat(`{"a":`, 1100) + `1` + strings.Repeat(`}`, 1100),
}

// FuzzBuildInput feeds arbitrary JSON to the input builder as the
// arguments of a tool call and as the params of a notification. Build
// never panics; it fails only on messages the codec would refuse; the
// recorded input is JSON; and the arguments and params in the input are
// the JSON they came from.
func FuzzBuildInput(f *testing.F) {
	for _, s := range argumentSeeds {
		f.Add([]byte(s))
	}
	in := NewInputs(testBackends)
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		params := append(append([]byte(`{"name":"docs__search","arguments":`), data...), '}')
		msg := append(append([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":`), params...), '}')
		_, codecErr := jsonrpc.Decode(msg, jsonrpc.Limits{})

		x := gateway.NewExchange(nil)
		x.Direction, x.Kind, x.Method, x.Time = gateway.ClientToBackend, gateway.KindRequest, "tools/call", testTime
		x.Message = &jsonrpc.Message{ID: json.RawMessage(`1`), Method: "tools/call", Params: params}
		x.Backend, x.Target, x.Principal, x.Session = "docs", "search", alice, session
		x.Arguments, _ = jsonrpc.Member(params, "arguments")
		doc, err := in.Build(x)
		if err != nil {
			if codecErr == nil {
				t.Fatalf("Build failed on arguments the codec accepts: %v", err)
			}
			return
		}
		if codecErr != nil {
			// Build is more lenient than the codec here (duplicate keys,
			// depth): nothing to compare it with.
			return
		}
		rec := Recorded(doc)
		if !json.Valid(rec) {
			t.Fatalf("Recorded is not JSON: %s", rec)
		}
		if bytes.Contains(rec, []byte(`"arguments"`)) {
			t.Fatalf("Recorded keeps the arguments: %s", rec)
		}
		args := doc.Get(keyArguments)
		if args == nil {
			t.Fatal("the input has no arguments")
		}
		got := appendJSON(nil, args.Value)
		if want := decodeJSON(t, "arguments", data); !reflect.DeepEqual(decodeJSON(t, "input.arguments", got), want) {
			t.Fatalf("input.arguments = %s, want %s", got, data)
		}
		if tool, ok := doc.Get(keyTool).Value.(ast.Object); !ok || tool.Get(keyName).Value.Compare(ast.String("docs__search")) != 0 {
			t.Fatalf("input.tool = %v", doc.Get(keyTool))
		}

		// Params that are recorded (not a call's) come back the same.
		n := gateway.NewExchange(nil)
		n.Direction, n.Kind, n.Method, n.Time = gateway.BackendToClient, gateway.KindNotification, "notifications/message", testTime
		np := append(append([]byte(`{"level":"info","data":`), data...), '}')
		n.Message = &jsonrpc.Message{Method: "notifications/message", Params: np}
		ndoc, err := in.Build(n)
		if err != nil {
			t.Fatalf("Build of the notification: %v", err)
		}
		nrec := Recorded(ndoc)
		var recorded map[string]json.RawMessage
		if err := json.Unmarshal(nrec, &recorded); err != nil {
			t.Fatalf("Recorded notification %s: %v", nrec, err)
		}
		if want := decodeJSON(t, "params", np); !reflect.DeepEqual(decodeJSON(t, "recorded params", recorded["params"]), want) {
			t.Fatalf("recorded params = %s, want %s", recorded["params"], np)
		}

		// The recorded input reads back as the input it was built from.
		back, err := DecodeInput(nrec)
		if err != nil {
			t.Fatalf("DecodeInput(Recorded): %v", err)
		}
		if ndoc.Compare(back) != 0 {
			t.Fatalf("recorded input reads back as\n%s\nwant\n%s", appendJSON(nil, back), appendJSON(nil, ndoc))
		}
	})
}

// FuzzParseDecision evaluates a policy whose decision is the input's
// "decision" member, so that arbitrary JSON reaches parseDecision: Eval
// never panics, a decision that is not allowed carries no approval or
// redaction, and every failure is a denial by the error rule.
func FuzzParseDecision(f *testing.F) {
	for _, s := range []string{
		`{"allow":true}`,
		`{"allow":false,"deny_reasons":["no"]}`,
		`{"allow":true,"deny_reasons":["but"],"redact":["params.a"],"require_approval":{"timeout":"1m"}}`,
		`{"allow":true,"require_approval":null,"rules":["b","a","b"],"reasons":[]}`,
		`{"allow":true,"require_approval":{"timeout":"soon"}}`,
		`{"allow":true,"redact":["params[\"a\"][0][*].*"]}`,
		`{"allow":true,"redact":["foo.bar"]}`,
		`{"allow":"true"}`,
		`{"require_aproval":{}}`,
		`[]`,
		`1`,
	} {
		f.Add([]byte(s))
	}
	set := mustLoad(f, policyDir(f, map[string]string{"a.rego": regoFile(`decision := input.decision`)}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		doc, err := DecodeInput(append(append([]byte(`{"decision":`), data...), '}'))
		if err != nil {
			return
		}
		d := set.Eval(context.Background(), doc)
		if d.PolicyVersion != set.Version() {
			t.Fatalf("PolicyVersion %q", d.PolicyVersion)
		}
		if !d.Allow && (d.Approval != nil || d.Redact != nil) {
			t.Fatalf("a denial carries approval %v or redaction %q", d.Approval, d.Redact)
		}
		for _, p := range d.Redact {
			if _, err := gateway.ParsePath(p); err != nil {
				t.Fatalf("redact path %q passed: %v", p, err)
			}
		}
		if d.Approval != nil && d.Approval.Timeout < 0 {
			t.Fatalf("negative approval timeout %v", d.Approval.Timeout)
		}
		for i := 1; i < len(d.Rules); i++ {
			if d.Rules[i-1] >= d.Rules[i] {
				t.Fatalf("rules not sorted and unique: %q", d.Rules)
			}
		}
		var obj map[string]any
		if json.Unmarshal(data, &obj) != nil || obj == nil {
			if d.Allow || len(d.Rules) != 1 || d.Rules[0] != RuleError {
				t.Fatalf("a decision that is not an object gives %+v", d)
			}
		}
		if d.Allow && obj["allow"] != true {
			t.Fatalf("allowed without allow true: %s", data)
		}
	})
}
