package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// DefaultPageSize is how many entries one page of an aggregated list holds.
const DefaultPageSize = 1000

// cursors issues and checks the gateway's own list cursors. A cursor is
// an offset into the aggregated list, bound to the session and the list,
// and signed with a key that lives only in this gateway process: a client
// cannot forge one, move it to another session or list, or tamper with it.
type cursors struct{ key []byte }

func newCursors() cursors {
	key := make([]byte, 32)
	rand.Read(key)
	return cursors{key: key}
}

func (c cursors) mac(payload string) string {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// issue returns the cursor for the page starting at offset.
func (c cursors) issue(session, kind string, offset int) string {
	payload := kind + "." + strconv.Itoa(offset)
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + c.mac(session+"\x00"+payload)
}

var errBadCursor = errors.New("invalid cursor")

// open checks a cursor and returns its offset.
func (c cursors) open(cursor, session, kind string) (int, error) {
	enc, sig, ok := strings.Cut(cursor, ".")
	if !ok {
		return 0, errBadCursor
	}
	raw, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return 0, errBadCursor
	}
	payload := string(raw)
	if !hmac.Equal([]byte(sig), []byte(c.mac(session+"\x00"+payload))) {
		return 0, errBadCursor
	}
	k, off, ok := strings.Cut(payload, ".")
	n, err := strconv.Atoi(off)
	if !ok || k != kind || err != nil || n < 0 {
		return 0, errBadCursor
	}
	return n, nil
}
