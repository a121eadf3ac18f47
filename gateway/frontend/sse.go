package frontend

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/proxy"
	"github.com/sallyport/sallyport/gateway/wire"
)

const (
	// sseQueueSize bounds the messages queued for one legacy SSE stream.
	sseQueueSize = 1024
	// sseWriteTimeout bounds writing one event to a legacy SSE stream, so
	// a client that stops reading cannot hold its session open forever.
	sseWriteTimeout = 60 * time.Second
	// sseMessagePath is where legacy SSE clients POST their messages.
	sseMessagePath = "/message"
)

// legacySSE serves the HTTP+SSE transport of MCP 2024-11-05 for clients
// that predate Streamable HTTP. GET /sse opens a session bound to the
// caller's principal and its event stream; the stream's first event names
// the URL the client POSTs its messages to, and every message for the
// client follows on the stream. The session lives exactly as long as the
// stream.
//
// The key in the POST URL is not the proxy session's id but a second
// 128-bit random value known only to the client and this table: the id
// that logs and audit records carry cannot address the session, and the
// key, which travels in a query string, is never logged.
type legacySSE struct {
	h *HTTP

	mu       sync.Mutex
	sessions map[string]*sseSession // by endpoint key
}

func newLegacySSE(h *HTTP) *legacySSE {
	return &legacySSE{h: h, sessions: map[string]*sseSession{}}
}

// errTooManySessions refuses a session beyond http.max_sessions.
var errTooManySessions = errors.New("too many sessions")

// open allocates a session for principal p. Legacy SSE sessions count
// toward http.max_sessions together with the Streamable HTTP ones.
func (l *legacySSE) open(p gateway.Principal) (*sseSession, error) {
	h := l.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return nil, errors.New("gateway is shutting down")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if h.g.Sessions() >= h.cfg.HTTP.MaxSessions {
		return nil, errTooManySessions
	}
	ss := newSSESession(sseQueueSize)
	s, err := h.g.NewSession(proxy.NewSessionID(), "sse", p, ss)
	if err != nil {
		return nil, err
	}
	ss.s = s
	ss.key = proxy.NewSessionID()
	for l.sessions[ss.key] != nil {
		ss.key = proxy.NewSessionID()
	}
	l.sessions[ss.key] = ss
	return ss, nil
}

// end forgets the session, so its endpoint answers 404 from now on, and
// closes it, which stops its backends.
func (l *legacySSE) end(ss *sseSession) {
	ss.ended.Store(true)
	l.mu.Lock()
	delete(l.sessions, ss.key)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	ss.s.Close(ctx)
}

// lookup returns the session named by the sessionId query parameter if it
// exists and is bound to the caller's principal; otherwise it answers and
// returns nil. A session of another principal is answered exactly like an
// unknown one.
func (l *legacySSE) lookup(w http.ResponseWriter, r *http.Request) *sseSession {
	key := r.URL.Query().Get("sessionId")
	if key == "" {
		httpError(w, http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "sessionId query parameter required")
		return nil
	}
	l.mu.Lock()
	ss := l.sessions[key]
	l.mu.Unlock()
	if ss == nil || !ss.s.Principal().Equal(principalOf(r)) {
		httpError(w, http.StatusNotFound, jsonrpc.CodeInvalidRequest, "session not found")
		return nil
	}
	return ss
}

// get opens a session and streams its messages until the client goes
// away, the session cannot keep up, or the gateway shuts down; then the
// session is closed.
func (l *legacySSE) get(w http.ResponseWriter, r *http.Request) {
	if !accepts(r, "text/event-stream") {
		httpError(w, http.StatusNotAcceptable, jsonrpc.CodeInvalidRequest, "Accept must include text/event-stream")
		return
	}
	p := principalOf(r)
	ss, err := l.open(p)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, jsonrpc.CodeInvalidRequest, err.Error())
		return
	}
	log := l.h.log.With(slog.String("session", ss.s.ID()))
	log.Info("legacy SSE session opened", slog.Any("principal", p))
	reason := "client disconnected"
	defer func() {
		l.end(ss)
		attrs := []any{slog.String("reason", reason)}
		if n := ss.dropped.Load(); n > 0 {
			attrs = append(attrs, slog.Int64("dropped_notifications", n))
		}
		log.Info("legacy SSE session closed", attrs...)
	}()

	rc := http.NewResponseController(w)
	deadline := func() { _ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)) }
	deadline()
	// The connection may serve further requests after this one.
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	sse := wire.NewSSEWriter(w)
	if sse.Write(wire.Event{Event: "endpoint", Data: []byte(sseMessagePath + "?sessionId=" + ss.key)}) != nil {
		return
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case it := <-ss.q:
			data := it.raw
			if it.msg != nil {
				data = it.msg.Encode()
			}
			deadline()
			if sse.Write(wire.Event{Event: "message", Data: data}) != nil {
				reason = "writing to the client failed"
				return
			}
		case <-tick.C:
			deadline()
			if sse.Comment("keep-alive") != nil {
				reason = "writing to the client failed"
				return
			}
		case <-ss.stuck:
			reason = "the client is not reading its stream"
			log.Warn("closing legacy SSE session: a message that may not be dropped found the stream's queue full", slog.Int("queued", len(ss.q)))
			return
		case <-r.Context().Done():
			return
		case <-ss.s.Done():
			reason = "session closed"
			return
		case <-l.h.stopJan:
			reason = "gateway shutting down"
			return
		}
	}
}

// post takes one message (or, on a 2025-03-26 session, one batch) for the
// session named in the URL. It answers 202 at once; answers go on the
// session's event stream.
func (l *legacySSE) post(w http.ResponseWriter, r *http.Request) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/json" {
		httpError(w, http.StatusUnsupportedMediaType, jsonrpc.CodeInvalidRequest, "Content-Type must be application/json")
		return
	}
	ss := l.lookup(w, r)
	if ss == nil {
		return
	}
	if v := r.Header.Get("Mcp-Protocol-Version"); v != "" && !slices.Contains(proxy.ClientVersions, v) {
		httpError(w, http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "unsupported MCP-Protocol-Version "+quoteHeader(v))
		return
	}
	body, ok := readBody(w, r, l.h.maxBody)
	if !ok {
		return
	}
	lim := l.h.lim
	if jsonrpc.IsBatch(body) {
		if v := ss.s.ProtocolVersion(); v != batchVersion {
			httpError(w, http.StatusBadRequest, jsonrpc.CodeInvalidRequest, batchRefusal(v))
			return
		}
		// Refuse a batch that cannot be decoded at all here, with 400;
		// its elements are decoded again, one by one, by serveBatch.
		if _, _, err := jsonrpc.DecodeBatch(body, lim); err != nil {
			decodeErrorReply(w, err)
			return
		}
		go func() {
			answers, frameErr := serveBatch(ss.s, body, lim)
			switch {
			case frameErr != nil:
				ss.enqueue(sseItem{msg: frameErr}, false)
			case answers != nil:
				ss.enqueue(sseItem{raw: answers}, false)
			}
		}()
		w.WriteHeader(http.StatusAccepted)
		return
	}
	msg, err := jsonrpc.Decode(body, lim)
	if err != nil {
		decodeErrorReply(w, err)
		return
	}
	ss.s.HandleMessage(msg)
	w.WriteHeader(http.StatusAccepted)
}

// readBody reads a request body of at most max bytes within
// bodyReadTimeout. When it fails it answers (413 or 400) and reports false.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, bool) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpError(w, http.StatusRequestEntityTooLarge, jsonrpc.CodeInvalidRequest, "request body larger than the limit")
			return nil, false
		}
		httpError(w, http.StatusBadRequest, jsonrpc.CodeParseError, "reading request body failed")
		return nil, false
	}
	return body, true
}

// decodeErrorReply answers 400 with the JSON-RPC error for a message the
// strict codec refused (err is a *jsonrpc.DecodeError).
func decodeErrorReply(w http.ResponseWriter, err error) {
	var de *jsonrpc.DecodeError
	if !errors.As(err, &de) {
		httpError(w, http.StatusBadRequest, jsonrpc.CodeParseError, "invalid message")
		return
	}
	e := de.RPCError()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	w.Write(jsonrpc.NewError(de.ID, e.Code, e.Message, e.Data).Encode())
}

// sseItem is one event for a legacy SSE stream: a message, or a batch's
// answers already encoded as one JSON array.
type sseItem struct {
	msg *jsonrpc.Message
	raw []byte
}

// sseSession is the legacy SSE side of a proxy session: the queue its
// event stream drains. It is the session's proxy.Sink.
type sseSession struct {
	s   *proxy.Session
	key string // the endpoint key in the POST URL

	q         chan sseItem
	stuck     chan struct{} // closed when a message that may not be dropped did not fit
	stuckOnce sync.Once
	ended     atomic.Bool // the stream is over; nothing more is queued
	dropped   atomic.Int64
}

func newSSESession(queue int) *sseSession {
	return &sseSession{q: make(chan sseItem, queue), stuck: make(chan struct{})}
}

// Send implements proxy.Sink. It never blocks: every message goes on the
// stream's queue in order. Notifications are dropped once the queue is
// three quarters full, which keeps room for answers and the backends'
// requests; those are never dropped: when one does not fit, the client is
// not reading, and the stream ends, which closes the session.
func (ss *sseSession) Send(m *jsonrpc.Message, _ json.RawMessage) {
	ss.enqueue(sseItem{msg: m}, m.IsNotification())
}

func (ss *sseSession) enqueue(it sseItem, droppable bool) {
	if ss.ended.Load() {
		return
	}
	if droppable && len(ss.q) >= cap(ss.q)*3/4 {
		ss.dropped.Add(1)
		return
	}
	select {
	case ss.q <- it:
		return
	default:
	}
	if droppable {
		ss.dropped.Add(1)
		return
	}
	ss.stuckOnce.Do(func() { close(ss.stuck) })
}

var _ proxy.Sink = (*sseSession)(nil)
