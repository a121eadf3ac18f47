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
	"time"

	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/wire"
)

// SSETransport is a legacy HTTP+SSE (2024-11-05) connection: a GET stream
// that first names the POST endpoint in an `endpoint` event and then
// carries every server message; messages to the server are POSTed there.
type SSETransport struct {
	spec   *config.Backend
	log    *slog.Logger
	recv   Receiver
	client *http.Client
	lim    jsonrpc.Limits

	ctx    context.Context
	cancel context.CancelFunc

	once     sync.Once
	ready    chan struct{} // closed when the endpoint is known or the stream failed
	endpoint string
	err      error
	done     chan struct{}
	closed   sync.Once
}

// NewSSETransport returns a transport for the legacy SSE backend described
// by spec; it connects on the first Send.
func NewSSETransport(spec *config.Backend, client *http.Client, log *slog.Logger, recv Receiver) *SSETransport {
	ctx, cancel := context.WithCancel(context.Background())
	return &SSETransport{
		spec: spec, log: log, recv: recv, client: client,
		lim: jsonrpc.Limits{MaxBytes: spec.MaxMessageBytes.Int()},
		ctx: ctx, cancel: cancel,
		ready: make(chan struct{}), done: make(chan struct{}),
	}
}

func (t *SSETransport) connect() {
	t.once.Do(func() { go t.run() })
}

func (t *SSETransport) run() {
	defer close(t.done)
	signal := sync.OnceFunc(func() { close(t.ready) })
	defer signal()
	req, err := http.NewRequestWithContext(t.ctx, http.MethodGet, t.spec.URL, nil)
	if err != nil {
		t.err = err
		return
	}
	for k, v := range t.spec.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := t.client.Do(req)
	if err != nil {
		t.err = fmt.Errorf("open SSE stream: %w", withoutURL(err))
		t.end(t.err)
		return
	}
	defer resp.Body.Close()
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.err = fmt.Errorf("open SSE stream: backend answered %s (%s)", resp.Status, ct)
		t.end(t.err)
		return
	}
	sr := wire.NewSSEReader(resp.Body, t.lim.MaxBytes)
	for {
		ev, err := sr.Next()
		if errors.Is(err, wire.ErrTooLong) {
			t.log.Warn("backend SSE event dropped", slog.String("err", err.Error()))
			continue
		}
		if err != nil {
			if t.err == nil {
				t.err = errors.New("SSE stream ended before the endpoint event")
			}
			if !errors.Is(err, io.EOF) {
				err = fmt.Errorf("SSE stream: %w", err)
			} else {
				err = errors.New("SSE stream closed")
			}
			t.end(err)
			return
		}
		switch ev.Event {
		case "endpoint":
			if t.endpoint != "" {
				continue
			}
			ep, err := t.resolve(string(ev.Data))
			if err != nil {
				t.err = err
				t.end(err)
				return
			}
			t.endpoint = ep
			signal()
		case "", "message":
			m, err := jsonrpc.Decode(ev.Data, t.lim)
			if err != nil {
				t.log.Warn("backend SSE event is not a JSON-RPC message; dropped", slog.String("err", err.Error()))
				continue
			}
			t.recv.Message(m)
		}
	}
}

// resolve turns the endpoint event into an absolute URL on the same origin
// as the SSE stream; an endpoint on another origin is refused, so a backend
// cannot make the gateway post elsewhere.
func (t *SSETransport) resolve(ep string) (string, error) {
	base, err := url.Parse(t.spec.URL)
	if err != nil {
		return "", err
	}
	u, err := base.Parse(ep)
	if err != nil {
		return "", fmt.Errorf("endpoint event %q: %w", ep, err)
	}
	if u.Scheme != base.Scheme || u.Host != base.Host {
		return "", fmt.Errorf("endpoint event %q is on another origin", ep)
	}
	return u.String(), nil
}

func (t *SSETransport) end(err error) {
	t.closed.Do(func() {
		t.cancel()
		go t.recv.Closed(err)
	})
}

// Send implements Transport.
func (t *SSETransport) Send(ctx context.Context, msg *jsonrpc.Message) error {
	t.connect()
	select {
	case <-t.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	if t.endpoint == "" {
		return t.err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.endpoint, bytes.NewReader(msg.Encode()))
	if err != nil {
		return err
	}
	for k, v := range t.spec.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("post to backend: %w", withoutURL(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("backend answered %s", resp.Status)
	}
	return nil
}

// Close implements Transport.
func (t *SSETransport) Close(ctx context.Context) error {
	t.closed.Do(func() {
		t.cancel()
		go t.recv.Closed(nil)
	})
	t.once.Do(func() { close(t.done) })
	select {
	case <-t.done:
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
	}
	return nil
}

var _ Transport = (*SSETransport)(nil)
