// Package frontend serves client transports: the gateway as a stdio MCP
// server (what Claude Desktop launches), as a Streamable HTTP MCP server,
// and over the legacy HTTP+SSE transport for 2024-11-05 clients. All feed
// the same proxy sessions and pipeline.
package frontend

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/proxy"
	"github.com/sallyport/sallyport/gateway/wire"
)

// stdioSink writes each message as one line. Only MCP messages are ever
// written to the client's stdout.
type stdioSink struct {
	mu  sync.Mutex
	w   *bufio.Writer
	buf []byte
	err error
	log *slog.Logger
}

func (s *stdioSink) Send(msg *jsonrpc.Message, _ json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.buf = wire.AppendLine(s.buf[:0], msg)
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = err
	} else if err := s.w.Flush(); err != nil {
		s.err = err
	}
	if s.err != nil {
		s.log.Warn("writing to the client failed", slog.String("err", s.err.Error()))
	}
	if cap(s.buf) > 1<<20 {
		s.buf = nil
	}
}

// writeLine writes raw JSON (a batch answer, compact) as one line.
func (s *stdioSink) writeLine(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	if bytes.IndexByte(b, '\n') >= 0 || bytes.IndexByte(b, '\r') >= 0 {
		var c bytes.Buffer
		if json.Compact(&c, b) == nil {
			b = c.Bytes()
		}
	}
	if _, err := s.w.Write(append(b, '\n')); err != nil {
		s.err = err
	} else if err := s.w.Flush(); err != nil {
		s.err = err
	}
}

// ServeStdio serves one client session over in/out until in ends or ctx
// is done; then it closes the session, which stops its backends.
func ServeStdio(ctx context.Context, g *proxy.Gateway, p gateway.Principal, in io.Reader, out io.Writer, lim jsonrpc.Limits, log *slog.Logger) error {
	sink := &stdioSink{w: bufio.NewWriterSize(out, 64<<10), log: log}
	s, err := g.NewSession(proxy.NewSessionID(), "stdio", p, sink)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		s.Close(cctx)
	}()
	if lim.MaxBytes == 0 {
		lim.MaxBytes = jsonrpc.DefaultMaxBytes
	}
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() {
		lr := wire.NewLineReader(in, lim.MaxBytes)
		for {
			line, err := lr.ReadLine()
			if errors.Is(err, wire.ErrTooLong) {
				sink.Send(jsonrpc.NewError(nil, jsonrpc.CodeInvalidRequest, err.Error(), nil), nil)
				continue
			}
			if err != nil {
				readErr <- err
				return
			}
			select {
			case lines <- line:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case line := <-lines:
			if jsonrpc.IsBatch(line) && s.ProtocolVersion() == batchVersion {
				go func() {
					answers, frameErr := serveBatch(s, line, lim)
					if frameErr != nil {
						sink.Send(frameErr, nil)
					} else if answers != nil {
						sink.writeLine(answers)
					}
				}()
				continue
			}
			if msg := decodeClientFrame(line, lim, s.ProtocolVersion(), sink); msg != nil {
				s.HandleMessage(msg)
			}
		}
	}
}

// decodeClientFrame decodes one frame from a client. A frame that is not a
// single valid message is answered with the JSON-RPC error it deserves and
// nil is returned. Empty lines are ignored.
func decodeClientFrame(frame []byte, lim jsonrpc.Limits, version string, sink proxy.Sink) *jsonrpc.Message {
	if len(frame) == 0 || len(trimSpace(frame)) == 0 {
		return nil
	}
	if jsonrpc.IsBatch(frame) {
		sink.Send(jsonrpc.NewError(nil, jsonrpc.CodeInvalidRequest, batchRefusal(version), nil), nil)
		return nil
	}
	msg, err := jsonrpc.Decode(frame, lim)
	if err != nil {
		var de *jsonrpc.DecodeError
		if errors.As(err, &de) {
			e := de.RPCError()
			sink.Send(jsonrpc.NewError(de.ID, e.Code, e.Message, e.Data), nil)
		}
		return nil
	}
	return msg
}

func batchRefusal(version string) string {
	if version == "" {
		version = "this session's protocol version"
	}
	return "JSON-RPC batches are not accepted on " + version
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	return b
}
