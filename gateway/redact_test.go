package gateway

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		name  string
		path  string
		root  string
		steps []pathStep
		err   string // in the error; "" for a valid path
	}{
		{name: "valid / a member of params", path: "params.arguments.password", root: "params",
			steps: []pathStep{{name: "arguments"}, {name: "password"}}},
		{name: "invalid / the whole result", path: "result", err: `path "result" names the whole result`},
		{name: "invalid / an index with a sign", path: "result.content[+1]", err: "bad index"},
		{name: "valid / every element of an array", path: "result.content[*].text", root: "result",
			steps: []pathStep{{name: "content"}, {kind: stepAllElements}, {name: "text"}}},
		{name: "valid / an index", path: "params.items[12]", root: "params",
			steps: []pathStep{{name: "items"}, {kind: stepIndex, index: 12}}},
		{name: "valid / every member", path: "params.arguments.*", root: "params",
			steps: []pathStep{{name: "arguments"}, {kind: stepAllMembers}}},
		{name: "valid / a quoted name", path: `result.structuredContent["e-mail"]`, root: "result",
			steps: []pathStep{{name: "structuredContent"}, {name: "e-mail"}}},
		{name: "valid / a quoted name with dots, brackets and escapes", path: `params["a.b[0]\"c\u00e9"]`, root: "params",
			steps: []pathStep{{name: "a.b[0]\"c\u00e9"}}},
		{name: "valid / an empty quoted name", path: `params[""]`, root: "params", steps: []pathStep{{name: ""}}},
		{name: "valid / a quoted star is a name", path: `params["*"]`, root: "params", steps: []pathStep{{name: "*"}}},
		{name: "valid / names with digits, dashes and underscores", path: "params.a-1._b2", root: "params",
			steps: []pathStep{{name: "a-1"}, {name: "_b2"}}},
		{name: "valid / steps back to back", path: "params.m[0][*].*[1]", root: "params",
			steps: []pathStep{{name: "m"}, {kind: stepIndex}, {kind: stepAllElements}, {kind: stepAllMembers}, {kind: stepIndex, index: 1}}},

		{name: "invalid / empty", path: "", err: `path "" must start with params or result`},
		{name: "invalid / another root", path: "foo.bar", err: `path "foo.bar" must start with params or result`},
		{name: "invalid / a root in another case", path: "Params.x", err: "must start with params or result"},
		{name: "invalid / a root with a suffix", path: "paramsx.y", err: "must start with params or result"},
		{name: "invalid / a step first", path: ".params", err: "must start with params or result"},
		{name: "invalid / the error member", path: "error.message", err: "must start with params or result"},
		{name: "invalid / a trailing dot", path: "params.", err: `path "params.": a name must follow '.' at offset 6`},
		{name: "invalid / two dots", path: "params..a", err: "a name must follow '.' at offset 6"},
		{name: "invalid / a space", path: "params.a b", err: `unexpected ' ' at offset 8`},
		{name: "invalid / a star after a name", path: "params.a*", err: `unexpected '*' at offset 8`},
		{name: "invalid / a negative index", path: "params.a[-1]", err: `bad index "-1"`},
		{name: "invalid / a word index", path: "params.a[x]", err: `bad index "x"`},
		{name: "invalid / an empty index", path: "params.a[]", err: `bad index ""`},
		{name: "invalid / an unclosed index", path: "params.a[1", err: "missing ']' at offset 8"},
		{name: "invalid / an unclosed quoted name", path: `params["a"`, err: "missing ']' at offset 10"},
		{name: "invalid / an unterminated quoted name", path: `params["a`, err: "bad quoted name at offset 6"},
		{name: "invalid / a bad escape in a quoted name", path: `params["\q"]`, err: "bad quoted name at offset 6"},
		{name: "invalid / a space after a quoted name", path: `params["a" ]`, err: "missing ']'"},
		{name: "invalid / single quotes", path: `params['a']`, err: `bad index "'a'"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePath(tt.path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParsePath(%q) = %+v, %v; want an error with %q", tt.path, p, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePath(%q): %v", tt.path, err)
			}
			if p.root != tt.root || !reflect.DeepEqual(p.steps, tt.steps) {
				t.Errorf("ParsePath(%q) = root %q steps %+v, want %q %+v", tt.path, p.root, p.steps, tt.root, tt.steps)
			}
			if p.String() != tt.path {
				t.Errorf("String() = %q, want %q", p.String(), tt.path)
			}
		})
	}
}

func mustPaths(t *testing.T, texts ...string) []Path {
	t.Helper()
	var ps []Path
	for _, s := range texts {
		p, err := ParsePath(s)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

// jsonEqual reports whether a and b hold the same JSON value.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(va, vb)
}

func TestRedactMessage(t *testing.T) {
	const params = `{"name":"db__login","arguments":{"user":"alice","password":"hunter2","keys":[{"id":1,"secret":"s1"},{"id":2,"secret":"s2"},{"id":3}],"env":{"HOME":"/root","TOKEN":"t"},"e-mail":"a@example.com","n":[[1,2],[3,4]]}}`
	const result = `{"content":[{"type":"text","text":"one"},{"type":"image","data":"AAAA"},{"type":"text","text":"three"}],"structuredContent":{"e-mail":"a@example.com","rows":[]}}`
	tests := []struct {
		name   string
		paths  []string
		params string // "" for unchanged
		result string // "" for unchanged
		n      int
	}{
		{
			name:   "redact / one member of the arguments",
			paths:  []string{"params.arguments.password"},
			params: `{"name":"db__login","arguments":{"user":"alice","password":"[REDACTED]","keys":[{"id":1,"secret":"s1"},{"id":2,"secret":"s2"},{"id":3}],"env":{"HOME":"/root","TOKEN":"t"},"e-mail":"a@example.com","n":[[1,2],[3,4]]}}`,
			n:      1,
		},
		{
			name:   "redact / a member of every element, skipping elements without it",
			paths:  []string{"params.arguments.keys[*].secret"},
			params: `{"name":"db__login","arguments":{"user":"alice","password":"hunter2","keys":[{"id":1,"secret":"[REDACTED]"},{"id":2,"secret":"[REDACTED]"},{"id":3}],"env":{"HOME":"/root","TOKEN":"t"},"e-mail":"a@example.com","n":[[1,2],[3,4]]}}`,
			n:      2,
		},
		{
			name:   "redact / one element by index",
			paths:  []string{"params.arguments.keys[1]"},
			params: `{"name":"db__login","arguments":{"user":"alice","password":"hunter2","keys":[{"id":1,"secret":"s1"},"[REDACTED]",{"id":3}],"env":{"HOME":"/root","TOKEN":"t"},"e-mail":"a@example.com","n":[[1,2],[3,4]]}}`,
			n:      1,
		},
		{
			name:   "redact / every member of an object",
			paths:  []string{"params.arguments.env.*"},
			params: `{"name":"db__login","arguments":{"user":"alice","password":"hunter2","keys":[{"id":1,"secret":"s1"},{"id":2,"secret":"s2"},{"id":3}],"env":{"HOME":"[REDACTED]","TOKEN":"[REDACTED]"},"e-mail":"a@example.com","n":[[1,2],[3,4]]}}`,
			n:      2,
		},
		{
			name:   "redact / a quoted name",
			paths:  []string{`params.arguments["e-mail"]`},
			params: `{"name":"db__login","arguments":{"user":"alice","password":"hunter2","keys":[{"id":1,"secret":"s1"},{"id":2,"secret":"s2"},{"id":3}],"env":{"HOME":"/root","TOKEN":"t"},"e-mail":"[REDACTED]","n":[[1,2],[3,4]]}}`,
			n:      1,
		},
		{
			name:   "redact / nested arrays",
			paths:  []string{"params.arguments.n[*][0]"},
			params: `{"name":"db__login","arguments":{"user":"alice","password":"hunter2","keys":[{"id":1,"secret":"s1"},{"id":2,"secret":"s2"},{"id":3}],"env":{"HOME":"/root","TOKEN":"t"},"e-mail":"a@example.com","n":[["[REDACTED]",2],["[REDACTED]",4]]}}`,
			n:      2,
		},
		{
			name:   "redact / a whole object",
			paths:  []string{"params.arguments"},
			params: `{"name":"db__login","arguments":"[REDACTED]"}`,
			n:      1,
		},
		{
			name:   "redact / several paths, overlapping",
			paths:  []string{"params.arguments.password", "params.arguments.*", "result.content[0].text"},
			params: `{"name":"db__login","arguments":{"user":"[REDACTED]","password":"[REDACTED]","keys":"[REDACTED]","env":"[REDACTED]","e-mail":"[REDACTED]","n":"[REDACTED]"}}`,
			result: `{"content":[{"type":"text","text":"[REDACTED]"},{"type":"image","data":"AAAA"},{"type":"text","text":"three"}],"structuredContent":{"e-mail":"a@example.com","rows":[]}}`,
			n:      8,
		},
		{
			name:   "redact / the result, not the params",
			paths:  []string{"result.content[*].text", `result.structuredContent["e-mail"]`},
			result: `{"content":[{"type":"text","text":"[REDACTED]"},{"type":"image","data":"AAAA"},{"type":"text","text":"[REDACTED]"}],"structuredContent":{"e-mail":"[REDACTED]","rows":[]}}`,
			n:      3,
		},
		{
			name:   "redact / params paths do not reach into the result",
			paths:  []string{"params.content[*].text", "params.structuredContent"},
			params: `{"name":"db__login","arguments":{"user":"alice","password":"hunter2","keys":[{"id":1,"secret":"s1"},{"id":2,"secret":"s2"},{"id":3}],"env":{"HOME":"/root","TOKEN":"t"},"e-mail":"a@example.com","n":[[1,2],[3,4]]}}`,
		},
		{name: "missing / a member that is absent", paths: []string{"params.arguments.token"}},
		{name: "missing / an index past the end", paths: []string{"params.arguments.keys[3]"}},
		{name: "missing / a member of a string", paths: []string{"params.arguments.user.first"}},
		{name: "missing / elements of an object", paths: []string{"params.arguments.env[*]"}},
		{name: "missing / members of an array", paths: []string{"params.arguments.keys.*"}},
		{name: "missing / an index into an object", paths: []string{"params.arguments[0]"}},
		{name: "missing / every member of an empty array", paths: []string{"result.structuredContent.rows[*]"}},
		{name: "missing / no paths"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &jsonrpc.Message{ID: json.RawMessage(`7`), Method: "tools/call", Params: json.RawMessage(params), Result: json.RawMessage(result)}
			before := *m
			paramsBytes, resultBytes := bytes.Clone(m.Params), bytes.Clone(m.Result)
			out, n := RedactMessage(m, mustPaths(t, tt.paths...), Redacted)
			if n != tt.n {
				t.Errorf("redacted %d values, want %d", n, tt.n)
			}
			wantParams, wantResult := tt.params, tt.result
			if wantParams == "" {
				wantParams = params
			}
			if wantResult == "" {
				wantResult = result
			}
			if !json.Valid(out.Params) || !jsonEqual(t, out.Params, []byte(wantParams)) {
				t.Errorf("params:\n got %s\nwant %s", out.Params, wantParams)
			}
			if !json.Valid(out.Result) || !jsonEqual(t, out.Result, []byte(wantResult)) {
				t.Errorf("result:\n got %s\nwant %s", out.Result, wantResult)
			}
			if tt.n == 0 && (string(out.Params) != params || string(out.Result) != result) {
				t.Errorf("nothing redacted, yet the bytes changed:\n%s\n%s", out.Params, out.Result)
			}
			if out.ID == nil || string(out.ID) != "7" || out.Method != "tools/call" {
				t.Errorf("the envelope changed: %+v", out)
			}
			if out == m {
				t.Error("RedactMessage returned the message it was given")
			}
			if !bytes.Equal(m.Params, paramsBytes) || !bytes.Equal(m.Result, resultBytes) || !reflect.DeepEqual(*m, before) {
				t.Errorf("the input message was modified:\n%s\n%s", m.Params, m.Result)
			}
		})
	}

	t.Run("redact / a message without params or result", func(t *testing.T) {
		m := &jsonrpc.Message{Method: "notifications/initialized"}
		out, n := RedactMessage(m, mustPaths(t, "params.a", "result.b", "params.c[*]"), Redacted)
		if n != 0 || out.Params != nil || out.Result != nil {
			t.Errorf("n %d, params %s, result %s", n, out.Params, out.Result)
		}
	})

	t.Run("redact / another replacement value", func(t *testing.T) {
		m := &jsonrpc.Message{Params: json.RawMessage(`{"a":{"b":1}}`)}
		out, n := RedactMessage(m, mustPaths(t, "params.a.b"), json.RawMessage(`null`))
		if n != 1 || string(out.Params) != `{"a":{"b":null}}` {
			t.Errorf("n %d, params %s", n, out.Params)
		}
	})

	t.Run("redact / a member spelt with escapes in the message", func(t *testing.T) {
		m := &jsonrpc.Message{Params: json.RawMessage(`{"pass\u0077ord":"x","\u0061":[1]}`)}
		out, n := RedactMessage(m, mustPaths(t, "params.password", "params.a[0]"), Redacted)
		if n != 2 || !jsonEqual(t, out.Params, []byte(`{"password":"[REDACTED]","a":["[REDACTED]"]}`)) {
			t.Errorf("n %d, params %s", n, out.Params)
		}
	})

	t.Run("redact / spare capacity of the input is not written to", func(t *testing.T) {
		buf := make([]byte, 0, 256)
		buf = append(buf, `{"a":"secret","b":[1,2]}`...)
		m := &jsonrpc.Message{Params: buf}
		spare := buf[:cap(buf)]
		for i := len(buf); i < len(spare); i++ {
			spare[i] = '#'
		}
		out, n := RedactMessage(m, mustPaths(t, "params.a", "params.b[1]"), Redacted)
		if n != 2 || string(out.Params) != `{"a":"[REDACTED]","b":[1,"[REDACTED]"]}` {
			t.Errorf("n %d, params %s", n, out.Params)
		}
		if string(m.Params) != `{"a":"secret","b":[1,2]}` || strings.Trim(string(spare[len(buf):]), "#") != "" {
			t.Errorf("the input's backing array was written to")
		}
	})
}
