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

		{name: "invalid / empty", path: "", err: `path "" must start with params, result or error`},
		{name: "invalid / another root", path: "foo.bar", err: `path "foo.bar" must start with params, result or error`},
		{name: "invalid / a root in another case", path: "Params.x", err: "must start with params, result or error"},
		{name: "invalid / a root with a suffix", path: "paramsx.y", err: "must start with params, result or error"},
		{name: "invalid / a step first", path: ".params", err: "must start with params, result or error"},
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

func TestReplaceValues(t *testing.T) {
	quoted := func(s string) json.RawMessage { return jsonrpc.Quote(s) }
	rep := func(path string, v json.RawMessage) Replacement {
		return Replacement{Path: mustPaths(t, path)[0], Value: v}
	}
	errMsg := func(message, data string) *jsonrpc.Message {
		var d json.RawMessage
		if data != "" {
			d = json.RawMessage(data)
		}
		return jsonrpc.NewError(json.RawMessage(`3`), -32000, message, d)
	}
	tests := []struct {
		name    string
		msg     *jsonrpc.Message
		rs      []Replacement
		n       int
		params  string // "" for unchanged
		result  string // "" for unchanged
		message string // the error message; "" for unchanged
		data    string // the error data; "" for unchanged
	}{
		{name: "error / the message", msg: errMsg("token ghp_x here", ""),
			rs: []Replacement{rep("error.message", quoted("token [REDACTED:github-pat] here"))}, n: 1,
			message: "token [REDACTED:github-pat] here"},
		{name: "error / the message with escapes", msg: errMsg("a\"b", ""),
			rs: []Replacement{rep("error.message", quoted("line\n\"quoted\" \u00e9"))}, n: 1,
			message: "line\n\"quoted\" \u00e9"},
		{name: "error / the message needs a JSON string", msg: errMsg("m", ""),
			rs: []Replacement{rep("error.message", json.RawMessage(`{"a":1}`)), rep("error.message", json.RawMessage(`12`))}, n: 0},
		{name: "error / nothing below the message", msg: errMsg("m", ""),
			rs: []Replacement{rep("error.message.x", quoted("y"))}, n: 0},
		{name: "error / a member of the data", msg: errMsg("m", `{"x":"s1","y":{"z":"s2"},"k":[1,"s3"]}`),
			rs: []Replacement{rep("error.data.x", quoted("[R]")), rep("error.data.y.z", quoted("[R]")), rep("error.data.k[1]", quoted("[R]"))}, n: 3,
			data: `{"x":"[R]","y":{"z":"[R]"},"k":[1,"[R]"]}`},
		{name: "error / the whole data", msg: errMsg("m", `"secret data"`),
			rs: []Replacement{rep("error.data", quoted("[R]"))}, n: 1, data: `"[R]"`},
		{name: "error / wildcards in the data", msg: errMsg("m", `{"a":["s1","s2"],"b":"s3"}`),
			rs: []Replacement{rep("error.data.a[*]", quoted("[R]")), rep("error.data.*", quoted("[S]"))}, n: 4,
			data: `{"a":"[S]","b":"[S]"}`},
		{name: "error / message and data together", msg: errMsg("m1", `{"x":"s"}`),
			rs: []Replacement{rep("error.message", quoted("[M]")), rep("error.data.x", quoted("[D]"))}, n: 2,
			message: "[M]", data: `{"x":"[D]"}`},
		{name: "error / data absent", msg: errMsg("m", ""),
			rs: []Replacement{rep("error.data", quoted("[R]")), rep("error.data.x", quoted("[R]"))}, n: 0},
		{name: "error / a member of the data absent", msg: errMsg("m", `{"x":"s"}`),
			rs: []Replacement{rep("error.data.y", quoted("[R]"))}, n: 0},
		{name: "error / other members are not replaced", msg: errMsg("m", `{"x":"s"}`),
			rs: []Replacement{rep("error.code", json.RawMessage(`1`)), rep("error.*", quoted("[R]")), rep("error[0]", quoted("[R]"))}, n: 0},
		{name: "error / no error in the message", msg: jsonrpc.NewResult(json.RawMessage(`3`), json.RawMessage(`{"a":"s"}`)),
			rs: []Replacement{rep("error.message", quoted("[R]")), rep("error.data", quoted("[R]"))}, n: 0},
		{name: "error / an error path leaves params and result alone",
			msg: &jsonrpc.Message{ID: json.RawMessage(`3`), Params: json.RawMessage(`{"message":"p"}`), Result: json.RawMessage(`{"message":"r"}`), Error: &jsonrpc.Error{Code: 1, Message: "e"}},
			rs:  []Replacement{rep("error.message", quoted("[R]"))}, n: 1, message: "[R]"},

		{name: "several / in params and result, each value its own",
			msg: &jsonrpc.Message{ID: json.RawMessage(`3`), Params: json.RawMessage(`{"a":"1","b":["2","3"]}`), Result: json.RawMessage(`{"c":{"d":"4"},"e":"5"}`)},
			rs: []Replacement{rep("params.a", quoted("A")), rep("params.b[1]", quoted("B")), rep("result.c.d", quoted("C")),
				rep("result.e", json.RawMessage(`null`))}, n: 4,
			params: `{"a":"A","b":["2","B"]}`, result: `{"c":{"d":"C"},"e":null}`},
		{name: "several / the same path twice, the last wins",
			msg: &jsonrpc.Message{Params: json.RawMessage(`{"a":"1"}`)},
			rs:  []Replacement{rep("params.a", quoted("first")), rep("params.a", quoted("second"))}, n: 2,
			params: `{"a":"second"}`},
		{name: "several / a value, then the object holding it",
			msg: &jsonrpc.Message{Params: json.RawMessage(`{"a":{"b":"1"},"c":"2"}`)},
			rs:  []Replacement{rep("params.a.b", quoted("B")), rep("params.a", quoted("A"))}, n: 2,
			params: `{"a":"A","c":"2"}`},
		{name: "several / the object, then a value it no longer holds",
			msg: &jsonrpc.Message{Params: json.RawMessage(`{"a":{"b":"1"},"c":"2"}`)},
			rs:  []Replacement{rep("params.a", quoted("A")), rep("params.a.b", quoted("B")), rep("params.c", quoted("C"))}, n: 2,
			params: `{"a":"A","c":"C"}`},
		{name: "several / some missing",
			msg: &jsonrpc.Message{Params: json.RawMessage(`{"a":"1"}`), Result: json.RawMessage(`{"b":"2"}`)},
			rs:  []Replacement{rep("params.x", quoted("X")), rep("result.b", quoted("B")), rep("result.c[0]", quoted("C"))}, n: 1,
			result: `{"b":"B"}`},
		{name: "several / none", msg: &jsonrpc.Message{Params: json.RawMessage(`{"a":"1"}`)}, n: 0},
		{name: "several / values of any JSON kind",
			msg: &jsonrpc.Message{Result: json.RawMessage(`{"content":[{"text":"a"},{"text":"b"}]}`)},
			rs:  []Replacement{rep("result.content[0].text", json.RawMessage(`{"x":[1,2]}`)), rep("result.content[1]", json.RawMessage(`[true]`))}, n: 2,
			result: `{"content":[{"text":{"x":[1,2]}},[true]]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := *tt.msg
			var beforeErr jsonrpc.Error
			if tt.msg.Error != nil {
				beforeErr = *tt.msg.Error
			}
			out, n := ReplaceValues(tt.msg, tt.rs)
			if n != tt.n {
				t.Errorf("replaced %d values, want %d", n, tt.n)
			}
			check := func(what string, got json.RawMessage, orig json.RawMessage, want string) {
				t.Helper()
				if want == "" {
					if !bytes.Equal(got, orig) {
						t.Errorf("%s changed: %s", what, got)
					}
					return
				}
				if !json.Valid(got) || !jsonEqual(t, got, []byte(want)) {
					t.Errorf("%s:\n got %s\nwant %s", what, got, want)
				}
			}
			check("params", out.Params, before.Params, tt.params)
			check("result", out.Result, before.Result, tt.result)
			if before.Error != nil {
				if out.Error == nil {
					t.Fatal("the error is gone")
				}
				wantMsg := tt.message
				if wantMsg == "" {
					wantMsg = beforeErr.Message
				}
				if out.Error.Message != wantMsg || out.Error.Code != beforeErr.Code {
					t.Errorf("error %d %q, want %d %q", out.Error.Code, out.Error.Message, beforeErr.Code, wantMsg)
				}
				check("error data", out.Error.Data, beforeErr.Data, tt.data)
				// The input's error is not changed, nor shared when changed.
				if !reflect.DeepEqual(*tt.msg.Error, beforeErr) {
					t.Errorf("the input error was modified: %+v", *tt.msg.Error)
				}
				if n > 0 && out.Error == tt.msg.Error {
					t.Error("the output shares the input's error object")
				}
			} else if out.Error != nil {
				t.Errorf("an error appeared: %+v", out.Error)
			}
			if !reflect.DeepEqual(*tt.msg, before) {
				t.Errorf("the input message was modified")
			}
			if string(out.ID) != string(before.ID) || out.Method != before.Method {
				t.Errorf("the envelope changed: %+v", out)
			}
		})
	}

	t.Run("error / the encoded message carries the replacement", func(t *testing.T) {
		m := errMsg("tok ghp_x", `{"x":"s"}`)
		out, n := ReplaceValues(m, []Replacement{rep("error.message", quoted("tok [R]")), rep("error.data.x", quoted("[R]"))})
		if n != 2 {
			t.Fatalf("n %d", n)
		}
		if got, want := string(out.Encode()), `{"jsonrpc":"2.0","id":3,"error":{"code":-32000,"message":"tok [R]","data":{"x":"[R]"}}}`; got != want {
			t.Errorf("encoded\n got %s\nwant %s", got, want)
		}
	})
}

func TestPathCovers(t *testing.T) {
	tests := []struct {
		name string
		p, q string
		want bool
	}{
		{name: "equal / a member", p: "params.arguments.to", q: "params.arguments.to", want: true},
		{name: "equal / an index", p: "result.content[1].text", q: "result.content[1].text", want: true},
		{name: "equal / a quoted name", p: `result.structuredContent["e-mail"]`, q: "result.structuredContent.e-mail", want: true},
		{name: "equal / the error message", p: "error.message", q: "error.message", want: true},
		{name: "prefix / a member covers what is inside", p: "params.arguments", q: "params.arguments.to", want: true},
		{name: "prefix / deep inside", p: "result.content", q: `result.content[3].annotations["a b"][0]`, want: true},
		{name: "prefix / the error data", p: "error.data", q: "error.data.x[2]", want: true},
		{name: "wildcard / every element", p: "result.content[*].text", q: "result.content[7].text", want: true},
		{name: "wildcard / every element, inside", p: "result.content[*]", q: "result.content[0].text", want: true},
		{name: "wildcard / every member", p: "params.arguments.*", q: "params.arguments.to", want: true},
		{name: "wildcard / every member, quoted name", p: "params.arguments.*", q: `params.arguments["a.b"]`, want: true},
		{name: "wildcard / every member, inside", p: "params.*.to", q: "params.arguments.to", want: true},
		{name: "wildcard / several", p: "result.*[*].*", q: "result.content[0].text", want: true},
		{name: "wildcard / a quoted star is a name", p: `params["*"]`, q: "params.arguments", want: false},
		{name: "wildcard / a quoted star matches itself", p: `params["*"]`, q: `params["*"]`, want: true},
		{name: "mismatch / another root", p: "params.content", q: "result.content", want: false},
		{name: "mismatch / error and result", p: "error.data", q: "result.data", want: false},
		{name: "mismatch / another member", p: "params.arguments.cc", q: "params.arguments.to", want: false},
		{name: "mismatch / a longer name", p: "params.arguments.to", q: "params.arguments.too", want: false},
		{name: "mismatch / another index", p: "result.content[0]", q: "result.content[1].text", want: false},
		{name: "mismatch / shorter than the pattern", p: "params.arguments.to", q: "params.arguments", want: false},
		{name: "mismatch / an element wildcard on a member", p: "params.arguments[*]", q: "params.arguments.to", want: false},
		{name: "mismatch / a member wildcard on an element", p: "result.content.*", q: "result.content[0]", want: false},
		{name: "mismatch / an index on a member", p: "params.a[0]", q: "params.a.b", want: false},
		{name: "mismatch / a member on an index", p: "params.a.b", q: "params.a[0]", want: false},
		{name: "mismatch / a member named 0", p: "params.a.0", q: "params.a[0]", want: false},
		{name: "mismatch / case matters", p: "params.Arguments", q: "params.arguments.to", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := mustPaths(t, tt.p, tt.q)
			if got := ps[0].Covers(ps[1]); got != tt.want {
				t.Errorf("%s.Covers(%s) = %v, want %v", tt.p, tt.q, got, tt.want)
			}
		})
	}
	t.Run("a path covers itself", func(t *testing.T) {
		for _, s := range []string{"params.a", "result.content[0].text", "error.message", "error.data.x", `params["a b"][3]`} {
			p := mustPaths(t, s)[0]
			if !p.Covers(p) {
				t.Errorf("%s does not cover itself", s)
			}
		}
	})
	t.Run("the zero path covers nothing", func(t *testing.T) {
		if (Path{}).Covers(mustPaths(t, "params.a")[0]) {
			t.Error("the zero path covers params.a")
		}
	})
}
