package frontend

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/proxy"
	"github.com/sallyport/sallyport/gateway/wire"
)

const (
	// shutdownGrace bounds how long closing a session may take.
	shutdownGrace = 15 * time.Second
	// keepAlive is the interval of SSE comment keep-alives.
	keepAlive = 25 * time.Second
	// backlogSize bounds the messages kept for a session with no GET
	// stream open; the oldest are dropped first.
	backlogSize = 256
	// streamBuffer bounds the messages queued for one open stream.
	streamBuffer = 256
	// bodyReadTimeout bounds reading one POST body.
	bodyReadTimeout = 30 * time.Second
)

// Authenticator resolves a bearer token to a principal.
type Authenticator interface {
	Authenticate(token string) (gateway.Principal, bool)
}

// PasswordVerifier resolves a username and password (HTTP Basic) to a
// principal; auth.Users is one.
type PasswordVerifier interface {
	Verify(username, password string) (gateway.Principal, bool)
}

// HTTPOptions configure the Streamable HTTP frontend.
type HTTPOptions struct {
	Gateway *proxy.Gateway
	Config  *config.Config
	Tokens  Authenticator
	Logger  *slog.Logger
	// Users, when set, accepts Authorization: Basic credentials (RFC
	// 7617) of reviewer accounts beside bearer tokens; nil refuses them.
	Users PasswordVerifier
	// API, when set, serves /api/ behind the same Host, Origin and bearer
	// token checks as /mcp; the principal is in the request's context
	// (gateway.PrincipalFrom).
	API http.Handler
	// Reporters add their state to /readyz and their metrics to /metrics.
	Reporters []gateway.Reporter
}

// HTTP is the Streamable HTTP frontend: POST, GET and DELETE on /mcp,
// sessions bound to the authenticated principal, and the Origin, Host,
// Content-Type and size checks that keep browsers and rebinding attacks
// out.
type HTTP struct {
	g         *proxy.Gateway
	cfg       *config.Config
	tokens    Authenticator
	users     PasswordVerifier
	api       http.Handler
	reporters []gateway.Reporter
	log       *slog.Logger
	lim       jsonrpc.Limits
	maxBody   int64
	hosts     hostAllowList
	origins   map[string]bool
	idle      time.Duration
	anon      *gateway.Principal
	stopJan   chan struct{}
	stopOnce  sync.Once

	mu       sync.Mutex
	sessions map[string]*httpSession
	closing  bool
}

// NewHTTP returns the frontend; Handler serves it.
func NewHTTP(opts HTTPOptions) *HTTP {
	cfg := opts.Config
	h := &HTTP{
		g:         opts.Gateway,
		cfg:       cfg,
		tokens:    opts.Tokens,
		users:     opts.Users,
		api:       opts.API,
		reporters: opts.Reporters,
		log:       opts.Logger,
		lim:       jsonrpc.Limits{MaxBytes: cfg.Limits.MaxMessageBytes.Int(), MaxDepth: cfg.Limits.MaxDepth},
		maxBody:   int64(cfg.HTTP.MaxBodyBytes),
		hosts:     newHostAllowList(cfg.HostAllowList()),
		origins:   map[string]bool{},
		idle:      cfg.HTTP.SessionIdleTimeout.D(),
		stopJan:   make(chan struct{}),
		sessions:  map[string]*httpSession{},
	}
	for _, o := range cfg.HTTP.AllowedOrigins {
		h.origins[strings.ToLower(o)] = true
	}
	if cfg.Auth.Anonymous && cfg.IsLoopbackListen() {
		h.anon = &gateway.Principal{ID: cfg.Auth.AnonymousPrincipal, Anonymous: true}
	}
	go h.janitor()
	return h
}

// Handler returns the HTTP handler: /mcp, /healthz and /readyz, and the
// legacy HTTP+SSE transport (GET /sse, POST /message) for 2024-11-05
// clients.
func (h *HTTP) Handler() http.Handler {
	legacy := newLegacySSE(h)
	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	// readyz names backends and their states: not for pages a rebinding
	// attack could load, so Host and Origin are checked (no token needed).
	r.With(h.checkHostOrigin).Get("/readyz", h.readyz)
	r.With(h.checkHostOrigin).Get("/metrics", h.metrics)
	r.Group(func(r chi.Router) {
		r.Use(h.checkHostOrigin, h.authenticate)
		r.Post("/mcp", h.post)
		r.Get("/mcp", h.get)
		r.Delete("/mcp", h.delete)
		r.MethodFunc(http.MethodOptions, "/mcp", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", "GET, POST, DELETE")
			w.WriteHeader(http.StatusNoContent)
		})
		r.Get("/sse", legacy.get)
		r.Post(sseMessagePath, legacy.post)
		if h.api != nil {
			r.Handle("/api/*", h.api)
		}
	})
	return r
}

func (h *HTTP) readyz(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	closing := h.closing
	h.mu.Unlock()
	body := struct {
		Ready      bool                  `json:"ready"`
		Sessions   int                   `json:"sessions"`
		Backends   []proxy.BackendStatus `json:"backends"`
		Components map[string]any        `json:"components,omitempty"`
	}{Ready: !closing, Sessions: h.g.Sessions(), Backends: h.g.Status()}
	for _, r := range h.reporters {
		detail, ready := r.Status()
		if body.Components == nil {
			body.Components = map[string]any{}
		}
		body.Components[r.Name()] = detail
		body.Ready = body.Ready && ready
	}
	w.Header().Set("Content-Type", "application/json")
	if !body.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(body)
}

// httpError answers with a status and a JSON-RPC error body (id null).
func httpError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(jsonrpc.NewError(nil, code, msg, nil).Encode())
}

// hostAllowList matches Host headers: entries with a port match exactly,
// entries without one match the host name on any port.
type hostAllowList struct {
	exact map[string]bool
	names map[string]bool
}

func newHostAllowList(entries []string) hostAllowList {
	l := hostAllowList{exact: map[string]bool{}, names: map[string]bool{}}
	for _, e := range entries {
		e = strings.ToLower(e)
		if _, _, err := net.SplitHostPort(e); err == nil {
			l.exact[e] = true
		} else {
			l.names[strings.Trim(e, "[]")] = true
		}
	}
	return l
}

func (l hostAllowList) allows(host string) bool {
	host = strings.ToLower(host)
	if l.exact[host] {
		return true
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	return l.names[strings.Trim(name, "[]")]
}

// checkHostOrigin refuses requests whose Host is not allow-listed (DNS
// rebinding) and requests from browser origins that are not allow-listed.
func (h *HTTP) checkHostOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.hosts.allows(r.Host) {
			httpError(w, http.StatusForbidden, jsonrpc.CodeInvalidRequest, "host not allowed")
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			o := strings.ToLower(origin)
			if !h.origins[o] && o != "http://"+strings.ToLower(r.Host) && o != "https://"+strings.ToLower(r.Host) {
				httpError(w, http.StatusForbidden, jsonrpc.CodeInvalidRequest, "origin not allowed")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate resolves the bearer token, or the username and password
// of HTTP Basic when reviewer accounts are configured, to a principal, or
// gives the anonymous principal when the configuration allows it on
// loopback.
func (h *HTTP) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p gateway.Principal
		authz := r.Header.Get("Authorization")
		switch {
		case authz != "":
			scheme, cred, ok := strings.Cut(authz, " ")
			cred = strings.TrimSpace(cred)
			var found bool
			switch {
			case ok && strings.EqualFold(scheme, "Bearer") && h.tokens != nil:
				if p, found = h.tokens.Authenticate(cred); !found {
					h.unauthorized(w, "invalid token")
					return
				}
			case ok && strings.EqualFold(scheme, "Basic") && h.users != nil:
				if !strings.HasPrefix(r.URL.Path, "/api/") {
					// People's passwords are for the API (reviewing,
					// auditing); MCP clients use bearer tokens.
					h.unauthorized(w, "password authentication is only for /api/: MCP clients use a bearer token")
					return
				}
				username, password, wellFormed := basicCredentials(cred)
				if !wellFormed {
					h.unauthorized(w, "invalid authorization header")
					return
				}
				if p, found = h.users.Verify(username, password); !found {
					h.unauthorized(w, "invalid username or password")
					return
				}
			default:
				h.unauthorized(w, "invalid authorization header")
				return
			}
		case h.anon != nil:
			p = *h.anon
		default:
			h.unauthorized(w, "authentication required")
			return
		}
		next.ServeHTTP(w, r.WithContext(gateway.WithPrincipal(r.Context(), p)))
	})
}

// basicCredentials decodes the credentials of HTTP Basic (RFC 7617):
// base64 of the username, a colon and the password.
func basicCredentials(cred string) (username, password string, ok bool) {
	b, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(b), ":")
}

func (h *HTTP) unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="sallyport"`)
	httpError(w, http.StatusUnauthorized, jsonrpc.CodeInvalidRequest, msg)
}

func principalOf(r *http.Request) gateway.Principal {
	p, _ := gateway.PrincipalFrom(r.Context())
	return p
}

// accepts reports whether the Accept header admits the media type.
func accepts(r *http.Request, mediaType string) bool {
	accept := r.Header.Values("Accept")
	if len(accept) == 0 {
		return true
	}
	major, _, _ := strings.Cut(mediaType, "/")
	for _, v := range accept {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if mt == mediaType || mt == "*/*" || mt == major+"/*" {
				return true
			}
		}
	}
	return false
}

// lookup returns the session named by Mcp-Session-Id if it exists and is
// bound to the caller's principal; otherwise it answers and returns nil.
// A session of another principal is answered exactly like an unknown one.
func (h *HTTP) lookup(w http.ResponseWriter, r *http.Request) *httpSession {
	id := r.Header.Get("Mcp-Session-Id")
	if id == "" {
		httpError(w, http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "Mcp-Session-Id header required")
		return nil
	}
	h.mu.Lock()
	hs := h.sessions[id]
	h.mu.Unlock()
	if hs == nil || !hs.s.Principal().Equal(principalOf(r)) {
		httpError(w, http.StatusNotFound, jsonrpc.CodeInvalidRequest, "session not found")
		return nil
	}
	if v := r.Header.Get("Mcp-Protocol-Version"); v != "" {
		if !slices.Contains(proxy.ClientVersions, v) {
			httpError(w, http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "unsupported MCP-Protocol-Version "+quoteHeader(v))
			return nil
		}
		// A supported version that differs from the session's is served
		// under the session's: the spec requires 400 only for an invalid or
		// unsupported version, and the conformance suite expects this.
	}
	hs.touch()
	return hs
}

func quoteHeader(v string) string {
	if len(v) > 40 {
		v = v[:40]
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// post handles one JSON-RPC message POSTed by the client.
func (h *HTTP) post(w http.ResponseWriter, r *http.Request) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/json" {
		httpError(w, http.StatusUnsupportedMediaType, jsonrpc.CodeInvalidRequest, "Content-Type must be application/json")
		return
	}
	if !accepts(r, "application/json") && !accepts(r, "text/event-stream") {
		httpError(w, http.StatusNotAcceptable, jsonrpc.CodeInvalidRequest, "Accept must include application/json and text/event-stream")
		return
	}
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpError(w, http.StatusRequestEntityTooLarge, jsonrpc.CodeInvalidRequest, "request body larger than the limit")
			return
		}
		httpError(w, http.StatusBadRequest, jsonrpc.CodeParseError, "reading request body failed")
		return
	}
	if jsonrpc.IsBatch(body) {
		h.postBatch(w, r, body)
		return
	}
	msg, err := jsonrpc.Decode(body, h.lim)
	if err != nil {
		var de *jsonrpc.DecodeError
		errors.As(err, &de)
		e := de.RPCError()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write(jsonrpc.NewError(de.ID, e.Code, e.Message, e.Data).Encode())
		return
	}

	var hs *httpSession
	if msg.IsRequest() && msg.Method == "initialize" {
		// A new session; any Mcp-Session-Id the client sent is ignored, so
		// a session id can never be fixed by the client.
		if hs, err = h.newSession(principalOf(r)); err != nil {
			httpError(w, http.StatusServiceUnavailable, jsonrpc.CodeInvalidRequest, err.Error())
			return
		}
		w.Header().Set("Mcp-Session-Id", hs.s.ID())
	} else if hs = h.lookup(w, r); hs == nil {
		return
	}

	if !msg.IsRequest() {
		hs.s.HandleMessage(msg)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	h.serveRequest(w, r, hs, msg)
}

// postBatch serves a JSON-RPC batch on a 2025-03-26 session, and refuses
// it on any other.
func (h *HTTP) postBatch(w http.ResponseWriter, r *http.Request, body []byte) {
	hs := h.lookup(w, r)
	if hs == nil {
		return
	}
	if v := hs.s.ProtocolVersion(); v != batchVersion {
		httpError(w, http.StatusBadRequest, jsonrpc.CodeInvalidRequest, batchRefusal(v))
		return
	}
	answers, frameErr := serveBatch(hs.s, body, h.lim)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case frameErr != nil:
		w.WriteHeader(http.StatusBadRequest)
		w.Write(frameErr.Encode())
	case answers == nil:
		w.WriteHeader(http.StatusAccepted)
	default:
		w.WriteHeader(http.StatusOK)
		w.Write(answers)
	}
}

// serveRequest serves a request on the handler's own goroutine and writes
// its answer as JSON. When related messages (progress) come first and the
// client accepts SSE, a writer goroutine upgrades the response to an event
// stream, sends them as they come, and ends the stream with the answer.
func (h *HTTP) serveRequest(w http.ResponseWriter, r *http.Request, hs *httpSession, msg *jsonrpc.Message) {
	key := jsonrpc.IDKey(msg.ID)
	ps := &postStream{w: w, sseOK: accepts(r, "text/event-stream"), ch: make(chan *jsonrpc.Message, streamBuffer)}
	if !hs.addPost(key, ps) {
		httpError(w, http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "request id is already in use by a request in flight")
		return
	}
	answer := hs.s.ServeFrom(r.Context().Done(), msg)
	// Free the id before the client can see the answer and reuse it.
	hs.removePost(key, ps)
	if answer != nil && msg.Method == "initialize" && answer.Error != nil {
		h.dropSession(hs)
	}
	if ps.finish(answer) {
		return // the stream writer sent it
	}
	if answer == nil {
		select {
		case <-hs.s.Done():
			httpError(w, http.StatusNotFound, jsonrpc.CodeInvalidRequest, "session closed")
		default:
			// The client cancelled the request: MCP sends no answer. An
			// event stream that ends without one says exactly that; a
			// client that takes only JSON gets the cancellation error.
			if ps.sseOK {
				wire.NewSSEWriter(w)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			w.Write(jsonrpc.NewError(msg.ID, gateway.CodeRequestCancelled, "request cancelled", nil).Encode())
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(answer.Encode())
}

// get opens the session's stream for messages not tied to a request.
func (h *HTTP) get(w http.ResponseWriter, r *http.Request) {
	if !accepts(r, "text/event-stream") || r.Header.Get("Accept") == "" {
		httpError(w, http.StatusNotAcceptable, jsonrpc.CodeInvalidRequest, "Accept must include text/event-stream")
		return
	}
	hs := h.lookup(w, r)
	if hs == nil {
		return
	}
	gs, backlog := hs.openGet()
	if gs == nil {
		httpError(w, http.StatusConflict, jsonrpc.CodeInvalidRequest, "a GET stream is already open for this session")
		return
	}
	defer hs.closeGet(gs)
	sse := wire.NewSSEWriter(w)
	for _, m := range backlog {
		if sse.Write(wire.Event{Event: "message", Data: m.Encode()}) != nil {
			return
		}
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case m := <-gs.ch:
			if sse.Write(wire.Event{Event: "message", Data: m.Encode()}) != nil {
				return
			}
		case <-tick.C:
			if sse.Comment("keep-alive") != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-hs.s.Done():
			return
		}
	}
}

// delete ends the session and stops its backends.
func (h *HTTP) delete(w http.ResponseWriter, r *http.Request) {
	hs := h.lookup(w, r)
	if hs == nil {
		return
	}
	h.dropSession(hs)
	w.WriteHeader(http.StatusNoContent)
}

func (h *HTTP) newSession(p gateway.Principal) (*httpSession, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return nil, errors.New("gateway is shutting down")
	}
	// Every open session counts, whatever its transport (and sessions
	// still closing count until their backends are gone).
	if h.g.Sessions() >= h.cfg.HTTP.MaxSessions {
		return nil, errors.New("too many sessions")
	}
	hs := &httpSession{posts: map[string]*postStream{}, lastActive: time.Now()}
	s, err := h.g.NewSession(proxy.NewSessionID(), "http", p, hs)
	if err != nil {
		return nil, err
	}
	hs.s = s
	h.sessions[s.ID()] = hs
	return hs, nil
}

// dropSession forgets the session at once and closes it in the
// background (its backends may take their shutdown grace to stop).
func (h *HTTP) dropSession(hs *httpSession) {
	h.mu.Lock()
	if h.sessions[hs.s.ID()] != hs {
		h.mu.Unlock()
		return
	}
	delete(h.sessions, hs.s.ID())
	h.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		hs.s.Close(ctx)
	}()
}

// janitor closes sessions idle for longer than the idle timeout.
func (h *HTTP) janitor() {
	every := min(max(h.idle/4, 250*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-h.stopJan:
			return
		case <-t.C:
		}
		h.mu.Lock()
		var idle []*httpSession
		for _, hs := range h.sessions {
			if hs.idleFor() > h.idle {
				idle = append(idle, hs)
			}
		}
		h.mu.Unlock()
		for _, hs := range idle {
			h.log.Info("closing idle session", slog.String("session", hs.s.ID()))
			h.dropSession(hs)
		}
	}
}

// Close closes every session and stops their backends.
func (h *HTTP) Close(ctx context.Context) {
	h.stopOnce.Do(func() { close(h.stopJan) })
	h.mu.Lock()
	h.closing = true
	all := make([]*httpSession, 0, len(h.sessions))
	for id, hs := range h.sessions {
		all = append(all, hs)
		delete(h.sessions, id)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, hs := range all {
		wg.Go(func() { hs.s.Close(ctx) })
	}
	wg.Wait()
}

// httpSession is the HTTP side of a proxy session: where its messages go.
type httpSession struct {
	s *proxy.Session

	mu         sync.Mutex
	posts      map[string]*postStream
	get        *postStream
	backlog    []*jsonrpc.Message
	lastActive time.Time
}

// postStream is where a POSTed request's related messages go, and for
// the GET stream, every unrelated message.
type postStream struct {
	ch chan *jsonrpc.Message

	// For POST streams: the response to upgrade to SSE on the first
	// related message, and the writer goroutine's state.
	w         http.ResponseWriter
	sseOK     bool
	mu        sync.Mutex
	streaming bool          // a writer goroutine owns w
	finished  bool          // the answer has been handed over
	written   chan struct{} // closed when the writer goroutine is done
}

// push queues a related message, starting the SSE writer on the first
// one. It reports false when the client does not accept SSE, so the
// message should go to the GET stream instead. A message that comes after
// the answer is dropped: its request is over.
func (ps *postStream) push(m *jsonrpc.Message) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if !ps.sseOK {
		return false
	}
	if ps.finished {
		return true
	}
	if !ps.streaming {
		ps.streaming = true
		ps.written = make(chan struct{})
		go ps.writeStream()
	}
	select {
	case ps.ch <- m:
	default: // a slow client loses notifications, never answers
	}
	return true
}

// writeStream writes the event stream until the answer (or nil: no
// answer) has been written.
func (ps *postStream) writeStream() {
	defer close(ps.written)
	sse := wire.NewSSEWriter(ps.w)
	broken := false
	for m := range ps.ch {
		if m == nil {
			return
		}
		if !broken && sse.Write(wire.Event{Event: "message", Data: m.Encode()}) != nil {
			broken = true // the client went away; keep draining
		}
		if m.IsResponse() {
			return
		}
	}
}

// finish hands the answer over. It reports whether the stream writer took
// it (and has written it); otherwise the caller writes it as JSON.
func (ps *postStream) finish(answer *jsonrpc.Message) bool {
	ps.mu.Lock()
	ps.finished = true
	streaming := ps.streaming
	ps.mu.Unlock()
	if !streaming {
		return false
	}
	ps.ch <- answer // a nil answer ends the stream without one
	<-ps.written
	return true
}

func (hs *httpSession) touch() {
	hs.mu.Lock()
	hs.lastActive = time.Now()
	hs.mu.Unlock()
}

// idleFor is how long the session has had no request, no open stream and
// nothing in flight.
func (hs *httpSession) idleFor() time.Duration {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if len(hs.posts) > 0 || hs.get != nil || hs.s.Busy() {
		return 0
	}
	return time.Since(hs.lastActive)
}

func (hs *httpSession) addPost(key string, ps *postStream) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.posts[key] != nil {
		return false
	}
	hs.posts[key] = ps
	return true
}

func (hs *httpSession) removePost(key string, ps *postStream) {
	hs.mu.Lock()
	if hs.posts[key] == ps {
		delete(hs.posts, key)
	}
	hs.lastActive = time.Now()
	hs.mu.Unlock()
}

func (hs *httpSession) openGet() (*postStream, []*jsonrpc.Message) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.get != nil {
		return nil, nil
	}
	hs.get = &postStream{ch: make(chan *jsonrpc.Message, streamBuffer)}
	backlog := hs.backlog
	hs.backlog = nil
	return hs.get, backlog
}

func (hs *httpSession) closeGet(gs *postStream) {
	hs.mu.Lock()
	if hs.get == gs {
		hs.get = nil
	}
	hs.lastActive = time.Now()
	hs.mu.Unlock()
}

// toStream queues a message for the GET stream, or the backlog when none
// is open. Under back-pressure the oldest messages are dropped.
func (hs *httpSession) toStream(m *jsonrpc.Message) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.get != nil {
		select {
		case hs.get.ch <- m:
		default:
		}
		return
	}
	if len(hs.backlog) >= backlogSize {
		hs.backlog = hs.backlog[1:]
	}
	hs.backlog = append(hs.backlog, m)
}

// Send implements proxy.Sink. A message related to a request in flight
// goes to that request's POST stream when the client accepts SSE;
// anything else goes to the GET stream. Answers to requests are returned
// by Session.Serve and written by serveRequest, so an answer arriving here
// has nobody waiting for it and is dropped.
func (hs *httpSession) Send(m *jsonrpc.Message, related json.RawMessage) {
	if m.IsResponse() {
		return
	}
	if related != nil {
		hs.mu.Lock()
		ps := hs.posts[jsonrpc.IDKey(related)]
		hs.mu.Unlock()
		if ps != nil && ps.push(m) {
			return
		}
	}
	hs.toStream(m)
}

var _ proxy.Sink = (*httpSession)(nil)

// metrics serves the reporters' metrics in the Prometheus text format.
func (h *HTTP) metrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	fmt.Fprintf(w, "# HELP sallyport_sessions Open client sessions.\n# TYPE sallyport_sessions gauge\nsallyport_sessions %d\n", h.g.Sessions())
	for _, r := range h.reporters {
		r.WriteMetrics(w)
	}
}
