package dlp

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// located is a Located as the tests compare it.
type located struct {
	det    string
	path   string
	off, n int
	value  string
	inKey  bool
	enc    string
	number bool
}

func locatedOf(ls []Located) []located {
	out := []located{}
	for i := range ls {
		l := &ls[i]
		out = append(out, located{l.Detector, l.Path, l.Offset, l.Length, l.Value(), l.InKey, l.Encoding, l.number})
	}
	return out
}

func quote(s string) string { return string(jsonrpc.Quote(s)) }

func TestScanMessage(t *testing.T) {
	pem := "-----BEGIN RSA PRIVATE KEY-----\n" + pemBody + "\n-----END RSA PRIVATE KEY-----"
	tests := []struct {
		name string
		msg  *jsonrpc.Message
		want []located
	}{
		{
			name: "request / a tool argument",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "tools/call", json.RawMessage(`{"name":"send","arguments":{"to":"alice@example.com","body":"hi there"}}`)),
			want: []located{{det: "EMAIL_ADDRESS", path: "params.arguments.to", off: 0, n: 17, value: "alice@example.com"}},
		},
		{
			name: "request / array elements",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "tools/call", json.RawMessage(`{"arguments":{"cc":["none","x","bob@example.org"]}}`)),
			want: []located{{det: "EMAIL_ADDRESS", path: "params.arguments.cc[2]", off: 0, n: 15, value: "bob@example.org"}},
		},
		{
			name: "result / the second content block",
			msg:  jsonrpc.NewResult(json.RawMessage(`1`), json.RawMessage(`{"content":[{"type":"text","text":"ok"},{"type":"text","text":"call 415-555-0132"}]}`)),
			want: []located{{det: "PHONE_NUMBER", path: "result.content[1].text", off: 5, n: 12, value: "415-555-0132"}},
		},
		{
			name: "result / a name with a dash is a plain step",
			msg:  jsonrpc.NewResult(json.RawMessage(`1`), json.RawMessage(`{"structuredContent":{"e-mail":"bob@example.org"}}`)),
			want: []located{{det: "EMAIL_ADDRESS", path: "result.structuredContent.e-mail", off: 0, n: 15, value: "bob@example.org"}},
		},
		{
			name: "result / a name that needs quoting",
			msg:  jsonrpc.NewResult(json.RawMessage(`1`), json.RawMessage(`{"structuredContent":{"e mail":"bob@example.org","a.b":{"\"q\"":"carol@example.net"}}}`)),
			want: []located{
				{det: "EMAIL_ADDRESS", path: `result.structuredContent["e mail"]`, off: 0, n: 15, value: "bob@example.org"},
				{det: "EMAIL_ADDRESS", path: `result.structuredContent["a.b"]["\"q\""]`, off: 0, n: 17, value: "carol@example.net"},
			},
		},
		{
			name: "result / a top-level array",
			msg:  jsonrpc.NewResult(json.RawMessage(`1`), json.RawMessage(`[{"a":"x"},"mail alice@example.com"]`)),
			want: []located{{det: "EMAIL_ADDRESS", path: "result[1]", off: 5, n: 17, value: "alice@example.com"}},
		},
		{
			name: "error / the message",
			msg:  jsonrpc.NewError(json.RawMessage(`1`), -32000, "no user alice@example.com", nil),
			want: []located{{det: "EMAIL_ADDRESS", path: "error.message", off: 8, n: 17, value: "alice@example.com"}},
		},
		{
			name: "error / a member of the data",
			msg:  jsonrpc.NewError(json.RawMessage(`1`), -32000, "failed", json.RawMessage(`{"x":"key `+awsKey+`"}`)),
			want: []located{{det: "aws-access-token", path: "error.data.x", off: 4, n: 20, value: awsKey}},
		},
		{
			name: "error / string data",
			msg:  jsonrpc.NewError(json.RawMessage(`1`), -32000, "failed", json.RawMessage(quote(ghp))),
			want: []located{{det: "github-pat", path: "error.data", off: 0, n: 40, value: ghp}},
		},
		{
			name: "order / params, result, error message, error data",
			msg: &jsonrpc.Message{ID: json.RawMessage(`1`), Params: json.RawMessage(`{"b":"a@example.com"}`), Result: json.RawMessage(`{"a":"b@example.com"}`),
				Error: &jsonrpc.Error{Code: 1, Message: "c@example.com", Data: json.RawMessage(`["d@example.com"]`)}},
			want: []located{
				{det: "EMAIL_ADDRESS", path: "params.b", n: 13, value: "a@example.com"},
				{det: "EMAIL_ADDRESS", path: "result.a", n: 13, value: "b@example.com"},
				{det: "EMAIL_ADDRESS", path: "error.message", n: 13, value: "c@example.com"},
				{det: "EMAIL_ADDRESS", path: "error.data[0]", n: 13, value: "d@example.com"},
			},
		},
		{
			name: "escapes / newlines inside a PEM key",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "tools/call", json.RawMessage(`{"arguments":{"key":`+quote("key: "+pem)+`}}`)),
			want: []located{{det: "private-key", path: "params.arguments.key", off: 5, n: len(pem), value: pem}},
		},
		{
			name: "escapes / \\u0040 in an email",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "tools/call", json.RawMessage(`{"arguments":{"to":"alice\u0040example.com"}}`)),
			want: []located{{det: "EMAIL_ADDRESS", path: "params.arguments.to", off: 0, n: 17, value: "alice@example.com"}},
		},
		{
			name: "escapes / offsets are in the decoded string",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "tools/call", json.RawMessage(`{"arguments":{"to":"\t\u00e9\ud83d\ude00 \"alice@example.com\""}}`)),
			want: []located{{det: "EMAIL_ADDRESS", path: "params.arguments.to", off: 9, n: 17, value: "alice@example.com"}},
		},
		{
			name: "escapes / an escaped member name",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "x", json.RawMessage(`{"e\u002dmail":"bob@example.org"}`)),
			want: []located{{det: "EMAIL_ADDRESS", path: "params.e-mail", n: 15, value: "bob@example.org"}},
		},
		{
			name: "keys / a secret in a member name",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "tools/call", json.RawMessage(`{"arguments":{"`+ghp+`":"x"}}`)),
			want: []located{{det: "github-pat", path: "params.arguments", n: 40, value: ghp, inKey: true}},
		},
		{
			name: "keys / an email in a member name and in its value",
			msg:  jsonrpc.NewResult(json.RawMessage(`1`), json.RawMessage(`{"by user alice@example.com":"bob@example.org"}`)),
			want: []located{
				// The name's finding has the object's path; below it
				// the member is named ["[REDACTED]"], so that no path
				// holds a matched value.
				{det: "EMAIL_ADDRESS", path: `result`, off: 8, n: 17, value: "alice@example.com", inKey: true},
				{det: "EMAIL_ADDRESS", path: `result["[REDACTED]"]`, n: 15, value: "bob@example.org"},
			},
		},
		{
			name: "numbers / a card number",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "tools/call", json.RawMessage(`{"arguments":{"card":4111111111111111,"n":12,"f":1.5e10}}`)),
			want: []located{{det: "CREDIT_CARD", path: "params.arguments.card", n: 16, value: "4111111111111111", number: true}},
		},
		{
			name: "numbers / in an array",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "x", json.RawMessage(`{"memo":"acct","v":[4111111111111111, 5]}`)),
			want: []located{{det: "CREDIT_CARD", path: "params.v[0]", n: 16, value: "4111111111111111", number: true}},
		},
		{
			name: "names / a password member's value is a generic secret",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "tools/call", json.RawMessage(`{"arguments":{"password":"Xk9mP2vL7qR4tN8w","user":"Xk9mP2vL7qR4tN8w"}}`)),
			want: []located{{det: "generic-api-key", path: "params.arguments.password", n: 16, value: "Xk9mP2vL7qR4tN8w"}},
		},
		{
			name: "names / a longer secret-like name, escaped",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "x", json.RawMessage(`{"db_pass\u0077ord":"Xk9mP2vL7q\u00524tN8w"}`)),
			want: []located{{det: "generic-api-key", path: "params.db_password", n: 16, value: "Xk9mP2vL7qR4tN8w"}},
		},
		{
			name: "names / a low-entropy password",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "x", json.RawMessage(`{"password":"hunter2hunter2","token":"short","secret":123456789012}`)),
		},
		{
			name: "names / a specific secret under a secret name is the specific one",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "x", json.RawMessage(`{"token":"`+ghp+`"}`)),
			want: []located{{det: "github-pat", path: "params.token", n: 40, value: ghp}},
		},
		{
			name: "none / no params, no result",
			msg:  jsonrpc.NewNotification("notifications/initialized", nil),
		},
		{
			name: "none / literals and short strings",
			msg:  jsonrpc.NewRequest(json.RawMessage(`1`), "x", json.RawMessage(` { "a" : true , "b" : [ null , false , "" , "ab" ] , "c" : { } , "d" : [ ] } `)),
		},
	}
	s := newTestScanner(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls, err := s.ScanMessage(tt.msg)
			if err != nil {
				t.Fatalf("ScanMessage: %v", err)
			}
			got, want := locatedOf(ls), tt.want
			if want == nil {
				want = []located{}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ScanMessage\n got %+v\nwant %+v", got, want)
			}
			// Every path is one gateway.ParsePath accepts (redaction and
			// the fields of rules depend on it), but for a whole root.
			for _, l := range ls {
				if l.InKey && !strings.ContainsAny(l.Path, ".[") {
					continue // a member name of the root object
				}
				if _, err := gateway.ParsePath(l.Path); err != nil {
					t.Errorf("path %q: %v", l.Path, err)
				}
			}
		})
	}
}

func TestScanMessageErrors(t *testing.T) {
	deep := func(n int) json.RawMessage {
		return json.RawMessage(`{"a":` + strings.Repeat("[", n) + `"x"` + strings.Repeat("]", n) + `}`)
	}
	deepObj := func(n int) json.RawMessage {
		return json.RawMessage(strings.Repeat(`{"a":`, n) + `"x"` + strings.Repeat("}", n))
	}
	tests := []struct {
		name  string
		msg   *jsonrpc.Message
		limit bool   // the error wraps ErrLimit
		err   string // in the error; "" for none
	}{
		{name: "malformed / unterminated object", msg: jsonrpc.NewRequest(json.RawMessage(`1`), "x", json.RawMessage(`{"a":`)), err: "malformed JSON"},
		{name: "malformed / unterminated string", msg: jsonrpc.NewRequest(json.RawMessage(`1`), "x", json.RawMessage(`{"a":"b}`)), err: "malformed JSON"},
		{name: "malformed / trailing data", msg: jsonrpc.NewRequest(json.RawMessage(`1`), "x", json.RawMessage(`{"a":"b"} x`)), err: "malformed JSON"},
		{name: "malformed / missing colon", msg: jsonrpc.NewRequest(json.RawMessage(`1`), "x", json.RawMessage(`{"a" "b"}`)), err: "malformed JSON"},
		{name: "malformed / unquoted name", msg: jsonrpc.NewRequest(json.RawMessage(`1`), "x", json.RawMessage(`{a:"b"}`)), err: "malformed JSON"},
		{name: "malformed / missing comma in an array", msg: jsonrpc.NewResult(json.RawMessage(`1`), json.RawMessage(`["a" "b"]`)), err: "malformed JSON"},
		{name: "malformed / in the error data", msg: jsonrpc.NewError(json.RawMessage(`1`), 1, "m", json.RawMessage(`{"x":}`)), err: "malformed JSON"},
		{name: "malformed / after a valid params", msg: &jsonrpc.Message{Params: json.RawMessage(`{}`), Result: json.RawMessage(`[`)}, err: "malformed JSON"},
		{name: "depth / arrays at the limit", msg: jsonrpc.NewRequest(json.RawMessage(`1`), "x", deep(maxWalkDepth-1))},
		{name: "depth / arrays past the limit", msg: jsonrpc.NewRequest(json.RawMessage(`1`), "x", deep(maxWalkDepth)), limit: true, err: "nested deeper than 256"},
		{name: "depth / objects at the limit", msg: jsonrpc.NewResult(json.RawMessage(`1`), deepObj(maxWalkDepth))},
		{name: "depth / objects past the limit", msg: jsonrpc.NewResult(json.RawMessage(`1`), deepObj(maxWalkDepth+1)), limit: true, err: "nested deeper than 256"},
		{name: "depth / far past the limit", msg: jsonrpc.NewResult(json.RawMessage(`1`), json.RawMessage(strings.Repeat("[", 100000))), limit: true, err: "nested deeper"},
	}
	s := newTestScanner(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.ScanMessage(tt.msg)
			if tt.err == "" {
				if err != nil {
					t.Fatalf("ScanMessage: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("ScanMessage: %v, want an error with %q", err, tt.err)
			}
			if errors.Is(err, ErrLimit) != tt.limit {
				t.Errorf("errors.Is(%v, ErrLimit) = %v, want %v", err, !tt.limit, tt.limit)
			}
		})
	}

	t.Run("decoding budget / for the whole message", func(t *testing.T) {
		small := newTestScanner(t, Options{MaxDecodedBytes: 40})
		b64 := `"` + strings.Repeat("QUtJQVo3UTNYSzVOMkJWVFJXNE0g", 1) + `"`
		// Each string alone is within the budget; together they are not.
		if _, err := small.ScanMessage(jsonrpc.NewResult(json.RawMessage(`1`), json.RawMessage(`[`+b64+`]`))); err != nil {
			t.Fatalf("one string: %v", err)
		}
		_, err := small.ScanMessage(jsonrpc.NewResult(json.RawMessage(`1`), json.RawMessage(`[`+b64+`,`+b64+`]`)))
		if !errors.Is(err, ErrLimit) {
			t.Errorf("two strings: %v, want ErrLimit", err)
		}
	})
}
