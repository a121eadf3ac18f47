package frontend

import (
	"bytes"
	"sync"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/proxy"
)

// batchVersion is the one protocol version on which clients may send
// JSON-RPC batches (2025-03-26 requires servers to accept them; later
// versions removed them).
const batchVersion = "2025-03-26"

// serveBatch serves a JSON-RPC batch element by element, each through the
// session and so through the pipeline on its own: a batch is never a way
// around a stage. It returns the answers as one JSON array, or nil when
// the batch held no request. A batch that cannot be decoded at all gets a
// single error instead.
func serveBatch(s *proxy.Session, data []byte, lim jsonrpc.Limits) (answers []byte, frameErr *jsonrpc.Message) {
	msgs, errs, err := jsonrpc.DecodeBatch(data, lim)
	if err != nil {
		e := err.(*jsonrpc.DecodeError).RPCError()
		return nil, jsonrpc.NewError(nil, e.Code, e.Message, e.Data)
	}
	out := make([]*jsonrpc.Message, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		switch {
		case m == nil:
			e := errs[i].RPCError()
			out[i] = jsonrpc.NewError(errs[i].ID, e.Code, e.Message, e.Data)
		case m.IsRequest() && m.Method == "initialize":
			out[i] = jsonrpc.NewError(m.ID, jsonrpc.CodeInvalidRequest, "initialize may not be part of a batch", nil)
		case m.IsRequest():
			wg.Go(func() { out[i] = s.Serve(m) })
		default:
			s.HandleMessage(m)
		}
	}
	wg.Wait()
	var b bytes.Buffer
	for _, m := range out {
		if m == nil {
			continue
		}
		if b.Len() == 0 {
			b.WriteByte('[')
		} else {
			b.WriteByte(',')
		}
		b.Write(m.Encode())
	}
	if b.Len() == 0 {
		return nil, nil
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}
