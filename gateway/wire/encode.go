package wire

import (
	"bytes"
	"encoding/json"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// AppendLine appends m as one newline-terminated line to dst. Raw fields
// are forwarded as received, and a peer may have sent them pretty-printed;
// whitespace between tokens is then removed so the message cannot span
// lines. (Newlines inside strings are always escaped: the codec refuses
// raw ones.)
func AppendLine(dst []byte, m *jsonrpc.Message) []byte {
	start := len(dst)
	dst = m.AppendEncode(dst)
	if bytes.IndexByte(dst[start:], '\n') >= 0 || bytes.IndexByte(dst[start:], '\r') >= 0 {
		var c bytes.Buffer
		if err := json.Compact(&c, dst[start:]); err == nil {
			dst = append(dst[:start], c.Bytes()...)
		}
	}
	return append(dst, '\n')
}
