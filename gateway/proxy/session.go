package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/backend"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// errClientCancelled is the cause of a request context the client
// cancelled with notifications/cancelled.
var errClientCancelled = errors.New("cancelled by the client")

// errSessionClosed is the cause of request contexts when the session ends.
var errSessionClosed = errors.New("session closed")

// maxInflight bounds one session's requests in flight.
const maxInflight = 256

type sessionState uint8

const (
	stateNew sessionState = iota
	stateInitialized
	stateClosed
)

// Session is one client session: its principal, the protocol version and
// capabilities it negotiated, its own backend legs, and its requests in
// flight. Frontends create one per stdio connection or HTTP session.
type Session struct {
	g         *Gateway
	log       *slog.Logger
	sink      Sink
	principal gateway.Principal
	// info is replaced, never changed, so exchanges can hold it safely.
	info atomic.Pointer[gateway.SessionInfo]

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu         sync.Mutex
	state      sessionState
	clientCaps json.RawMessage
	legs       map[string]*backend.Leg
	inflight   map[string]context.CancelCauseFunc
	// serverReqs are the backends' requests waiting for the client's
	// answer, by the id the gateway gave them toward the client.
	serverReqs map[string]*serverRequest
	// legCalls are the client requests in flight per backend leg, so a
	// backend's request can go on the stream of a request that caused it.
	legCalls map[*backend.Leg][]json.RawMessage
	// relists are the list_changed re-lists running, and whether another
	// change came in meanwhile.
	relists map[relistKey]bool
	// logLevel is the level the client set with logging/setLevel.
	logLevel string

	requests  sync.WaitGroup
	closeOnce sync.Once
	closed    chan struct{}
	// clientReady is closed when the client sent notifications/initialized.
	clientReady chan struct{}
	readyOnce   sync.Once
}

// NewSessionID returns a new session id: 128 bits from crypto/rand, hex.
func NewSessionID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewSession opens a client session bound to principal p. transport names
// the client transport ("stdio", "http", "sse").
func (g *Gateway) NewSession(id, transport string, p gateway.Principal, sink Sink) (*Session, error) {
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &Session{
		g:           g,
		log:         g.log.With(slog.String("session", id)),
		sink:        sink,
		principal:   p,
		ctx:         ctx,
		cancel:      cancel,
		legs:        map[string]*backend.Leg{},
		inflight:    map[string]context.CancelCauseFunc{},
		serverReqs:  map[string]*serverRequest{},
		relists:     map[relistKey]bool{},
		legCalls:    map[*backend.Leg][]json.RawMessage{},
		closed:      make(chan struct{}),
		clientReady: make(chan struct{}),
	}
	s.info.Store(&gateway.SessionInfo{ID: id, Transport: transport})
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		cancel(errSessionClosed)
		return nil, errors.New("gateway is shutting down")
	}
	g.sessions[s] = struct{}{}
	return s, nil
}

// ID returns the session id.
func (s *Session) ID() string { return s.info.Load().ID }

// Principal returns the principal the session is bound to.
func (s *Session) Principal() gateway.Principal { return s.principal }

// ProtocolVersion returns the negotiated protocol version, or "" before
// initialize.
func (s *Session) ProtocolVersion() string {
	return s.info.Load().ProtocolVersion
}

// Done is closed when the session has been closed.
func (s *Session) Done() <-chan struct{} { return s.closed }

// Busy reports whether the session has requests in flight.
func (s *Session) Busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight) > 0
}

// HandleMessage takes one message from the client. Requests are served
// concurrently, each on its own goroutine; their answers go to the sink.
// It never blocks on a backend.
func (s *Session) HandleMessage(msg *jsonrpc.Message) {
	switch {
	case msg.IsRequest():
		ctx, done, refusal := s.begin(msg)
		if refusal != nil {
			s.sink.Send(refusal, msg.ID)
			return
		}
		go func() {
			answer := s.serve(ctx, msg)
			done()
			if answer != nil {
				s.sink.Send(answer, msg.ID)
			}
		}()
	case msg.IsNotification():
		s.clientNotification(msg)
	default:
		s.clientResponse(msg)
	}
}

// Serve serves one request on the caller's goroutine and returns its
// answer, or nil when there is none to give (the client cancelled the
// request, or the session closed). Messages related to the request
// (progress) go to the sink while it runs. The request's id is free again
// when Serve returns.
func (s *Session) Serve(msg *jsonrpc.Message) *jsonrpc.Message {
	return s.ServeFrom(nil, msg)
}

// ServeFrom is Serve for a request that arrived on a connection of its
// own: gone is closed when that connection is (see gateway.ClientGone).
func (s *Session) ServeFrom(gone <-chan struct{}, msg *jsonrpc.Message) *jsonrpc.Message {
	ctx, done, refusal := s.begin(msg)
	if refusal != nil {
		return refusal
	}
	defer done()
	if gone != nil {
		ctx = gateway.WithClientGone(ctx, gone)
	}
	return s.serve(ctx, msg)
}

// begin registers a request in flight under its id, so the client can
// cancel it; done unregisters it. A request that cannot begin (closed
// session, id already in flight) gets its refusal instead.
func (s *Session) begin(msg *jsonrpc.Message) (ctx context.Context, done func(), refusal *jsonrpc.Message) {
	key := jsonrpc.IDKey(msg.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateClosed {
		return nil, nil, jsonrpc.NewError(msg.ID, gateway.CodeInvalidRequest, "session is closed", nil)
	}
	if _, dup := s.inflight[key]; dup {
		return nil, nil, jsonrpc.NewError(msg.ID, gateway.CodeInvalidRequest, "request id is already in use by a request in flight", nil)
	}
	if len(s.inflight) >= maxInflight {
		return nil, nil, jsonrpc.NewError(msg.ID, gateway.CodeInvalidRequest, "too many requests in flight in this session", nil)
	}
	ctx, cancel := context.WithCancelCause(s.ctx)
	s.inflight[key] = cancel
	s.requests.Add(1)
	done = sync.OnceFunc(func() {
		s.mu.Lock()
		delete(s.inflight, key)
		s.mu.Unlock()
		cancel(nil)
		s.requests.Done()
	})
	return ctx, done, nil
}

// Close ends the session: requests in flight are cancelled and the
// session's own backend processes and sessions are stopped.
func (s *Session) Close(ctx context.Context) {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.state = stateClosed
		legs := make([]*backend.Leg, 0, len(s.legs))
		for _, l := range s.legs {
			legs = append(legs, l)
		}
		s.mu.Unlock()
		s.cancel(errSessionClosed)
		s.g.dropSessionSubs(s)
		var wg sync.WaitGroup
		for _, l := range legs {
			wg.Go(func() { l.Close(ctx) })
		}
		wg.Wait()
		s.requests.Wait()
		s.g.mu.Lock()
		delete(s.g.sessions, s)
		s.g.mu.Unlock()
		close(s.closed)
		s.log.Debug("session closed")
	})
	<-s.closed
}

// leg returns the leg that serves backend b for this session: the shared
// one, or the session's own, created on first use.
func (s *Session) leg(id string) *backend.Leg {
	if l := s.g.shared[id]; l != nil {
		return l
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.legs[id]
	if l == nil {
		spec := s.g.byID[id]
		l = s.g.newLeg(spec, backend.Hooks{Notification: s.backendNotification, Request: s.serverRequest, Ready: s.legReady}, s.relayedCapsLocked())
		if s.state == stateClosed {
			l.Close(context.Background())
		}
		s.legs[id] = l
	}
	return l
}

// LegPids returns the process ids of the session's running stdio backends.
func (s *Session) LegPids() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pids []int
	for _, l := range s.legs {
		if pid := l.Pid(); pid != 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// newExchange returns an exchange for this session.
func (s *Session) newExchange(dir gateway.Direction, kind gateway.Kind, method string, msg *jsonrpc.Message,
	deliver func(context.Context, *gateway.Exchange) error) *gateway.Exchange {
	x := gateway.NewExchange(deliver)
	x.Direction, x.Kind, x.Method, x.Message = dir, kind, method, msg
	x.Principal, x.Session = &s.principal, s.info.Load()
	return x
}

// serve answers one client request: it routes it, passes it through the
// pipeline, forwards it or answers it, and passes the answer back through
// the pipeline. It returns the answer for the client, or nil when there is
// none to give.
func (s *Session) serve(ctx context.Context, msg *jsonrpc.Message) *jsonrpc.Message {
	var result *jsonrpc.Message // the answer, with the backend's id
	x := s.newExchange(gateway.ClientToBackend, gateway.KindRequest, msg.Method, msg, nil)
	route := s.route(ctx, x)
	x = s.newExchangeFrom(x, func(ctx context.Context, x *gateway.Exchange) error {
		var err error
		result, err = route(ctx, x)
		x.Answer = result
		return err
	})
	if tok := progressToken(msg.Params); tok != nil {
		x.Progress = s.progressNotifier(x, tok)
	}
	err := s.g.chain.Handle(ctx, x)
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), errClientCancelled) {
		return nil // the client gave up on it: no answer (MCP cancellation)
	}
	if s.isClosed() {
		return nil
	}
	if err != nil {
		if gateway.RPCError(err).Code == gateway.CodeInternal {
			s.log.Warn("request failed", slog.String("method", msg.Method), slog.String("err", err.Error()))
		}
		return errorAnswer(msg.ID, err)
	}
	if result == nil { // a stage neither passed nor refused the request
		return errorAnswer(msg.ID, gateway.Errorf(gateway.CodeInternal, "the pipeline did not deliver the request"))
	}
	var answer *jsonrpc.Message
	res := result.Result
	if res != nil {
		// Fitted to the client's version before the pipeline sees it: what
		// the stages judge is what the client gets.
		res = adaptResult(msg.Method, res, s.ProtocolVersion())
	}
	rx := s.newExchange(gateway.BackendToClient, gateway.KindResult, msg.Method,
		&jsonrpc.Message{ID: msg.ID, Result: res, Error: result.Error},
		func(_ context.Context, rx *gateway.Exchange) error {
			answer = rx.Message
			return nil
		})
	rx.Backend, rx.Target, rx.Request = x.Backend, x.Target, x
	if err := s.g.chain.Handle(ctx, rx); err != nil {
		return errorAnswer(msg.ID, err)
	}
	if answer == nil { // a stage neither passed nor refused it
		return errorAnswer(msg.ID, gateway.Errorf(gateway.CodeInternal, "the pipeline did not deliver the answer"))
	}
	return answer
}

// newExchangeFrom gives x its delivery step once routing has filled it in.
func (s *Session) newExchangeFrom(x *gateway.Exchange, deliver func(context.Context, *gateway.Exchange) error) *gateway.Exchange {
	y := gateway.NewExchange(deliver)
	y.Direction, y.Kind, y.Method, y.Message = x.Direction, x.Kind, x.Method, x.Message
	y.Principal, y.Session = x.Principal, x.Session
	y.Backend, y.Target, y.Arguments, y.Definition, y.Time = x.Backend, x.Target, x.Arguments, x.Definition, x.Time
	y.CurrentDefinition = x.CurrentDefinition
	return y
}

func (s *Session) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == stateClosed
}

// routeFunc performs a routed request; it returns the answer message.
type routeFunc func(ctx context.Context, x *gateway.Exchange) (*jsonrpc.Message, error)

func fail(err error) routeFunc {
	return func(context.Context, *gateway.Exchange) (*jsonrpc.Message, error) { return nil, err }
}

func answer(result json.RawMessage) routeFunc {
	return func(context.Context, *gateway.Exchange) (*jsonrpc.Message, error) {
		return &jsonrpc.Message{Result: result}, nil
	}
}

// route works out where a request goes, fills in x (backend, target,
// arguments, definition) for the stages, and returns the step that
// performs it. A request that cannot be routed still passes the pipeline;
// its step returns the routing error.
func (s *Session) route(ctx context.Context, x *gateway.Exchange) routeFunc {
	msg := x.Message
	s.mu.Lock()
	state := s.state
	s.mu.Unlock()
	switch {
	case msg.Method == "initialize":
		return s.initialize
	case msg.Method == "ping":
		return answer(json.RawMessage(`{}`))
	case state != stateInitialized:
		return fail(gateway.Errorf(gateway.CodeInvalidRequest, "session is not initialized: send initialize first"))
	}
	if a, b, found := jsonrpc.FoldedKeys(msg.Params); found {
		// The stages judge one member; a backend that matches names
		// without regard to case could act on the other.
		return fail(gateway.Errorf(gateway.CodeInvalidParams, "params holds members whose names differ only in case (%q and %q): refused", a, b))
	}
	switch msg.Method {
	case "tools/list":
		return s.aggregate("tools")
	case "prompts/list":
		return s.aggregate("prompts")
	case "resources/list":
		return s.aggregate("resources")
	case "resources/templates/list":
		return s.aggregate("templates")
	case "tools/call":
		return s.routeNamed(ctx, x, "tools", "arguments")
	case "prompts/get":
		return s.routeNamed(ctx, x, "prompts", "arguments")
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		return s.routeURI(ctx, x)
	case "completion/complete":
		return s.routeCompletion(ctx, x)
	case "logging/setLevel":
		return s.setLevel
	}
	return fail(gateway.Errorf(gateway.CodeMethodNotFound, "method %q is not supported by the gateway", msg.Method))
}

// routeNamed routes tools/call and prompts/get by the namespaced name.
func (s *Session) routeNamed(ctx context.Context, x *gateway.Exchange, kind, argsKey string) routeFunc {
	params := x.Message.Params
	rawName, _ := jsonrpc.Member(params, "name")
	name, ok := jsonrpc.Unquote(rawName)
	if !ok {
		return fail(gateway.Errorf(gateway.CodeInvalidParams, "params.name must be a string"))
	}
	what := strings.TrimSuffix(kind, "s")
	// Until the name resolves, the stages (audit) see what was asked for:
	// the name as the client gave it.
	x.Target = name
	x.Arguments, _ = jsonrpc.Member(params, argsKey)
	id, target, ok := s.g.resolveName(name)
	if !ok {
		return fail(gateway.Errorf(gateway.CodeInvalidParams, "unknown %s %q", what, name))
	}
	if _, listed := s.g.publicName(id, target); !listed {
		return fail(gateway.Errorf(gateway.CodeInvalidParams, "unknown %s %q", what, name))
	}
	spec := s.g.byID[id]
	x.Backend, x.Target = id, target
	leg := s.leg(id)
	entry, found, cached := leg.Cached(kind, target)
	if !cached {
		lctx, cancel := context.WithTimeout(ctx, spec.Timeouts.Startup.D()+spec.Timeouts.Request.D())
		var err error
		entry, found, err = leg.Lookup(lctx, kind, target)
		cancel()
		if err != nil {
			return fail(err)
		}
	}
	if !found {
		return fail(gateway.Errorf(gateway.CodeInvalidParams, "unknown %s %q", what, name))
	}
	x.Definition = entry.Raw
	x.CurrentDefinition = func(ctx context.Context) (json.RawMessage, error) {
		entry, found, cached := leg.Cached(kind, target)
		if !cached {
			var err error
			if entry, found, err = leg.Lookup(ctx, kind, target); err != nil {
				return nil, err
			}
		}
		if !found {
			return nil, nil // no longer listed: nothing matches the old definition
		}
		return entry.Raw, nil
	}
	// The step forwards what the pipeline passed, not what the client
	// sent: a stage may have replaced the message (redaction, injected
	// credentials). It may not have changed where the call goes.
	return func(ctx context.Context, x *gateway.Exchange) (*jsonrpc.Message, error) {
		params := x.Message.Params
		rawName, _ := jsonrpc.Member(params, "name")
		name, _ := jsonrpc.Unquote(rawName)
		if i, t, ok := s.g.resolveName(name); !ok || i != id || t != target {
			return nil, gateway.Errorf(gateway.CodeRefused, "the pipeline changed the target of the call")
		}
		// Tasks are not relayed: a task request becomes a plain call.
		fwd := jsonrpc.DeleteMember(jsonrpc.SetMember(params, "name", jsonrpc.Quote(target)), "task")
		return s.call(ctx, x, leg, fwd)
	}
}

// call sends a routed request's params to leg and waits for the answer,
// relaying the backend's progress under the client's own token.
func (s *Session) call(ctx context.Context, x *gateway.Exchange, leg *backend.Leg, params json.RawMessage) (*jsonrpc.Message, error) {
	var progress func(json.RawMessage)
	if tok := progressToken(params); tok != nil {
		progress = s.progressForwarder(ctx, x, tok)
	}
	defer s.trackLegCall(leg, x.Message.ID)()
	return leg.Call(ctx, x.Method, params, progress)
}

func progressToken(params json.RawMessage) json.RawMessage {
	meta, ok := jsonrpc.Member(params, "_meta")
	if !ok {
		return nil
	}
	tok, ok := jsonrpc.Member(meta, "progressToken")
	if !ok || string(tok) == "null" {
		return nil
	}
	return tok
}

// progressForwarder returns the function that passes a backend's progress
// notification for request x back to the client, under the client's own
// token and through the pipeline.
func (s *Session) progressForwarder(ctx context.Context, x *gateway.Exchange, clientToken json.RawMessage) func(json.RawMessage) {
	related := x.Message.ID
	var mu sync.Mutex
	last := math.Inf(-1)
	return func(params json.RawMessage) {
		mu.Lock()
		defer mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		// Progress must increase (MCP); anything else from the backend is
		// dropped rather than passed on to confuse the client.
		var p struct {
			Progress *float64 `json:"progress"`
		}
		raw, _ := jsonrpc.Member(params, "progress")
		if json.Unmarshal(raw, &p.Progress) != nil || p.Progress == nil || *p.Progress <= last {
			return
		}
		last = *p.Progress
		params = jsonrpc.SetMember(params, "progressToken", clientToken)
		n := jsonrpc.NewNotification("notifications/progress", params)
		nx := s.newExchange(gateway.BackendToClient, gateway.KindNotification, n.Method, n, func(_ context.Context, nx *gateway.Exchange) error {
			s.sink.Send(nx.Message, related)
			return nil
		})
		nx.Backend, nx.Target, nx.Request = x.Backend, x.Target, x
		if err := s.g.chain.Handle(ctx, nx); err != nil {
			s.log.Debug("progress notification refused", slog.String("err", err.Error()))
		}
	}
}

// progressNotifier returns the gateway.Progress of request x: progress
// notifications the gateway itself sends under the client's own token
// (while the request waits for an approval), through the pipeline. Their
// progress values are the caller's, which must increase.
func (s *Session) progressNotifier(x *gateway.Exchange, clientToken json.RawMessage) gateway.Progress {
	related := x.Message.ID
	return func(ctx context.Context, progress float64, message string) {
		if ctx.Err() != nil {
			return
		}
		params := jsonrpc.SetMember(nil, "progressToken", clientToken)
		params = jsonrpc.SetMember(params, "progress", json.RawMessage(strconv.FormatFloat(progress, 'f', -1, 64)))
		if message != "" {
			params = jsonrpc.SetMember(params, "message", jsonrpc.Quote(message))
		}
		n := jsonrpc.NewNotification("notifications/progress", params)
		nx := s.newExchange(gateway.BackendToClient, gateway.KindNotification, n.Method, n, func(_ context.Context, nx *gateway.Exchange) error {
			s.sink.Send(nx.Message, related)
			return nil
		})
		nx.Backend, nx.Target, nx.Request = x.Backend, x.Target, x
		if err := s.g.chain.Handle(ctx, nx); err != nil {
			s.log.Debug("progress notification refused", slog.String("err", err.Error()))
		}
	}
}

// clientNotification handles a notification from the client.
func (s *Session) clientNotification(msg *jsonrpc.Message) {
	var deliver func(context.Context, *gateway.Exchange) error
	switch msg.Method {
	case "notifications/initialized":
		deliver = func(context.Context, *gateway.Exchange) error {
			if s.ProtocolVersion() != "" { // initialize was answered
				s.readyOnce.Do(func() { close(s.clientReady) })
			}
			return nil
		}
	case "notifications/cancelled":
		deliver = func(context.Context, *gateway.Exchange) error {
			reqID, _ := jsonrpc.Member(msg.Params, "requestId")
			if reqID == nil {
				return gateway.Errorf(gateway.CodeInvalidParams, "notifications/cancelled without requestId")
			}
			s.mu.Lock()
			cancel := s.inflight[jsonrpc.IDKey(reqID)]
			s.mu.Unlock()
			// Only this session's own requests can be cancelled: ids are
			// looked up in its own table, never in another client's.
			if cancel != nil {
				cancel(errClientCancelled)
			}
			return nil
		}
	case "notifications/roots/list_changed":
		// Only this client's own backends hear that its roots changed.
		deliver = func(ctx context.Context, x *gateway.Exchange) error {
			for _, l := range s.runningLegs() {
				if err := l.Notify(ctx, msg.Method, msg.Params); err != nil {
					s.log.Debug("roots/list_changed not delivered", slog.String("backend", l.ID()), slog.String("err", err.Error()))
				}
			}
			return nil
		}
	default:
		deliver = func(context.Context, *gateway.Exchange) error {
			s.log.Debug("client notification not forwarded", slog.String("method", msg.Method))
			return nil
		}
	}
	x := s.newExchange(gateway.ClientToBackend, gateway.KindNotification, msg.Method, msg, deliver)
	if err := s.g.chain.Handle(s.ctx, x); err != nil {
		s.log.Debug("client notification refused", slog.String("method", msg.Method), slog.String("err", err.Error()))
	}
}

// backendNotification handles a notification from one of the session's
// own legs.
func (s *Session) backendNotification(l *backend.Leg, msg *jsonrpc.Message) {
	switch msg.Method {
	case "notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed":
		s.listChanged(l, msg.Method)
	case "notifications/resources/updated":
		s.g.resourceUpdated(l, msg)
	case "notifications/message", "notifications/elicitation/complete":
		s.notifyClient(l.ID(), msg)
	case "notifications/cancelled":
		s.serverRequestCancelled(l, msg)
	default:
		s.log.Debug("backend notification not forwarded", slog.String("backend", l.ID()), slog.String("method", msg.Method))
	}
}

// relistKey names one of a leg's lists.
type relistKey struct {
	leg  *backend.Leg
	kind string
}

// listChanged re-lists the backend's changed list, then tells the client
// its aggregated list changed. Changes that arrive while a re-list is
// running are coalesced into one more re-list and one more notification,
// so a backend flooding list_changed costs at most two re-lists at a time.
func (s *Session) listChanged(l *backend.Leg, method string) {
	kind := strings.TrimSuffix(strings.TrimPrefix(method, "notifications/"), "/list_changed")
	key := relistKey{l, kind}
	s.mu.Lock()
	if s.state != stateInitialized {
		s.mu.Unlock()
		return
	}
	if _, running := s.relists[key]; running {
		s.relists[key] = true // dirty: run once more when this one ends
		s.mu.Unlock()
		return
	}
	s.relists[key] = false
	s.mu.Unlock()
	go func() {
		for {
			ctx, cancel := context.WithTimeout(s.ctx, s.g.requestTimeout())
			if _, err := l.List(ctx, kind); err != nil {
				s.log.Warn("re-list after list_changed failed", slog.String("backend", l.ID()), slog.String("err", err.Error()))
			}
			cancel()
			s.notifyClient(l.ID(), jsonrpc.NewNotification(method, nil))
			s.mu.Lock()
			if !s.relists[key] || s.state == stateClosed {
				delete(s.relists, key)
				s.mu.Unlock()
				return
			}
			s.relists[key] = false
			s.mu.Unlock()
		}
	}()
}

// notifyClient passes a notification to the client through the pipeline.
func (s *Session) notifyClient(backendID string, msg *jsonrpc.Message) {
	x := s.newExchange(gateway.BackendToClient, gateway.KindNotification, msg.Method, msg, func(_ context.Context, x *gateway.Exchange) error {
		s.sink.Send(x.Message, nil)
		return nil
	})
	x.Backend = backendID
	if err := s.g.chain.Handle(s.ctx, x); err != nil {
		s.log.Debug("notification refused", slog.String("method", msg.Method), slog.String("err", err.Error()))
	}
}

// visibleBackends lists the backends in configuration order.
func (s *Session) visibleBackends() []string {
	ids := make([]string, 0, len(s.g.backends))
	for _, b := range s.g.backends {
		ids = append(ids, b.ID)
	}
	return ids
}

// errorAnswer is the error response a client receives for err.
func errorAnswer(id json.RawMessage, err error) *jsonrpc.Message {
	return &jsonrpc.Message{ID: id, Error: gateway.RPCError(err)}
}
