package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// This file holds the round-trip fidelity test of issue 3: a backend that
// answers every result type with members no SDK knows, at several depths,
// and a raw client that must receive them equivalent byte for byte (as
// JSON: same members, same values, numbers written the same), with only the
// namespaced name of tools and prompts changed. The other direction is
// checked too: what the client sends reaches the backend the same way,
// with only the routed name changed.

// fidelityIcon is an icon with a member from the future.
const fidelityIcon = `{"src":"https://example.com/icon.png","mimeType":"image/png","sizes":["48x48","96x96"],"theme":"dark","x-future":{"k":[1,2.50,"three"]}}`

// fidelityMeta is a _meta with vendor keys and awkward values.
const fidelityMeta = `{"com.example/vendor":{"deep":{"deeper":[{"deepest":true}]}},"io.sallyport.test/n":12345678901234567890,` +
	`"x-float":1.50,"x-exp":1e3,"x-neg-zero":-0,"x-unicode":"h\u00e9llo \u2603 \ud83d\ude00","x-null":null}`

// fidelityResults are the backend's answers, by method, exactly as it
// writes them.
var fidelityResults = map[string]string{
	"initialize": `{"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":false},"prompts":{},` +
		`"resources":{"subscribe":false},"completions":{},"x-future-capability":{}},` +
		`"serverInfo":{"name":"sallyport-fidelity","version":"1.0.0"}}`,

	"tools/list": `{"tools":[{"name":"fidelity_tool","title":"Fidelity","description":"Answers with everything.",` +
		`"inputSchema":{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",` +
		`"properties":{"q":{"type":"string","x-future":{"deep":[1,{"k":"v"}]}},"r":{"$ref":"#/$defs/thing"}},` +
		`"$defs":{"thing":{"type":"object","additionalProperties":false,"properties":{"n":{"type":"number","minimum":-0.5}}}},` +
		`"additionalProperties":{"type":"integer"},"required":["q"],"x-future":"input"},` +
		`"outputSchema":{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",` +
		`"properties":{"n":{"type":"number"},"big":{"type":"integer"}},"additionalProperties":true,"$defs":{"unused":{}}},` +
		`"annotations":{"title":"Fidelity tool","readOnlyHint":true,"destructiveHint":false,"x-vendor-hint":"keep"},` +
		`"execution":{"taskSupport":"optional","x-future":1},` +
		`"icons":[` + fidelityIcon + `],"_meta":` + fidelityMeta + `,"x-future":{"nested":{"deeper":{"deepest":"ok"}}}},` +
		`{"name":"plain_tool","inputSchema":{"type":"object"}}]}`,

	"tools/call": `{"content":[` +
		`{"type":"text","text":"h\u00e9llo \"quoted\" \\ back\nslash","annotations":{"audience":["user","assistant"],"priority":0.5,` +
		`"lastModified":"2025-01-01T00:00:00Z","x-future":1},"_meta":` + fidelityMeta + `},` +
		`{"type":"image","data":"iVBORw0KGgo=","mimeType":"image/png","annotations":{"priority":1}},` +
		`{"type":"audio","data":"UklGRg==","mimeType":"audio/wav"},` +
		`{"type":"resource_link","uri":"fid://r/1","name":"r1","title":"R1","mimeType":"text/plain","size":8,"icons":[` + fidelityIcon + `]},` +
		`{"type":"resource","resource":{"uri":"fid://r/2","mimeType":"application/json","text":"{\"a\":1}","_meta":{"x":1}}},` +
		`{"type":"x-future-content","payload":{"a":[true,false,null]}}],` +
		`"structuredContent":{"n":1.50,"big":12345678901234567890,"nested":{"list":[{"a":1},{"b":[2,3]}]},"x-future":[true,false,null]},` +
		`"isError":false,"_meta":` + fidelityMeta + `,"x-future":{"k":"v"}}`,

	"prompts/list": `{"prompts":[{"name":"fidelity_prompt","title":"Fidelity prompt","description":"d",` +
		`"arguments":[{"name":"topic","title":"Topic","description":"t","required":true,"x-future":1},{"name":"style"}],` +
		`"icons":[` + fidelityIcon + `],"_meta":` + fidelityMeta + `,"x-future":{}}]}`,

	"prompts/get": `{"description":"A prompt with every kind of content","messages":[` +
		`{"role":"user","content":{"type":"text","text":"hi","annotations":{"audience":["user"],"x-future":true},"_meta":{"k":"v"}}},` +
		`{"role":"assistant","content":{"type":"image","data":"iVBORw0KGgo=","mimeType":"image/png"}},` +
		`{"role":"user","content":{"type":"resource","resource":{"uri":"fid://r/1","mimeType":"text/plain","text":"embedded",` +
		`"annotations":{"priority":0.25},"_meta":` + fidelityMeta + `}}},` +
		`{"role":"user","content":{"type":"resource_link","uri":"fid://r/1","name":"r1","x-future":[]},"x-future":"message"}],` +
		`"_meta":` + fidelityMeta + `,"x-future":[1,2]}`,

	"resources/list": `{"resources":[{"uri":"fid://r/1","name":"r1","title":"R1","description":"eight ch","mimeType":"text/plain","size":8,` +
		`"annotations":{"audience":["assistant"],"priority":1,"lastModified":"2025-01-01T00:00:00Z","x-future":0},` +
		`"icons":[` + fidelityIcon + `],"_meta":` + fidelityMeta + `,"x-future":"s"}]}`,

	"resources/templates/list": `{"resourceTemplates":[{"uriTemplate":"fid://t/{id}","name":"t1","title":"T1","description":"d",` +
		`"mimeType":"text/plain","annotations":{"audience":["user"],"x-future":{"a":{}}},"icons":[` + fidelityIcon + `],` +
		`"_meta":` + fidelityMeta + `,"x-future":{"z":0}}]}`,

	"resources/read": `{"contents":[{"uri":"fid://r/1","mimeType":"text/plain","text":"eight ch","_meta":` + fidelityMeta + `,"x-future":1},` +
		`{"uri":"fid://r/1#blob","mimeType":"application/octet-stream","blob":"AAEC/w==","annotations":{"priority":0}}],` +
		`"_meta":` + fidelityMeta + `,"x-future":{"k":[{}]}}`,

	"completion/complete": `{"completion":{"values":["alpha","\u00e9t\u00e9"],"total":12345678901234567890,"hasMore":true,"x-future":"c"},` +
		`"_meta":` + fidelityMeta + `,"x-future":true}`,
}

// fidelityRequests are what the client sends, with members from the future
// in its params; name is the member holding the routed name ("" when
// nothing is renamed), as a JSON path.
var fidelityRequests = []struct {
	method string
	params string
	rename []string // path to the name the gateway namespaces, if any
	// list is the result member whose items carry a namespaced name.
	list string
}{
	{method: "tools/list", params: `{}`, list: "tools"},
	{method: "prompts/list", params: `{}`, list: "prompts"},
	{method: "resources/list", params: `{}`},
	{method: "resources/templates/list", params: `{}`},
	{method: "tools/call", rename: []string{"name"}, params: `{"name":"fid__fidelity_tool",` +
		`"arguments":{"q":"x","r":{"n":1.50},"big":12345678901234567890,"x-future":{"deep":[{"k":"h\u00e9"}]}},` +
		`"_meta":{"com.example/client":{"a":[1,2]}},"x-future":"call"}`},
	{method: "prompts/get", rename: []string{"name"}, params: `{"name":"fid__fidelity_prompt",` +
		`"arguments":{"topic":"t","style":"s"},"_meta":{"com.example/client":1},"x-future":{}}`},
	{method: "resources/read", params: `{"uri":"fid://r/1","_meta":{"com.example/client":null},"x-future":1e3}`},
	{method: "completion/complete", rename: []string{"ref", "name"}, params: `{"ref":{"type":"ref/prompt","name":"fid__fidelity_prompt","x-future":1},` +
		`"argument":{"name":"topic","value":"a","x-future":true},"context":{"arguments":{"style":"s"}},"_meta":{"com.example/client":"c"}}`},
}

func TestRoundTripFidelity(t *testing.T) {
	t.Parallel()
	bin := buildTestBackend(t)
	dir := t.TempDir()
	resultsFile := filepath.Join(dir, "results.json")
	logFile := filepath.Join(dir, "received.jsonl")
	var b bytes.Buffer
	b.WriteString("{")
	first := true
	for method, res := range fidelityResults {
		if !first {
			b.WriteString(",\n")
		}
		first = false
		fmt.Fprintf(&b, "%q:%s", method, res)
	}
	b.WriteString("}\n")
	if !json.Valid(b.Bytes()) {
		t.Fatalf("the canned results are not valid JSON:\n%s", b.Bytes())
	}
	if err := os.WriteFile(resultsFile, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	g := newGateway(t, baseConfig(testBackendStdio("fid", bin, "session", "-raw", resultsFile, "-log", logFile)))
	token := g.token("alice", "dev")
	g.serve()
	s := openRawSession(t, g.URL, token)

	for i, req := range fidelityRequests {
		t.Run(req.method+" arrives at the client as the backend sent it", func(t *testing.T) {
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":%q,"params":%s}`, 100+i, req.method, req.params)
			r := doRaw(t, s.newRawRequest(t, []byte(body)))
			m, ok := r.response()
			if r.Status != 200 || !ok {
				t.Fatalf("HTTP %d, no answer: %s", r.Status, r.Body)
			}
			if m.Error != nil {
				t.Fatalf("error %d: %s", m.Error.Code, m.Error.Message)
			}
			got := m.Result
			if req.list != "" {
				got = unNamespaceList(t, got, req.list, "fid__")
			}
			want := fidelityResults[req.method]
			if g, w := canonicalJSON(t, got), canonicalJSON(t, []byte(want)); g != w {
				t.Errorf("the result changed on the way through\nbackend sent:\n  %s\nclient got:\n  %s\nfirst difference: %s",
					want, m.Result, firstDifference(w, g))
			}
		})
	}

	// What the backend received: the gateway's own requests (initialize,
	// the lists it caches) and the client's, each once.
	received := readReceived(t, logFile)
	for _, req := range fidelityRequests {
		if req.list != "" || strings.HasSuffix(req.method, "/list") {
			continue // lists are answered from the gateway's catalogue
		}
		t.Run(req.method+" reaches the backend as the client sent it", func(t *testing.T) {
			params, n := received[req.method], len(received[req.method])
			if n != 1 {
				t.Fatalf("the backend received %d %s requests, want 1", n, req.method)
			}
			want := []byte(req.params)
			if req.rename != nil {
				want = setPath(t, want, req.rename, func(v any) any { return strings.TrimPrefix(v.(string), "fid__") })
			}
			if g, w := canonicalJSON(t, params[0]), canonicalJSON(t, want); g != w {
				t.Errorf("the params changed on the way through\nclient sent (name un-namespaced):\n  %s\nbackend got:\n  %s\nfirst difference: %s",
					w, params[0], firstDifference(w, g))
			}
		})
	}
}

// unNamespaceList takes the prefix off the names of a list result's items.
func unNamespaceList(t *testing.T, result []byte, member, prefix string) []byte {
	t.Helper()
	return setPathEach(t, result, member, func(item map[string]any) {
		name, _ := item["name"].(string)
		if !strings.HasPrefix(name, prefix) {
			t.Errorf("%s item named %q: want the prefix %q", member, name, prefix)
		}
		item["name"] = strings.TrimPrefix(name, prefix)
	})
}

// decodeNumbers decodes JSON keeping numbers as written.
func decodeNumbers(t *testing.T, raw []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, raw)
	}
	return v
}

func encodeValue(t *testing.T, v any) []byte {
	t.Helper()
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// setPath replaces the value at path (object members) with f(value).
func setPath(t *testing.T, raw []byte, path []string, f func(any) any) []byte {
	t.Helper()
	root := decodeNumbers(t, raw)
	obj, _ := root.(map[string]any)
	for _, k := range path[:len(path)-1] {
		obj, _ = obj[k].(map[string]any)
	}
	if obj == nil {
		t.Fatalf("no %s in %s", strings.Join(path, "."), raw)
	}
	last := path[len(path)-1]
	obj[last] = f(obj[last])
	return encodeValue(t, root)
}

// setPathEach applies f to every object in the array member of raw.
func setPathEach(t *testing.T, raw []byte, member string, f func(map[string]any)) []byte {
	t.Helper()
	root := decodeNumbers(t, raw)
	obj, _ := root.(map[string]any)
	items, ok := obj[member].([]any)
	if !ok {
		t.Fatalf("no %s array in %s", member, raw)
	}
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			f(m)
		}
	}
	return encodeValue(t, root)
}

// readReceived reads the backend's log of received lines and returns the
// params of each request, by method.
func readReceived(t *testing.T, path string) map[string][]json.RawMessage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("the backend's log: %v", err)
	}
	defer f.Close()
	out := map[string][]json.RawMessage{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var m rpcMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("the backend received a line that is not JSON-RPC: %q", sc.Text())
		}
		if m.Method != "" && m.ID != nil {
			out[m.Method] = append(out[m.Method], m.Params)
		}
	}
	return out
}

// firstDifference shows where two strings first differ.
func firstDifference(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	from := max(0, i-40)
	return fmt.Sprintf("at byte %d: want …%s… got …%s…", i, a[from:min(len(a), i+40)], b[from:min(len(b), i+40)])
}
