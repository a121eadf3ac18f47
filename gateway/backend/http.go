package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/wire"
)

// HTTPTransport is a Streamable HTTP connection to a remote MCP server: one
// backend session (Mcp-Session-Id) per transport. Requests are POSTed; the
// answer comes back as JSON or as an SSE stream that may carry related
// notifications and requests first. Server-initiated messages arrive on a
// GET stream when the server offers one.
type HTTPTransport struct {
	spec   *config.Backend
	log    *slog.Logger
	recv   Receiver
	client *http.Client
	lim    jsonrpc.Limits

	sessionID atomic.Pointer[string]
	version   atomic.Pointer[string]

	ctx      context.Context // ends when the transport closes
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	getOnce  sync.Once
	closeMu  sync.Mutex
	closed   bool
	recvMu   sync.Mutex // serializes delivery to recv
	failOnce sync.Once
}

// NewHTTPTransport returns a transport for the Streamable HTTP backend
// described by spec. It connects lazily, on the first Send.
func NewHTTPTransport(spec *config.Backend, client *http.Client, log *slog.Logger, recv Receiver) *HTTPTransport {
	ctx, cancel := context.WithCancel(context.Background())
	return &HTTPTransport{
		spec: spec, log: log, recv: recv, client: client,
		lim: jsonrpc.Limits{MaxBytes: spec.MaxMessageBytes.Int()},
		ctx: ctx, cancel: cancel,
	}
}

// SetProtocolVersion sets the MCP-Protocol-Version header sent from now on,
// and opens the server's GET stream for server-initiated messages.
func (t *HTTPTransport) SetProtocolVersion(v string) {
	t.version.Store(&v)
	t.getOnce.Do(func() {
		t.wg.Add(1)
		go t.listen()
	})
}

func (t *HTTPTransport) deliver(msg *jsonrpc.Message) {
	t.recvMu.Lock()
	defer t.recvMu.Unlock()
	t.recv.Message(msg)
}

// fail ends the transport because the backend session is gone.
func (t *HTTPTransport) fail(err error) {
	t.failOnce.Do(func() {
		t.closeMu.Lock()
		t.closed = true
		t.closeMu.Unlock()
		t.cancel()
		t.log.Warn("backend HTTP session ended", slog.String("err", err.Error()))
		go t.recv.Closed(err)
	})
}

func (t *HTTPTransport) newRequest(ctx context.Context, method string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.spec.URL, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range t.spec.Headers {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
	} else {
		req.Header.Set("Accept", "text/event-stream")
	}
	if id := t.sessionID.Load(); id != nil {
		req.Header.Set("Mcp-Session-Id", *id)
	}
	if v := t.version.Load(); v != nil {
		req.Header.Set("Mcp-Protocol-Version", *v)
	}
	return req, nil
}

// Send implements Transport. For a request it returns once the answer has
// been delivered to the receiver (or synthesizes an error answer when the
// stream ends without one), so its error is only for a request that never
// reached the backend.
func (t *HTTPTransport) Send(ctx context.Context, msg *jsonrpc.Message) error {
	t.closeMu.Lock()
	closed := t.closed
	t.closeMu.Unlock()
	if closed {
		return errors.New("backend HTTP session is closed")
	}
	req, err := t.newRequest(ctx, http.MethodPost, msg.Encode())
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("post to backend: %w", withoutURL(err))
	}
	defer resp.Body.Close()
	if msg.Method == "initialize" {
		if id := resp.Header.Get("Mcp-Session-Id"); id != "" {
			t.sessionID.Store(&id)
		}
	}
	if !msg.IsRequest() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("backend answered %s", resp.Status)
		}
		return nil
	}
	switch {
	case resp.StatusCode == http.StatusNotFound && t.sessionID.Load() != nil:
		err := errors.New("backend session expired (404)")
		t.fail(err)
		return err
	case resp.StatusCode/100 != 2:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		// A JSON-RPC error body for this request answers it; anything else
		// (including an error with a null id) fails it now, with what the
		// backend said.
		m, derr := jsonrpc.Decode(bytes.TrimSpace(body), t.lim)
		if derr == nil && m.IsResponse() && jsonrpc.IDKey(m.ID) == jsonrpc.IDKey(msg.ID) {
			t.deliver(m)
			return nil
		}
		if derr == nil && m.Error != nil {
			return fmt.Errorf("backend answered %s: %s", resp.Status, m.Error.Message)
		}
		return fmt.Errorf("backend answered %s", resp.Status)
	case resp.StatusCode == http.StatusAccepted:
		return errors.New("backend answered a request with 202 Accepted")
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		body, err := io.ReadAll(io.LimitReader(resp.Body, int64(t.lim.MaxBytes)+1))
		if err != nil {
			return fmt.Errorf("read backend answer: %w", err)
		}
		if len(body) > t.lim.MaxBytes {
			return fmt.Errorf("backend answer larger than %d bytes", t.lim.MaxBytes)
		}
		m, err := jsonrpc.Decode(body, t.lim)
		if err != nil {
			return fmt.Errorf("backend answer: %w", err)
		}
		if !m.IsResponse() || jsonrpc.IDKey(m.ID) != jsonrpc.IDKey(msg.ID) {
			if m.Error != nil {
				return fmt.Errorf("backend answered an error for another id: %s", m.Error.Message)
			}
			return errors.New("backend answered with a message that is not the answer to the request")
		}
		t.deliver(m)
		return nil
	case "text/event-stream":
		if t.readStream(resp.Body, jsonrpc.IDKey(msg.ID)) {
			return nil
		}
		return errors.New("backend stream ended without an answer")
	}
	return fmt.Errorf("backend answered with Content-Type %q", ct)
}

// readStream delivers each message of an SSE stream and reports whether
// the answer to the request with the given id key was among them.
func (t *HTTPTransport) readStream(body io.Reader, want string) bool {
	sr := wire.NewSSEReader(body, t.lim.MaxBytes)
	answered := false
	for {
		ev, err := sr.Next()
		if errors.Is(err, wire.ErrTooLong) {
			t.log.Warn("backend SSE event dropped", slog.String("err", err.Error()))
			continue
		}
		if err != nil {
			return answered
		}
		if (ev.Event != "" && ev.Event != "message") || len(bytes.TrimSpace(ev.Data)) == 0 {
			continue
		}
		m, err := jsonrpc.Decode(ev.Data, t.lim)
		if err != nil {
			t.log.Warn("backend SSE event is not a JSON-RPC message; dropped", slog.String("err", err.Error()))
			continue
		}
		t.deliver(m)
		if want != "" && m.IsResponse() && jsonrpc.IDKey(m.ID) == want {
			answered = true
			return true
		}
	}
}

// listen keeps the GET stream open for server-initiated messages, and
// reopens it with backoff while the transport lives. A server without one
// (405) is fine.
func (t *HTTPTransport) listen() {
	defer t.wg.Done()
	backoff := 250 * time.Millisecond
	for t.ctx.Err() == nil {
		req, err := t.newRequest(t.ctx, http.MethodGet, nil)
		if err != nil {
			return
		}
		resp, err := t.client.Do(req)
		if err == nil {
			ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
			switch {
			case resp.StatusCode == http.StatusMethodNotAllowed:
				resp.Body.Close()
				return
			case resp.StatusCode == http.StatusNotFound && t.sessionID.Load() != nil:
				resp.Body.Close()
				t.fail(errors.New("backend session expired (404)"))
				return
			case resp.StatusCode == http.StatusOK && ct == "text/event-stream":
				backoff = 250 * time.Millisecond
				t.readStream(resp.Body, "")
			}
			resp.Body.Close()
		}
		select {
		case <-t.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// Close implements Transport: it ends the backend session with DELETE.
func (t *HTTPTransport) Close(ctx context.Context) error {
	t.closeMu.Lock()
	already := t.closed
	t.closed = true
	t.closeMu.Unlock()
	t.cancel()
	if !already && t.sessionID.Load() != nil {
		if req, err := t.newRequest(ctx, http.MethodDelete, nil); err == nil {
			if resp, err := t.client.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}
	t.wg.Wait()
	if !already {
		t.failOnce.Do(func() { t.recv.Closed(nil) })
	}
	return nil
}

var _ Transport = (*HTTPTransport)(nil)

// withoutURL drops the URL from a *url.Error: a backend URL may carry a
// secret in its query, and errors reach clients and logs.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}
