// Package proxy is Sallyport's message path: client sessions, routing by
// namespaced name, aggregation of the backends' lists, and the compiled
// stage chain every message passes in both directions. Frontends (stdio,
// Streamable HTTP) feed client messages into a Session and receive what goes
// back through a Sink; backend legs (package backend) carry the rest.
package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/backend"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// Separator joins a backend id and a backend's tool or prompt name into the
// name clients see. Backend ids cannot contain it.
const Separator = "__"

// ClientVersions are the MCP versions the gateway speaks with clients,
// newest first: the initialize-era versions, the same it accepts from
// backends.
var ClientVersions = backend.LegacyVersions

// Sink is how a session sends messages to its client.
type Sink interface {
	// Send delivers msg to the client. related is the id of the client
	// request msg belongs to (a progress notification, a response), or nil.
	// Send must not block on a slow client: a frontend may drop
	// notifications under back-pressure, never responses.
	Send(msg *jsonrpc.Message, related json.RawMessage)
}

// Options configure a Gateway.
type Options struct {
	Config  *config.Config
	Logger  *slog.Logger
	Stages  []gateway.Stage
	Version string
	// PageSize is the page size of aggregated lists; 0 is DefaultPageSize.
	PageSize int
	// HTTPClient serves HTTP and SSE backends; nil uses a client with sane
	// timeouts.
	HTTPClient *http.Client
}

// Gateway holds what all client sessions share: the backends, their shared
// legs, the capabilities they announced, and the compiled pipeline.
type Gateway struct {
	cfg        *config.Config
	log        *slog.Logger
	chain      gateway.Handler
	version    string
	httpClient *http.Client
	backends   []*config.Backend
	byID       map[string]*config.Backend
	shared     map[string]*backend.Leg
	// unprefixed is the backend whose names are listed as they are, if any.
	unprefixed string

	capsMu sync.RWMutex
	caps   map[string]backend.InitResult

	subs     subscriptions
	cursors  cursors
	pageSize int

	mu       sync.Mutex
	sessions map[*Session]struct{}
	closed   bool
}

// New builds a gateway; nothing is started until a client uses a backend.
func New(opts Options) *Gateway {
	var hc http.Client
	if opts.HTTPClient != nil {
		hc = *opts.HTTPClient
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		tr.ResponseHeaderTimeout = 0 // streams are long; requests are bounded by their context
		hc.Transport = tr
	}
	// Redirects are never followed: a 307 would re-send the body and the
	// backend's headers (its credentials) to wherever the backend says.
	// A redirect answer is an error like any other non-2xx status.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	g := &Gateway{
		cfg:        opts.Config,
		log:        opts.Logger,
		chain:      gateway.Chain(opts.Stages...),
		version:    opts.Version,
		httpClient: &hc,
		byID:       map[string]*config.Backend{},
		shared:     map[string]*backend.Leg{},
		caps:       map[string]backend.InitResult{},
		sessions:   map[*Session]struct{}{},
	}
	g.subs.m = map[*backend.Leg]map[string]map[*Session]bool{}
	g.cursors = newCursors()
	g.pageSize = opts.PageSize
	if g.pageSize <= 0 {
		g.pageSize = DefaultPageSize
	}
	for i := range opts.Config.Backends {
		b := &opts.Config.Backends[i]
		g.backends = append(g.backends, b)
		g.byID[b.ID] = b
		if b.Unprefixed {
			g.unprefixed = b.ID
		}
		if b.Isolation == "shared" {
			g.shared[b.ID] = g.newLeg(b, backend.Hooks{Notification: g.sharedNotification}, nil)
		}
	}
	return g
}

// newLeg returns a leg for backend b. caps are the client capabilities
// offered to the backend (nil: none).
func (g *Gateway) newLeg(b *config.Backend, hooks backend.Hooks, caps json.RawMessage) *backend.Leg {
	then := hooks.Ready
	hooks.Ready = func(l *backend.Leg, init backend.InitResult) {
		g.capsMu.Lock()
		g.caps[l.ID()] = init
		g.capsMu.Unlock()
		if then != nil {
			then(l, init)
		}
	}
	return backend.NewLeg(backend.Options{
		Spec:          b,
		Logger:        g.log,
		HTTPClient:    g.httpClient,
		ClientName:    "sallyport",
		ClientVersion: g.version,
		Capabilities:  caps,
		Hooks:         hooks,
	})
}

func (g *Gateway) knownCaps(id string) (backend.InitResult, bool) {
	g.capsMu.RLock()
	defer g.capsMu.RUnlock()
	r, ok := g.caps[id]
	return r, ok
}

// sharedNotification handles notifications from a shared leg. Only list
// changes are meaningful to every session; anything else cannot be
// attributed to one client and is dropped.
func (g *Gateway) sharedNotification(l *backend.Leg, msg *jsonrpc.Message) {
	switch msg.Method {
	case "notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed":
		for _, s := range g.sessionList() {
			s.listChanged(l, msg.Method)
		}
	case "notifications/resources/updated":
		g.resourceUpdated(l, msg)
	default:
		g.log.Debug("notification from a shared backend dropped: it cannot be attributed to one client",
			slog.String("backend", l.ID()), slog.String("method", msg.Method))
	}
}

// BackendStatus is one backend's state as /readyz reports it.
type BackendStatus struct {
	ID        string `json:"id"`
	Transport string `json:"transport"`
	Isolation string `json:"isolation"`
	// State is the shared leg's state, or for session-isolated backends
	// "ready" once any session initialized it.
	State string `json:"state"`
}

// Status reports every backend's state.
func (g *Gateway) Status() []BackendStatus {
	out := make([]BackendStatus, 0, len(g.backends))
	for _, b := range g.backends {
		st := BackendStatus{ID: b.ID, Transport: b.Transport, Isolation: b.Isolation, State: string(backend.StateIdle)}
		if l := g.shared[b.ID]; l != nil {
			s, _ := l.Status()
			st.State = string(s)
		} else if _, ok := g.knownCaps(b.ID); ok {
			st.State = string(backend.StateReady)
		}
		out = append(out, st)
	}
	return out
}

// Sessions returns the number of open client sessions.
func (g *Gateway) Sessions() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sessions)
}

// Shutdown closes every session and every shared backend within ctx.
func (g *Gateway) Shutdown(ctx context.Context) {
	g.mu.Lock()
	g.closed = true
	sessions := make([]*Session, 0, len(g.sessions))
	for s := range g.sessions {
		sessions = append(sessions, s)
	}
	g.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Go(func() { s.Close(ctx) })
	}
	for _, l := range g.shared {
		wg.Go(func() { l.Close(ctx) })
	}
	wg.Wait()
}

// requestTimeout bounds work the gateway does for a client across
// backends (list aggregation, initialize).
func (g *Gateway) requestTimeout() time.Duration {
	d := 30 * time.Second
	for _, b := range g.backends {
		d = max(d, b.Timeouts.Startup.D())
	}
	return d
}

// publicName is the name clients see for a backend's tool or prompt:
// <id>__<name>, or the name itself for the unprefixed backend. ok is false
// for an unprefixed name that looks namespaced for another backend: such a
// name is never listed, so it cannot shadow that backend's tools.
func (g *Gateway) publicName(id, name string) (string, bool) {
	if id != g.unprefixed {
		return id + Separator + name, true
	}
	if other, _, found := strings.Cut(name, Separator); found && g.byID[other] != nil {
		return "", false
	}
	return name, true
}

// resolveName maps a name a client used back to a backend and the
// backend's own name. A namespaced name always wins over an unprefixed one.
func (g *Gateway) resolveName(name string) (id, target string, ok bool) {
	if id, target, found := strings.Cut(name, Separator); found && g.byID[id] != nil && target != "" {
		return id, target, true
	}
	if g.unprefixed != "" && name != "" {
		return g.unprefixed, name, true
	}
	return "", "", false
}

// ListsChanged tells every initialized session that the tools, prompts
// and resources lists changed: policy, which filters them per principal,
// was replaced.
func (g *Gateway) ListsChanged() {
	for _, s := range g.sessionList() {
		s.mu.Lock()
		ready := s.state == stateInitialized
		s.mu.Unlock()
		if !ready {
			continue
		}
		for _, m := range []string{"notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed"} {
			s.notifyClient("", jsonrpc.NewNotification(m, nil))
		}
	}
}

// sessionList returns the open sessions, copied out under the lock.
func (g *Gateway) sessionList() []*Session {
	g.mu.Lock()
	defer g.mu.Unlock()
	sessions := make([]*Session, 0, len(g.sessions))
	for s := range g.sessions {
		sessions = append(sessions, s)
	}
	return sessions
}
