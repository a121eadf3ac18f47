package dlp

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// maxWalkDepth bounds the nesting the message walk follows; the codec's
// own limit is lower, so only a message built elsewhere can reach it.
const maxWalkDepth = 256

// Located is a match in a message: the match (its span in the string
// value) and where the value is.
type Located struct {
	Match
	// Path is where the value sits (see gateway.Path).
	Path string
	// InKey is true for a match in an object member's name.
	InKey bool
	// value is the string value (decoded) or the number's text the match
	// is in; number says it was a JSON number.
	value  string
	number bool
}

// Value returns the matched text (for an encoded match, the encoded run).
func (l *Located) Value() string { return l.value[l.Offset : l.Offset+l.Length] }

// ScanMessage scans every string of m (and the member names, and numbers
// long enough to be a card or an account) in params, result and error,
// and returns the matches with their paths, in message order.
func (s *Scanner) ScanMessage(m *jsonrpc.Message) ([]Located, error) {
	st := getState(s)
	defer putState(st)
	w := walker{st: st}
	if len(m.Params) > 0 {
		w.walk(m.Params, "params")
	}
	if len(m.Result) > 0 {
		w.walk(m.Result, "result")
	}
	if e := m.Error; e != nil {
		w.path = append(w.path[:0], seg{root: "error"}, seg{name: []byte("message")})
		w.str([]byte(e.Message), nil, false)
		if len(e.Data) > 0 {
			w.walk(e.Data, "error.data")
		}
	}
	if w.err == nil {
		w.err = st.err
	}
	return w.out, w.err
}

// walker walks raw JSON, keeping the path of the value it is at.
type walker struct {
	st    *state
	path  []seg
	out   []Located
	err   error
	depth int
	buf   []byte
}

func (w *walker) walk(raw []byte, root string) {
	w.path = append(w.path[:0], seg{root: root})
	if i := w.value(raw, skipWS(raw, 0), nil); w.err == nil && skipWS(raw, i) != len(raw) {
		w.err = errors.New("dlp: malformed JSON in message")
	}
}

func (w *walker) fail(i int) int {
	if w.err == nil {
		w.err = fmt.Errorf("dlp: malformed JSON in message at offset %d", i)
	}
	return -1
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// value walks the value at b[i] (key is its member name, if any) and
// returns the offset past it, or -1 after setting w.err.
func (w *walker) value(b []byte, i int, key []byte) int {
	if w.err != nil || i < 0 || i >= len(b) {
		return w.fail(i)
	}
	switch c := b[i]; {
	case c == '{':
		return w.object(b, i)
	case c == '[':
		return w.array(b, i)
	case c == '"':
		s, e, esc := stringSpan(b, i)
		if e < 0 {
			return w.fail(i)
		}
		v := w.unescape(b[s:e], esc)
		if v == nil && esc {
			return w.fail(i)
		}
		w.str(v, key, false)
		return e + 1
	case c == '-' || c >= '0' && c <= '9':
		j := i + 1
		for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
			j++
		}
		if j-i >= 8 {
			// Long enough to be a card, a phone or an account number.
			w.str(b[i:j], key, true)
		}
		return j
	case c == 't' || c == 'f' || c == 'n':
		j := i
		for j < len(b) && b[j] >= 'a' && b[j] <= 'z' {
			j++
		}
		return j
	}
	return w.fail(i)
}

func (w *walker) object(b []byte, i int) int {
	if !w.enter() {
		return -1
	}
	defer w.leave()
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1
	}
	for i < len(b) {
		if b[i] != '"' {
			return w.fail(i)
		}
		s, e, esc := stringSpan(b, i)
		if e < 0 {
			return w.fail(i)
		}
		name := w.unescape(b[s:e], esc)
		if name == nil && esc {
			return w.fail(i)
		}
		// A member name can carry a secret too. Its findings get the
		// object's path, and the paths below it name the member
		// ["[REDACTED]"]: no path ever holds a matched value.
		n0 := len(w.out)
		w.str(name, nil, false)
		if esc {
			name = append([]byte(nil), name...) // w.buf is reused below
		}
		step := seg{name: name}
		if len(w.out) > n0 {
			for k := n0; k < len(w.out); k++ {
				w.out[k].InKey = true
			}
			step = seg{redacted: true}
		}
		w.path = append(w.path, step)
		i = skipWS(b, e+1)
		if i >= len(b) || b[i] != ':' {
			return w.fail(i)
		}
		i = w.value(b, skipWS(b, i+1), name)
		w.path = w.path[:len(w.path)-1]
		if i < 0 {
			return -1
		}
		i = skipWS(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == '}' {
			return i + 1
		}
		return w.fail(i)
	}
	return w.fail(i)
}

// enter goes one level deeper into the JSON, or sets w.err when that
// passes maxWalkDepth; leave comes back up.
func (w *walker) enter() bool {
	if w.depth++; w.depth > maxWalkDepth {
		w.err = fmt.Errorf("%w: JSON nested deeper than %d", ErrLimit, maxWalkDepth)
		return false
	}
	return true
}

func (w *walker) leave() { w.depth-- }

func (w *walker) array(b []byte, i int) int {
	if !w.enter() {
		return -1
	}
	defer w.leave()
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1
	}
	for k := 0; i < len(b); k++ {
		w.path = append(w.path, seg{index: k, isIndex: true})
		i = w.value(b, i, nil)
		w.path = w.path[:len(w.path)-1]
		if i < 0 {
			return -1
		}
		i = skipWS(b, i)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if i < len(b) && b[i] == ']' {
			return i + 1
		}
		return w.fail(i)
	}
	return w.fail(i)
}

// str scans one string (or number text) at the current path.
func (w *walker) str(text, key []byte, number bool) {
	if len(text) < 3 && len(key) == 0 {
		return
	}
	st := w.st
	st.key = key
	ms := st.scan(text, 0)
	st.key = nil
	if len(ms) == 0 {
		return
	}
	path := renderPath(w.path)
	v := string(text)
	for _, m := range ms {
		w.out = append(w.out, Located{Match: m, Path: path, value: v, number: number})
	}
}

// seg is one step of the walker's path, rendered only for a finding.
type seg struct {
	root     string // the first step: params, result, error, error.data
	name     []byte // a member name (raw bytes of the message, or a copy)
	index    int
	isIndex  bool
	redacted bool // a member whose name had a finding
}

// renderPath writes steps in the syntax of gateway.Path.
func renderPath(steps []seg) string {
	var b []byte
	for _, s := range steps {
		switch {
		case s.root != "":
			b = append(b, s.root...)
		case s.isIndex:
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(s.index), 10)
			b = append(b, ']')
		case s.redacted:
			b = append(b, `["[REDACTED]"]`...)
		default:
			b = appendNameStep(b, s.name)
		}
	}
	return string(b)
}

// appendNameStep appends a member step: .name, or ["name"] when the name
// is not plain.
func appendNameStep(b, name []byte) []byte {
	plain := len(name) > 0
	for _, c := range name {
		if !(isAlnum[c] || c == '_' || c == '-') {
			plain = false
			break
		}
	}
	if plain {
		b = append(b, '.')
		return append(b, name...)
	}
	b = append(b, '[')
	b = jsonrpc.AppendQuote(b, string(name))
	return append(b, ']')
}

// stringSpan returns the span of the string's content starting at b[i]
// (a quote), the offset of its closing quote, and whether it has escapes.
func stringSpan(b []byte, i int) (start, end int, esc bool) {
	for j := i + 1; j < len(b); {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			break
		}
		q := j + k
		bs := 0 // backslashes right before the quote
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			bs++
		}
		if bs%2 == 0 {
			return i + 1, q, bytes.IndexByte(b[i+1:q], '\\') >= 0
		}
		j = q + 1
	}
	return 0, -1, false
}

// unescape returns the string's content decoded; without escapes, the
// raw bytes themselves. It returns nil for a malformed escape.
func (w *walker) unescape(raw []byte, esc bool) []byte {
	if !esc {
		return raw
	}
	out, ok := jsonrpc.AppendUnescaped(w.buf[:0], raw)
	w.buf = out
	if !ok {
		return nil
	}
	return out
}
