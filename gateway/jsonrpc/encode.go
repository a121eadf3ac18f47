package jsonrpc

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Encode returns the compact wire form: {"jsonrpc":"2.0","id":..,"method":..,"params":..} / result / error, in that member order,
// raw fields copied verbatim. AppendEncode appends it to b (for pooled buffers).
func (m *Message) Encode() []byte {
	n := 48 + len(m.ID) + len(m.Method) + len(m.Params) + len(m.Result)
	if m.Error != nil {
		n += 48 + len(m.Error.Message) + len(m.Error.Data)
	}
	return m.AppendEncode(make([]byte, 0, n))
}

// AppendEncode appends the wire form of m (see [Message.Encode]) to b.
//
// A message with a method is written as a request or notification: id
// (when present), method and params (when present); Result and Error are
// not written. A message without a method is written as a response: id
// (null when absent), then error if set, else result (null when absent);
// Params is not written. Raw fields are copied verbatim and must hold
// valid JSON.
func (m *Message) AppendEncode(b []byte) []byte {
	b = append(b, `{"jsonrpc":"2.0"`...)
	if len(m.ID) > 0 {
		b = append(b, `,"id":`...)
		b = append(b, m.ID...)
	} else if m.Method == "" {
		b = append(b, `,"id":null`...)
	}
	if m.Method != "" {
		b = append(b, `,"method":`...)
		b = appendQuote(b, m.Method)
		if len(m.Params) > 0 {
			b = append(b, `,"params":`...)
			b = append(b, m.Params...)
		}
		return append(b, '}')
	}
	if e := m.Error; e != nil {
		b = append(b, `,"error":{"code":`...)
		b = strconv.AppendInt(b, int64(e.Code), 10)
		b = append(b, `,"message":`...)
		b = appendQuote(b, e.Message)
		if len(e.Data) > 0 {
			b = append(b, `,"data":`...)
			b = append(b, e.Data...)
		}
		return append(b, "}}"...)
	}
	b = append(b, `,"result":`...)
	if len(m.Result) > 0 {
		b = append(b, m.Result...)
	} else {
		b = append(b, "null"...)
	}
	return append(b, '}')
}

// Quote returns s as a JSON string literal, escaping like encoding/json
// without HTML escaping: '"', '\\' and control characters are escaped (\b,
// \f, \n, \r, \t or \u00XX), U+2028 and U+2029 are escaped, and invalid
// UTF-8 is replaced with U+FFFD.
func Quote(s string) json.RawMessage {
	return appendQuote(make([]byte, 0, len(s)+2), s)
}

// AppendQuote appends s as a JSON string literal to dst, as Quote writes it.
func AppendQuote(dst []byte, s string) []byte { return appendQuote(dst, s) }

// safeASCII[c] is true for the ASCII bytes Quote copies unescaped.
var safeASCII = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

const hexDigits = "0123456789abcdef"

func appendQuote(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if safeASCII[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
