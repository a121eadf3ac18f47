package jsonrpc

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"
	"unicode/utf8"
)

// smallObject is the number of member names an object may have before
// duplicate detection switches from linear comparison to a map.
const smallObject = 16

// frame is one open container in the scanner's explicit stack.
type frame struct {
	obj     bool
	keyBase int                 // index in scanner.keys of this object's first name
	m       map[string]struct{} // names seen, once the object has more than smallObject
}

// scanner validates JSON in one pass without recursion. Syntax errors (and
// exceeding the depth limit) stop the scan and are recorded in fatal; the
// first semantic problem (a reason the JSON is not an acceptable message)
// is recorded in sem and scanning goes on, so that a later syntax error
// still wins.
type scanner struct {
	data     []byte
	maxDepth int
	fatal    *DecodeError
	sem      string
	id       []byte // id recovered for an invalid message
	frames   []frame
	keys     []keyRef // names of the open objects, see frame.keyBase
	esc      []byte   // unescaped names that contain escapes
	maps     []map[string]struct{}
}

// keyRef locates a member name: data[off:off+n], or esc[off:off+n] for a
// name that had escapes. Holding offsets rather than slices keeps the
// stack free of pointers, so it is cheap to reset.
type keyRef struct {
	off, n int32
	esc    bool
}

func (s *scanner) name(k keyRef) []byte {
	if k.esc {
		return s.esc[k.off : k.off+k.n]
	}
	return s.data[k.off : k.off+k.n]
}

var scanners = sync.Pool{New: func() any {
	return &scanner{frames: make([]frame, 0, 16), keys: make([]keyRef, 0, 64)}
}}

func getScanner(data []byte, maxDepth int) *scanner {
	s := scanners.Get().(*scanner)
	s.data = data
	s.maxDepth = maxDepth
	return s
}

func putScanner(s *scanner) {
	// Frames beyond len never hold a map (popObject clears it).
	for i := range s.frames {
		if m := s.frames[i].m; m != nil {
			s.freeMap(m)
			s.frames[i].m = nil
		}
	}
	s.frames = s.frames[:0]
	s.keys = s.keys[:0]
	s.esc = s.esc[:0]
	if cap(s.frames) > 1024 {
		s.frames = make([]frame, 0, 16)
	}
	if cap(s.keys) > 4096 {
		s.keys = make([]keyRef, 0, 64)
	}
	if cap(s.esc) > 64<<10 {
		s.esc = nil
	}
	s.data, s.fatal, s.sem, s.id = nil, nil, "", nil
	scanners.Put(s)
}

func (s *scanner) freeMap(m map[string]struct{}) {
	if len(s.maps) < 4 && len(m) <= 4096 {
		clear(m)
		s.maps = append(s.maps, m)
	}
}

func (s *scanner) newMap() map[string]struct{} {
	if n := len(s.maps); n > 0 {
		m := s.maps[n-1]
		s.maps = s.maps[:n-1]
		return m
	}
	return make(map[string]struct{}, 2*smallObject)
}

// syntax records a parse error at offset i and returns -1.
func (s *scanner) syntax(i int, what string) int {
	if s.fatal == nil {
		s.fatal = &DecodeError{Code: CodeParseError, Message: fmt.Sprintf("%s at offset %d", what, i)}
	}
	return -1
}

func (s *scanner) eof() int {
	if s.fatal == nil {
		s.fatal = &DecodeError{Code: CodeParseError, Message: "unexpected end of input"}
	}
	return -1
}

func (s *scanner) unexpected(i int) int {
	if i >= len(s.data) {
		return s.eof()
	}
	return s.syntax(i, "unexpected "+describe(s.data[i]))
}

func (s *scanner) tooDeep() int {
	if s.fatal == nil {
		s.fatal = &DecodeError{Code: CodeInvalidRequest, Message: fmt.Sprintf("nesting deeper than %d", s.maxDepth)}
	}
	return -1
}

func (s *scanner) badString(i int, p strProblem) int {
	switch p {
	case strUnterminated:
		return s.eof()
	case strControl:
		return s.syntax(i, "control character in string")
	case strBadUTF8:
		return s.syntax(i, "invalid UTF-8 in string")
	case strSurrogate:
		return s.syntax(i, "unpaired surrogate in string")
	}
	return s.syntax(i, "invalid escape in string")
}

// invalid records a semantic problem unless one is already recorded.
func (s *scanner) invalid(msg string) {
	if s.sem == "" {
		s.sem = msg
	}
}

// invalidName records a semantic problem about a member name, formatting
// the message only when it is the first problem.
func (s *scanner) invalidName(format string, name []byte) {
	if s.sem == "" {
		s.sem = fmt.Sprintf(format, shortName(name))
	}
}

func shortName(name []byte) string {
	if len(name) > 64 {
		return string(name[:64]) + "..."
	}
	return string(name)
}

// describe names byte c for an error message.
func describe(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return "character '" + string(rune(c)) + "'"
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// trailing checks that only whitespace follows offset i.
func (s *scanner) trailing(i int) int {
	i = skipWS(s.data, i)
	if i < len(s.data) {
		return s.syntax(i, "trailing data after value")
	}
	return i
}

func isWS(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

func skipWS(b []byte, i int) int {
	for i < len(b) {
		if c := b[i]; c > ' ' || !isWS(c) {
			return i
		}
		i++
	}
	return i
}

func isDigit(c byte) bool { return c-'0' < 10 }

func hasLit(b []byte, i int, lit string) bool {
	return len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit
}

// value validates the JSON value starting at s.data[i] (after optional
// whitespace), nested inside depth open containers. It returns the offset
// just past the value, or -1 once s.fatal is set.
func (s *scanner) value(i, depth int) int {
	data := s.data
	base := len(s.frames)
	var (
		c   byte
		j   int
		esc bool
		bad strProblem
		msg string
	)
value:
	i = skipWS(data, i)
	if i >= len(data) {
		return s.eof()
	}
	c = data[i]
	switch c {
	case '"':
		j, _, bad = scanString(data, i)
		if bad != strOK {
			return s.badString(j, bad)
		}
		i = j
	case '{':
		if depth++; depth > s.maxDepth {
			return s.tooDeep()
		}
		s.frames = append(s.frames, frame{obj: true, keyBase: len(s.keys)})
		i = skipWS(data, i+1)
		if i < len(data) && data[i] == '}' {
			i++
			s.popObject()
			depth--
			goto after
		}
		goto key
	case '[':
		if depth++; depth > s.maxDepth {
			return s.tooDeep()
		}
		s.frames = append(s.frames, frame{})
		i = skipWS(data, i+1)
		if i < len(data) && data[i] == ']' {
			i++
			s.frames = s.frames[:len(s.frames)-1]
			depth--
			goto after
		}
		goto value
	case 't':
		if !hasLit(data, i, "true") {
			return s.syntax(i, "invalid literal")
		}
		i += 4
	case 'f':
		if !hasLit(data, i, "false") {
			return s.syntax(i, "invalid literal")
		}
		i += 5
	case 'n':
		if !hasLit(data, i, "null") {
			return s.syntax(i, "invalid literal")
		}
		i += 4
	default:
		if c != '-' && !isDigit(c) {
			return s.unexpected(i)
		}
		j, msg = scanNumber(data, i)
		if msg != "" {
			return s.syntax(j, msg)
		}
		i = j
	}
after:
	if len(s.frames) == base {
		return i
	}
	i = skipWS(data, i)
	if i >= len(data) {
		return s.eof()
	}
	c = data[i]
	if s.frames[len(s.frames)-1].obj {
		switch c {
		case ',':
			i++
			goto key
		case '}':
			i++
			s.popObject()
			depth--
			goto after
		}
		return s.syntax(i, "expected ',' or '}' after object member, found "+describe(c))
	}
	switch c {
	case ',':
		i++
		goto value
	case ']':
		i++
		s.frames = s.frames[:len(s.frames)-1]
		depth--
		goto after
	}
	return s.syntax(i, "expected ',' or ']' after array element, found "+describe(c))
key:
	i = skipWS(data, i)
	if i >= len(data) {
		return s.eof()
	}
	if data[i] != '"' {
		return s.syntax(i, "expected member name, found "+describe(data[i]))
	}
	j, esc, bad = scanString(data, i)
	if bad != strOK {
		return s.badString(j, bad)
	}
	if s.sem == "" {
		s.addKey(i, data[i:j], esc)
	}
	i = skipWS(data, j)
	if i >= len(data) {
		return s.eof()
	}
	if data[i] != ':' {
		return s.syntax(i, "expected ':' after member name, found "+describe(data[i]))
	}
	i++
	goto value
}

// popObject closes the innermost open object.
func (s *scanner) popObject() {
	n := len(s.frames) - 1
	f := &s.frames[n]
	s.keys = s.keys[:f.keyBase]
	if f.m != nil {
		s.freeMap(f.m)
		f.m = nil
	}
	s.frames = s.frames[:n]
}

// addKey records the member name quoted (a validated string literal at
// data[at:]) in the innermost open object and reports a duplicate as a
// semantic problem.
func (s *scanner) addKey(at int, quoted []byte, esc bool) {
	k := quoted[1 : len(quoted)-1]
	ref := keyRef{off: int32(at + 1), n: int32(len(k))}
	if esc {
		start := len(s.esc)
		s.esc, _ = unescape(s.esc, k)
		k = s.esc[start:]
		ref = keyRef{off: int32(start), n: int32(len(k)), esc: true}
	}
	f := &s.frames[len(s.frames)-1]
	if f.m != nil {
		if _, dup := f.m[string(k)]; dup {
			s.invalidName("duplicate member %q", k)
			return
		}
		f.m[string(k)] = struct{}{}
		return
	}
	keys := s.keys[f.keyBase:]
	for _, o := range keys {
		if o.n == ref.n && string(s.name(o)) == string(k) {
			s.invalidName("duplicate member %q", k)
			return
		}
	}
	if len(keys) < smallObject {
		s.keys = append(s.keys, ref)
		return
	}
	m := s.newMap()
	for _, o := range keys {
		m[string(s.name(o))] = struct{}{}
	}
	m[string(k)] = struct{}{}
	f.m = m
	s.keys = s.keys[:f.keyBase]
}

// strProblem says why a string literal is malformed.
type strProblem uint8

const (
	strOK strProblem = iota
	strUnterminated
	strControl
	strBadUTF8
	strBadEscape
	strSurrogate
)

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// special returns x (eight string bytes) masked to the high bit of every
// byte that is a quote, a backslash, a control character or non-ASCII.
// The lowest flagged byte is always a true hit (borrows only propagate
// upwards), which is all scanString relies on.
func special(x uint64) uint64 {
	q := x ^ (lsb * '"')
	b := x ^ (lsb * '\\')
	return ((x-lsb*0x20)&^x | (q-lsb)&^q | (b-lsb)&^b | x) & msb
}

// scanString validates the string literal starting with the quote at
// data[i]. It returns the offset just past the closing quote and whether
// the literal contains escapes; on failure it returns the offset of the
// problem and its kind.
func scanString(data []byte, i int) (int, bool, strProblem) {
	esc := false
	i++
	for {
		for i+8 <= len(data) {
			if m := special(binary.LittleEndian.Uint64(data[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(data) {
			return i, esc, strUnterminated
		}
		c := data[i]
		switch {
		case c == '"':
			return i + 1, esc, strOK
		case c == '\\':
			esc = true
			if i+1 >= len(data) {
				return i, esc, strUnterminated
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				r := hex4(data, i+2)
				switch {
				case r < 0:
					return i, esc, strBadEscape
				case r < 0xD800 || r >= 0xE000:
					i += 6
				case r >= 0xDC00:
					return i, esc, strSurrogate
				default:
					if len(data)-i < 12 || data[i+6] != '\\' || data[i+7] != 'u' {
						return i, esc, strSurrogate
					}
					r2 := hex4(data, i+8)
					if r2 < 0 {
						return i + 6, esc, strBadEscape
					}
					if r2 < 0xDC00 || r2 >= 0xE000 {
						return i, esc, strSurrogate
					}
					i += 12
				}
			default:
				return i, esc, strBadEscape
			}
		case c < 0x20:
			return i, esc, strControl
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return i, esc, strBadUTF8
			}
			i += size
		}
	}
}

var hexVal = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = int8(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = int8(c - 'a' + 10)
	}
	for c := 'A'; c <= 'F'; c++ {
		t[c] = int8(c - 'A' + 10)
	}
	return t
}()

// hex4 decodes the four hex digits at b[i:], or returns -1.
func hex4(b []byte, i int) int {
	if len(b)-i < 4 || i < 0 {
		return -1
	}
	a, c, d, e := hexVal[b[i]], hexVal[b[i+1]], hexVal[b[i+2]], hexVal[b[i+3]]
	if a|c|d|e < 0 {
		return -1
	}
	return int(a)<<12 | int(c)<<8 | int(d)<<4 | int(e)
}

// scanNumber validates the number starting at data[i] (a '-' or a digit).
// It returns the offset past it, or the offset of the problem and a
// description.
func scanNumber(data []byte, i int) (int, string) {
	if data[i] == '-' {
		i++
	}
	if i >= len(data) || !isDigit(data[i]) {
		return i, "invalid number: expected digit"
	}
	if data[i] == '0' {
		i++
		if i < len(data) && isDigit(data[i]) {
			return i, "invalid number: leading zero"
		}
	} else {
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	if i < len(data) && data[i] == '.' {
		i++
		if i >= len(data) || !isDigit(data[i]) {
			return i, "invalid number: expected digit after decimal point"
		}
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	if i < len(data) && data[i]|0x20 == 'e' {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !isDigit(data[i]) {
			return i, "invalid number: expected digit in exponent"
		}
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	return i, ""
}

// AppendUnescaped appends the decoded content of a JSON string literal's
// body (without the quotes) to dst, and reports whether the body was
// valid (it rejects what the codec rejects).
func AppendUnescaped(dst, body []byte) ([]byte, bool) { return unescape(dst, body) }

// unescape appends the decoded content of a string literal body (without
// the quotes) to dst. It rejects everything scanString rejects.
func unescape(dst, body []byte) ([]byte, bool) {
	for i := 0; i < len(body); {
		c := body[i]
		switch {
		case c == '\\':
			if i+1 >= len(body) {
				return dst, false
			}
			switch e := body[i+1]; e {
			case '"', '\\', '/':
				dst = append(dst, e)
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				r := hex4(body, i+2)
				switch {
				case r < 0:
					return dst, false
				case r < 0xD800 || r >= 0xE000:
				case r >= 0xDC00:
					return dst, false
				default:
					if len(body)-i < 12 || body[i+6] != '\\' || body[i+7] != 'u' {
						return dst, false
					}
					r2 := hex4(body, i+8)
					if r2 < 0xDC00 || r2 >= 0xE000 {
						return dst, false
					}
					r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
					i += 6
				}
				dst = utf8.AppendRune(dst, rune(r))
				i += 6
				continue
			default:
				return dst, false
			}
			i += 2
		case c == '"' || c < 0x20:
			return dst, false
		case c < utf8.RuneSelf:
			j := i + 1
			for j < len(body) && body[j] >= 0x20 && body[j] < utf8.RuneSelf && body[j] != '"' && body[j] != '\\' {
				j++
			}
			dst = append(dst, body[i:j]...)
			i = j
		default:
			r, size := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && size == 1 {
				return dst, false
			}
			dst = append(dst, body[i:i+size]...)
			i += size
		}
	}
	return dst, true
}
