package dlp

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"unicode/utf8"
)

// Shortest encoded runs worth decoding: 24 base64 characters carry 18
// bytes, less than any secret the detectors know; 32 hex carry 16.
const (
	minBase64Run = 24
	minHexRun    = 32
)

// encodedRun decodes text[s:e], a run of base64 or hex characters, and
// scans what it decodes to when that is text. Matches inside are
// reported on the whole run.
func (st *state) encodedRun(text []byte, s, e, depth int) {
	if e-s < minBase64Run || depth >= st.s.maxDepth || st.err != nil {
		return
	}
	r := text[s:e]
	hexOnly, url, std := true, false, false
	for _, c := range r {
		if !isHex[c] {
			hexOnly = false
		}
		switch c {
		case '-', '_':
			url = true
		case '+', '/':
			std = true
		}
	}
	if url && std {
		return
	}
	// A look at the first bytes first: a random token, a hash or an
	// image is not text, and is dismissed before it is decoded whole.
	var head [12]byte
	switch {
	case hexOnly && len(r) >= minHexRun && len(r)%2 == 0:
		if _, err := hex.Decode(head[:], r[:24]); err != nil || !textualHead(head[:]) {
			return
		}
	case url:
		if _, err := base64.RawURLEncoding.Decode(head[:], r[:16]); err != nil || !textualHead(head[:]) {
			return
		}
	default:
		if _, err := base64.RawStdEncoding.Decode(head[:], r[:16]); err != nil || !textualHead(head[:]) {
			return
		}
	}
	var enc string
	buf := st.buffer(depth, len(r))
	switch {
	case hexOnly && len(r) >= minHexRun && len(r)%2 == 0:
		if !st.spend(len(r) / 2) {
			return
		}
		n, err := hex.Decode(buf[:len(r)/2], r)
		if err != nil {
			return
		}
		buf, enc = buf[:n], "hex"
	default:
		for len(r) > 0 && r[len(r)-1] == '=' {
			r = r[:len(r)-1]
		}
		if len(r)%4 == 1 {
			r = r[:len(r)-1]
		}
		codec := base64.RawStdEncoding
		if url {
			codec = base64.RawURLEncoding
		}
		if !st.spend(codec.DecodedLen(len(r))) {
			return
		}
		n, err := codec.Decode(buf[:codec.DecodedLen(len(r))], r)
		if err != nil {
			return
		}
		buf, enc = buf[:n], "base64"
	}
	if !textual(buf) {
		return
	}
	st.decoded[depth] = buf[:0]
	st.nested(buf, depth, enc, func(m Match) (int, int) { return s, e - s })
}

// spend takes n bytes from the scan's decoding budget.
func (st *state) spend(n int) bool {
	st.budget -= n
	if st.budget < 0 {
		if st.err == nil {
			st.err = fmt.Errorf("%w: more than %d bytes decoded", ErrLimit, st.s.maxDecoded)
		}
		return false
	}
	return true
}

// buffer returns the decoding buffer of depth, with room for need bytes.
func (st *state) buffer(depth, need int) []byte {
	for len(st.decoded) <= depth {
		st.decoded = append(st.decoded, nil)
	}
	if cap(st.decoded[depth]) < need {
		st.decoded[depth] = make([]byte, 0, max(need, 4096))
	}
	return st.decoded[depth][:need]
}

// nested scans decoded (the decoding of a run at depth) and reports its
// matches where span says, with enc prepended to their encoding.
func (st *state) nested(decoded []byte, depth int, enc string, span func(Match) (int, int)) {
	key := st.key
	st.key = nil
	inner := st.scan(decoded, depth+1)
	st.key = key
	for _, m := range inner {
		m.Offset, m.Length = span(m)
		if m.Length == 0 {
			continue
		}
		if m.Encoding == "" {
			m.Encoding = enc
		} else {
			m.Encoding = enc + "+" + m.Encoding
		}
		st.out = append(st.out, m)
	}
}

// textualHead reports whether b, the first bytes of a decoding, can
// start text: no control characters, and UTF-8 that is valid but perhaps
// for a sequence cut at the end.
func textualHead(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return len(b)-i < 4 && !utf8.FullRune(b[i:]) // cut at the end
		}
		i += size
	}
	return true
}

// textual reports whether b decodes to text: valid UTF-8 without control
// characters other than tab, newline and carriage return.
func textual(b []byte) bool {
	if len(b) < 8 || !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return false
		}
	}
	return true
}

// urlDecoded decodes the %XX escapes of the run of URL-ish text around
// the escape at text[at] (up to whitespace, quotes or angle brackets) and
// scans the result. A match is reported on its span in text, and only
// when that span held an escape (the rest is found in text itself). It
// returns the end of the run.
func (st *state) urlDecoded(text []byte, at, depth int) int {
	s, e := at, at
	for s > 0 && at-s < 4096 && urlish(text[s-1]) {
		s--
	}
	for e < len(text) && e-at < 4096 && urlish(text[e]) {
		e++
	}
	if depth >= st.s.maxDepth || st.err != nil || !st.spend(e-s) {
		return e
	}
	run := text[s:e]
	buf := st.buffer(depth, len(run))[:0]
	pos := make([]int32, 0, len(run))
	for i := 0; i < len(run); i++ {
		c := run[i]
		if c == '%' && i+2 < len(run) && isHex[run[i+1]] && isHex[run[i+2]] {
			buf = append(buf, unhex(run[i+1])<<4|unhex(run[i+2]))
			pos = append(pos, int32(i))
			i += 2
			continue
		}
		buf = append(buf, c)
		pos = append(pos, int32(i))
	}
	st.decoded[depth] = buf[:0]
	st.nested(buf, depth, "url", func(m Match) (int, int) {
		// The span runs to where the next decoded byte came from: a
		// '%' ending the match is an escape only if it was decoded.
		ms, me := int(pos[m.Offset]), len(run)
		if k := m.Offset + m.Length; k < len(pos) {
			me = int(pos[k])
		}
		return s + ms, me - ms // a match found in the clear too is dropped by resolve
	})
	return e
}

// urlish reports whether c can be part of a URL-encoded run.
func urlish(c byte) bool {
	return c > ' ' && c < 0x7f && c != '"' && c != '\'' && c != '<' && c != '>' && c != '`'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
