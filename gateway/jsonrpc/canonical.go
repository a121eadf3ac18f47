package jsonrpc

import (
	"encoding/json"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxCanonicalDepth bounds AppendCanonical's recursion; values that came
// through Decode are far shallower (Limits.MaxDepth).
const maxCanonicalDepth = 1000

// Canonical returns the canonical form of the JSON value raw: object
// members sorted by key (by code point), no insignificant whitespace,
// strings written the way Quote writes them, numbers and literals as they
// came. Two values that differ only in member order, whitespace or string
// escaping have the same canonical form, so it can be hashed, compared
// and bound to an approval. It returns a *DecodeError for malformed JSON
// or an object with duplicate keys.
func Canonical(raw json.RawMessage) ([]byte, error) {
	return AppendCanonical(make([]byte, 0, len(raw)), raw)
}

// AppendCanonical appends the canonical form of raw to dst; see Canonical.
func AppendCanonical(dst []byte, raw json.RawMessage) ([]byte, error) {
	return appendCanonical(dst, raw, 0)
}

type member struct {
	key string
	val json.RawMessage
}

func appendCanonical(dst []byte, raw json.RawMessage, depth int) ([]byte, error) {
	if depth > maxCanonicalDepth {
		return dst, &DecodeError{Code: CodeInvalidRequest, Message: "value nested too deeply"}
	}
	i := skipWS(raw, 0)
	if i >= len(raw) {
		return dst, notA("value")
	}
	var err error
	switch raw[i] {
	case '{':
		var ms []member
		valid := true
		if e := EachMember(raw, func(k string, v json.RawMessage) bool {
			valid = utf8.ValidString(k)
			ms = append(ms, member{k, v})
			return valid
		}); e != nil {
			return dst, e
		}
		if !valid {
			return dst, &DecodeError{Code: CodeParseError, Message: "invalid UTF-8 in a key"}
		}
		slices.SortFunc(ms, func(a, b member) int { return strings.Compare(a.key, b.key) })
		dst = append(dst, '{')
		for j, m := range ms {
			if j > 0 {
				if ms[j-1].key == m.key {
					return dst, &DecodeError{Code: CodeParseError, Message: "duplicate key " + string(Quote(m.key))}
				}
				dst = append(dst, ',')
			}
			dst = appendQuote(dst, m.key)
			dst = append(dst, ':')
			if dst, err = appendCanonical(dst, m.val, depth+1); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case '[':
		dst = append(dst, '[')
		if e := EachElement(raw, func(j int, v json.RawMessage) bool {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst, err = appendCanonical(dst, v, depth+1)
			return err == nil
		}); e != nil {
			return dst, e
		}
		if err != nil {
			return dst, err
		}
		return append(dst, ']'), nil
	case '"':
		end := skipRaw(raw, i)
		if end < 0 || skipWS(raw, end) != len(raw) {
			return dst, malformed(i)
		}
		s, ok := Unquote(raw[i:end])
		if !ok {
			return dst, malformed(i)
		}
		return appendQuote(dst, s), nil
	default:
		end := skipRaw(raw, i)
		if end < 0 || skipWS(raw, end) != len(raw) {
			return dst, malformed(i)
		}
		if !json.Valid(raw[i:end]) {
			return dst, malformed(i)
		}
		return append(dst, raw[i:end]...), nil
	}
}
