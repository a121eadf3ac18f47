package jsonrpc

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// The helpers in this file work on raw JSON values that have already been
// validated (by Decode, Valid, Encode or Quote). They walk the bytes without
// re-validating them; on malformed input they fail (returning false, nil or
// an error as documented) but never panic.

// skipString returns the offset past the string literal whose opening
// quote is at b[i], or -1.
//
// It is linear in the length of the string: each byte is looked at by at
// most one search for a quote and one search for a backslash.
func skipString(b []byte, i int) int {
	i++
	for {
		q := bytes.IndexByte(b[i:], '"')
		if q < 0 {
			return -1
		}
		q += i
		for {
			bs := bytes.IndexByte(b[i:q], '\\')
			if bs < 0 {
				return q + 1
			}
			i += bs + 2 // skip the backslash and the byte it escapes
			if i > q {
				break // the quote at q was escaped; look for the next one
			}
		}
		if i >= len(b) {
			return -1
		}
	}
}

// skipRaw returns the offset past the value starting at b[i] (no leading
// whitespace), or -1.
func skipRaw(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				if i = skipString(b, i); i < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return -1
	}
	j := i
	for j < len(b) {
		c := b[j]
		if isDigit(c) || c >= 'a' && c <= 'z' || c == '-' || c == '+' || c == '.' || c == 'E' {
			j++
			continue
		}
		break
	}
	if j == i {
		return -1
	}
	return j
}

// objIter walks the members of a raw object.
type objIter struct {
	b      []byte
	i      int  // where to continue
	open   int  // offset just past '{'
	n      int  // members seen
	bad    bool // the object is malformed
	ks, ke int  // the member's name literal, quotes included
	vs, ve int  // the member's value
}

// init starts the walk; it reports false if b is not an object.
func (it *objIter) init(b []byte) bool {
	it.b = b
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	it.i, it.open = i+1, i+1
	return true
}

// next advances to the next member; it returns false at the end of the
// object or when the object is malformed (then bad is set).
func (it *objIter) next() bool {
	b := it.b
	i := skipWS(b, it.i)
	if i >= len(b) {
		it.bad = true
		return false
	}
	if b[i] == '}' {
		it.i = i + 1
		return false
	}
	if it.n > 0 {
		if b[i] != ',' {
			it.bad = true
			return false
		}
		i = skipWS(b, i+1)
	}
	if i >= len(b) || b[i] != '"' {
		it.bad = true
		return false
	}
	ke := skipString(b, i)
	if ke < 0 {
		it.bad = true
		return false
	}
	it.ks, it.ke = i, ke
	i = skipWS(b, ke)
	if i >= len(b) || b[i] != ':' {
		it.bad = true
		return false
	}
	i = skipWS(b, i+1)
	ve := skipRaw(b, i)
	if ve < 0 {
		it.bad = true
		return false
	}
	it.vs, it.ve, it.i = i, ve, ve
	it.n++
	return true
}

// keyIs reports whether the current member's unescaped name is key.
func (it *objIter) keyIs(key string) bool {
	quoted := it.b[it.ks:it.ke]
	body := quoted[1 : len(quoted)-1]
	if bytes.IndexByte(body, '\\') < 0 {
		return string(body) == key
	}
	k, ok := unescape(make([]byte, 0, len(body)), body)
	return ok && string(k) == key
}

// Member returns the raw value of a top-level member of an object.
// Names are compared after unescaping. It reports false if the member is
// absent or obj is not an object. The result aliases obj, with its
// capacity clipped to its length.
func Member(obj json.RawMessage, key string) (json.RawMessage, bool) {
	var it objIter
	if !it.init(obj) {
		return nil, false
	}
	for it.next() {
		if it.keyIs(key) {
			return obj[it.vs:it.ve:it.ve], true
		}
	}
	return nil, false
}

// isEmptyObj reports whether obj stands for "no object yet": empty,
// whitespace only, or null.
func isEmptyObj(obj []byte) bool {
	i := skipWS(obj, 0)
	if i == len(obj) {
		return true
	}
	return hasLit(obj, i, "null") && skipWS(obj, i+4) == len(obj)
}

// SetMember returns a NEW slice (never mutates obj): replaces the member's value in place keeping member order and all other bytes verbatim, or appends the member at the end; nil/empty obj -> {"key":val}
//
// A whitespace-only or null obj counts as empty. An empty val is written as
// null. If obj is not an object, SetMember returns nil. Should obj hold the
// name more than once (it cannot if validated), the first is replaced and
// the others are removed.
func SetMember(obj json.RawMessage, key string, val json.RawMessage) json.RawMessage {
	if len(val) == 0 {
		val = json.RawMessage("null")
	}
	if isEmptyObj(obj) {
		out := make([]byte, 0, len(key)+len(val)+5)
		out = append(out, '{')
		out = appendQuote(out, key)
		out = append(out, ':')
		out = append(out, val...)
		return append(out, '}')
	}
	var it objIter
	if !it.init(obj) {
		return nil
	}
	out := make([]byte, 0, len(obj)+len(key)+len(val)+8)
	copied, prevEnd, found := 0, -1, false
	for it.next() {
		if !it.keyIs(key) {
			prevEnd = it.ve
			continue
		}
		if !found {
			out = append(out, obj[copied:it.vs]...)
			out = append(out, val...)
			copied, prevEnd, found = it.ve, it.ve, true
			continue
		}
		// A duplicate: drop it together with the comma before it. (When the
		// previous member was dropped too, copied is already past prevEnd.)
		if copied < prevEnd {
			out = append(out, obj[copied:prevEnd]...)
		}
		copied = it.ve
	}
	if it.bad {
		return nil
	}
	if !found {
		at := prevEnd
		if at < 0 {
			at = it.open
		}
		out = append(out, obj[copied:at]...)
		if prevEnd >= 0 {
			out = append(out, ',')
		}
		out = appendQuote(out, key)
		out = append(out, ':')
		out = append(out, val...)
		copied = at
	}
	return append(out, obj[copied:]...)
}

// DeleteMember returns a new slice without the member.
//
// All other bytes are kept verbatim; the comma that separated the member
// from its neighbour is removed with it. Every member with the name is
// removed. If obj has no such member, the result is a copy of obj. If obj is
// not an object (including nil), DeleteMember returns nil.
func DeleteMember(obj json.RawMessage, key string) json.RawMessage {
	var it objIter
	if !it.init(obj) {
		return nil
	}
	out := make([]byte, 0, len(obj))
	copied, prevEnd, pending, lastEnd := 0, -1, -1, -1
	for it.next() {
		lastEnd = it.ve
		if it.keyIs(key) {
			if prevEnd >= 0 {
				// Remove from the end of the previous kept member (copied
				// is already past it if the previous member was removed).
				if copied < prevEnd {
					out = append(out, obj[copied:prevEnd]...)
				}
				copied = it.ve
			} else if pending < 0 {
				// First member: remove up to the next kept member.
				pending = it.ks
			}
			continue
		}
		if pending >= 0 {
			out = append(out, obj[copied:pending]...)
			copied, pending = it.ks, -1
		}
		prevEnd = it.ve
	}
	if it.bad {
		return nil
	}
	if pending >= 0 {
		out = append(out, obj[copied:pending]...)
		copied = lastEnd
	}
	return append(out, obj[copied:]...)
}

// EachMember calls fn for each top-level member of the object obj, in order; fn returns false to stop.
// The key is unescaped; val aliases obj. It returns a *DecodeError if obj
// is not a well-formed object.
func EachMember(obj json.RawMessage, fn func(key string, val json.RawMessage) bool) error {
	var it objIter
	if !it.init(obj) {
		return notA("object")
	}
	for it.next() {
		body := obj[it.ks+1 : it.ke-1]
		var key string
		if bytes.IndexByte(body, '\\') < 0 {
			key = string(body)
		} else {
			k, ok := unescape(make([]byte, 0, len(body)), body)
			if !ok {
				return malformed(it.ks)
			}
			key = string(k)
		}
		if !fn(key, obj[it.vs:it.ve:it.ve]) {
			return nil
		}
	}
	if it.bad {
		return malformed(it.i)
	}
	return nil
}

// EachElement calls fn for each element of the array arr, in order; fn
// returns false to stop. val aliases arr. It returns a *DecodeError if arr
// is not a well-formed array.
func EachElement(arr json.RawMessage, fn func(i int, val json.RawMessage) bool) error {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return notA("array")
	}
	i = skipWS(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return nil
	}
	for n := 0; ; n++ {
		end := skipRaw(arr, i)
		if end < 0 {
			return malformed(i)
		}
		if !fn(n, arr[i:end:end]) {
			return nil
		}
		i = skipWS(arr, end)
		if i >= len(arr) {
			return malformed(i)
		}
		switch arr[i] {
		case ']':
			return nil
		case ',':
			i = skipWS(arr, i+1)
		default:
			return malformed(i)
		}
	}
}

func notA(what string) *DecodeError {
	return &DecodeError{Code: CodeParseError, Message: "value is not an " + what}
}

func malformed(i int) *DecodeError {
	return &DecodeError{Code: CodeParseError, Message: "malformed JSON at offset " + strconv.Itoa(i)}
}

// Unquote decodes a JSON string literal (handles all escapes, surrogate
// pairs). It reports false if raw is not exactly one well-formed string
// literal (no surrounding whitespace): invalid UTF-8, raw control
// characters, bad escapes and unpaired surrogates are refused, as Decode
// refuses them.
func Unquote(raw json.RawMessage) (string, bool) {
	n := len(raw)
	if n < 2 || raw[0] != '"' || raw[n-1] != '"' {
		return "", false
	}
	body := raw[1 : n-1]
	if plainASCII(body) {
		return string(body), true
	}
	b, ok := unescape(make([]byte, 0, len(body)), body)
	if !ok {
		return "", false
	}
	return string(b), true
}

// plainASCII reports whether b is printable-or-space ASCII with no quote or
// backslash, so that it is its own string body.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// IDKey returns a map key for an id that keeps string and number ids distinct
// ("s:"+unquoted string / "n:"+number literal). Equal ids written differently (e.g. "\u0061" vs "a") give the same key.
//
// Surrounding whitespace is ignored and -0 is the same id as 0. IDKey
// returns "" for anything that is not a valid id (nil, null, a fraction,
// any other value); callers must not use "" as a key.
func IDKey(id json.RawMessage) string {
	i, j := skipWS(id, 0), len(id)
	for j > i && isWS(id[j-1]) {
		j--
	}
	id = id[i:j]
	if len(id) == 0 {
		return ""
	}
	if id[0] == '"' {
		s, ok := Unquote(id)
		if !ok {
			return ""
		}
		return "s:" + s
	}
	digits := id
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 1 && digits[0] == '0' {
		return ""
	}
	for _, c := range digits {
		if !isDigit(c) {
			return ""
		}
	}
	if string(digits) == "0" {
		return "n:0"
	}
	return "n:" + string(id)
}

// FoldedKeys looks through v, any JSON value, for an object with two
// member names that differ only in case ("arguments" and "Arguments"),
// and returns the first such pair. The strict codec keeps both, but many
// backends (Go's encoding/json among them) match names without regard to
// case, so such a message could mean one thing to the gateway's stages and
// another to the backend. It takes time linear in the size of v.
func FoldedKeys(v json.RawMessage) (a, b string, found bool) {
	i := skipWS(v, 0)
	if i >= len(v) {
		return "", "", false
	}
	switch v[i] {
	case '{':
		var seen map[string]string // folded name → name
		EachMember(v, func(key string, val json.RawMessage) bool {
			if seen == nil {
				seen = make(map[string]string, 8)
			}
			f := foldName(key)
			if prev, dup := seen[f]; dup {
				a, b, found = prev, key, true
				return false
			}
			seen[f] = key
			a, b, found = FoldedKeys(val)
			return !found
		})
	case '[':
		EachElement(v, func(_ int, val json.RawMessage) bool {
			a, b, found = FoldedKeys(val)
			return !found
		})
	}
	return a, b, found
}

// foldName maps names that match without regard to case (as Unicode
// simple folding, and Go's encoding/json, match them) to one string.
func foldName(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 {
			ascii = false
			break
		} else if 'A' <= c && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	if ascii {
		return s
	}
	return strings.ToLower(strings.ToUpper(s)) // the Kelvin sign and long s fold too
}
