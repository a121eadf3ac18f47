package main

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"time"
)

// notificationMarker is how a JSON-RPC notification looks on the wire as
// mcp-go encodes it (encoding/json, no spaces).
var notificationMarker = []byte(`"method":"notifications/`)

// deliveryWait bounds how long a tool waits for its notifications to be
// written. It only turns a lost notification into a late result, never a hang.
const deliveryWait = 2 * time.Second

// deliveries counts the notifications the transport has written, so that a
// tool can wait until what it sent has left the process before it returns
// its result. mcp-go writes notifications from a goroutine of its own, and
// its result can otherwise overtake them (stdio) or make the stream drop
// them (Streamable HTTP).
//
// The count is over all sessions: a concurrent session's notifications can
// end a wait early, which costs only the ordering guarantee for that call.
type deliveries struct {
	mu      sync.Mutex
	n       uint64
	changed chan struct{} // closed and replaced when n grows
}

func newDeliveries() *deliveries { return &deliveries{changed: make(chan struct{})} }

// observe counts the notifications in p, a chunk the transport wrote.
func (d *deliveries) observe(p []byte) { d.add(bytes.Count(p, notificationMarker)) }

// add counts k more notifications as written.
func (d *deliveries) add(k int) {
	if k <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n += uint64(k)
	close(d.changed)
	d.changed = make(chan struct{})
}

// count returns the number of notifications written so far.
func (d *deliveries) count() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// wait blocks until at least target notifications have been written, ctx
// ends or deliveryWait passes, and reports whether target was reached.
func (d *deliveries) wait(ctx context.Context, target uint64) bool {
	timer := time.NewTimer(deliveryWait)
	defer timer.Stop()
	for {
		d.mu.Lock()
		n, changed := d.n, d.changed
		d.mu.Unlock()
		if n >= target {
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		case <-timer.C:
			return false
		}
	}
}

// countingWriter is the stdio transport's stdout: it counts notifications
// after they are written.
type countingWriter struct {
	w interface{ Write([]byte) (int, error) }
	d *deliveries
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err == nil {
		c.d.observe(p)
	}
	return n, err
}

// countResponses wraps the Streamable HTTP handler so that notifications are
// counted once written (and flushed, when the handler flushes) to any
// response: a POST's SSE stream or the session's GET stream.
func countResponses(next http.Handler, d *deliveries) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&countingResponse{ResponseWriter: w, d: d}, r)
	})
}

// countingResponse counts the notifications written through it. It keeps the
// http.Flusher of the writer it wraps (mcp-go streams only through a
// Flusher) and unwraps for http.ResponseController.
type countingResponse struct {
	http.ResponseWriter
	d *deliveries

	mu      sync.Mutex
	pending int // notifications written but not yet flushed
}

func (c *countingResponse) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	if err == nil {
		if k := bytes.Count(p, notificationMarker); k > 0 {
			c.mu.Lock()
			c.pending += k
			c.mu.Unlock()
		}
	}
	return n, err
}

// Flush sends what was written to the client, then counts it as delivered.
func (c *countingResponse) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	c.mu.Lock()
	k := c.pending
	c.pending = 0
	c.mu.Unlock()
	c.d.add(k)
}

func (c *countingResponse) Unwrap() http.ResponseWriter { return c.ResponseWriter }
