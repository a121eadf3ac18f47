package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// Path names values inside a message, for redaction: a root ("params",
// "result" or "error") followed by steps. A step is .name (letters, digits, _ and -),
// ["any name"] (a JSON string), [n] (an array index), [*] (every element)
// or .* (every member). Examples: params.arguments.password,
// result.content[*].text, result.structuredContent["e-mail"].
type Path struct {
	text  string
	root  string
	steps []pathStep
}

type pathStep struct {
	name  string // member name, when !index && !all
	index int    // array index, when isIndex
	kind  stepKind
}

type stepKind uint8

const (
	stepMember stepKind = iota
	stepIndex
	stepAllElements
	stepAllMembers
)

// String returns the path as written.
func (p Path) String() string { return p.text }

// ParsePath parses a path; see Path.
func ParsePath(s string) (Path, error) {
	p := Path{text: s}
	i := 0
	for i < len(s) && isNameByte(s[i]) {
		i++
	}
	p.root = s[:i]
	if p.root != "params" && p.root != "result" && p.root != "error" {
		return Path{}, fmt.Errorf("path %q must start with params, result or error", s)
	}
	for i < len(s) {
		switch {
		case strings.HasPrefix(s[i:], ".*"):
			p.steps = append(p.steps, pathStep{kind: stepAllMembers})
			i += 2
		case s[i] == '.':
			j := i + 1
			for j < len(s) && isNameByte(s[j]) {
				j++
			}
			if j == i+1 {
				return Path{}, fmt.Errorf("path %q: a name must follow '.' at offset %d", s, i)
			}
			p.steps = append(p.steps, pathStep{name: s[i+1 : j]})
			i = j
		case strings.HasPrefix(s[i:], "[*]"):
			p.steps = append(p.steps, pathStep{kind: stepAllElements})
			i += 3
		case strings.HasPrefix(s[i:], `["`):
			dec := json.NewDecoder(strings.NewReader(s[i+1:]))
			var name string
			if err := dec.Decode(&name); err != nil {
				return Path{}, fmt.Errorf("path %q: bad quoted name at offset %d", s, i)
			}
			j := i + 1 + int(dec.InputOffset())
			if j >= len(s) || s[j] != ']' {
				return Path{}, fmt.Errorf("path %q: missing ']' at offset %d", s, j)
			}
			p.steps = append(p.steps, pathStep{name: name})
			i = j + 1
		case s[i] == '[':
			j := strings.IndexByte(s[i:], ']')
			if j < 0 {
				return Path{}, fmt.Errorf("path %q: missing ']' at offset %d", s, i)
			}
			n, err := strconv.Atoi(s[i+1 : i+j])
			if err != nil || n < 0 || s[i+1] < '0' || s[i+1] > '9' {
				return Path{}, fmt.Errorf("path %q: bad index %q", s, s[i+1:i+j])
			}
			p.steps = append(p.steps, pathStep{kind: stepIndex, index: n})
			i += j + 1
		default:
			return Path{}, fmt.Errorf("path %q: unexpected %q at offset %d", s, s[i], i)
		}
	}
	if len(p.steps) == 0 {
		return Path{}, fmt.Errorf("path %q names the whole %s: name a value inside it", s, p.root)
	}
	return p, nil
}

func isNameByte(c byte) bool {
	return c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// Redacted is the value redaction puts in place of a policy-redacted one.
var Redacted = json.RawMessage(`"[REDACTED]"`)

// RedactMessage returns a copy of m with the values at paths replaced by
// replacement, and how many values it replaced. Paths that name nothing
// in m are skipped. m is not changed.
func RedactMessage(m *jsonrpc.Message, paths []Path, replacement json.RawMessage) (*jsonrpc.Message, int) {
	rs := make([]Replacement, len(paths))
	for i, p := range paths {
		rs[i] = Replacement{Path: p, Value: replacement}
	}
	return ReplaceValues(m, rs)
}

// Replacement is a value to put in place of the one at Path.
type Replacement struct {
	Path Path
	// Value is JSON; under error.message it must be a JSON string.
	Value json.RawMessage
}

// ReplaceValues returns a copy of m with each replacement applied, and how
// many values it replaced. It is the one redaction code of the gateway:
// policy's redact paths and the DLP stage's redactions both go through
// it. Paths that name nothing in m are skipped. m is not changed.
func ReplaceValues(m *jsonrpc.Message, rs []Replacement) (*jsonrpc.Message, int) {
	out := *m
	n := 0
	for _, r := range rs {
		p := r.Path
		var k int
		switch p.root {
		case "params":
			out.Params, k = replaceAt(out.Params, p.steps, r.Value)
		case "result":
			out.Result, k = replaceAt(out.Result, p.steps, r.Value)
		case "error":
			if out.Error == nil || p.steps[0].kind != stepMember {
				break
			}
			e := *out.Error
			switch p.steps[0].name {
			case "message":
				if s, ok := jsonrpc.Unquote(r.Value); ok && len(p.steps) == 1 {
					e.Message, k = s, 1
				}
			case "data":
				e.Data, k = replaceAt(e.Data, p.steps[1:], r.Value)
			}
			if k > 0 {
				out.Error = &e
			}
		}
		n += k
	}
	return &out, n
}

// replaceAt replaces the values steps name inside raw.
func replaceAt(raw json.RawMessage, steps []pathStep, replacement json.RawMessage) (json.RawMessage, int) {
	if len(raw) == 0 {
		return raw, 0
	}
	if len(steps) == 0 {
		return replacement, 1
	}
	st, rest := steps[0], steps[1:]
	switch st.kind {
	case stepMember:
		v, ok := jsonrpc.Member(raw, st.name)
		if !ok {
			return raw, 0
		}
		nv, n := replaceAt(v, rest, replacement)
		if n == 0 {
			return raw, 0
		}
		return jsonrpc.SetMember(raw, st.name, nv), n
	case stepAllMembers:
		total := 0
		var keys []string
		var vals []json.RawMessage
		if jsonrpc.EachMember(raw, func(k string, v json.RawMessage) bool {
			keys, vals = append(keys, k), append(vals, v)
			return true
		}) != nil {
			return raw, 0
		}
		for i, k := range keys {
			nv, n := replaceAt(vals[i], rest, replacement)
			if n > 0 {
				raw = jsonrpc.SetMember(raw, k, nv)
				total += n
			}
		}
		return raw, total
	}
	// Array steps.
	var elems []json.RawMessage
	if jsonrpc.EachElement(raw, func(_ int, v json.RawMessage) bool {
		elems = append(elems, v)
		return true
	}) != nil {
		return raw, 0
	}
	total := 0
	for i, v := range elems {
		if st.kind == stepIndex && i != st.index {
			continue
		}
		nv, n := replaceAt(v, rest, replacement)
		elems[i] = nv
		total += n
	}
	if total == 0 {
		return raw, 0
	}
	var b bytes.Buffer
	b.WriteByte('[')
	for i, v := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(v)
	}
	b.WriteByte(']')
	return b.Bytes(), total
}

// Covers reports whether q names a value at or inside one that p names:
// p may hold wildcards ([*], .*), q is a concrete path such as a DLP
// finding's.
func (p Path) Covers(q Path) bool {
	if p.root != q.root || len(q.steps) < len(p.steps) {
		return false
	}
	for i, s := range p.steps {
		t := q.steps[i]
		switch s.kind {
		case stepMember:
			if t.kind != stepMember || t.name != s.name {
				return false
			}
		case stepAllMembers:
			if t.kind != stepMember {
				return false
			}
		case stepIndex:
			if t.kind != stepIndex || t.index != s.index {
				return false
			}
		case stepAllElements:
			if t.kind != stepIndex {
				return false
			}
		}
	}
	return true
}
