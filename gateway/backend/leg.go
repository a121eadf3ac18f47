package backend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// ProtocolVersion is the MCP version the gateway asks backends for. The
// gateway speaks the legacy (initialize-based) era toward backends; it
// accepts any legacy version a backend answers with.
const ProtocolVersion = "2025-11-25"

// LegacyVersions are the initialize-based MCP versions, newest first.
var LegacyVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"}

// State is a leg's lifecycle state.
type State string

const (
	StateIdle     State = "idle"     // not started yet
	StateStarting State = "starting" // process or session starting, initialize in flight
	StateReady    State = "ready"
	StateDown     State = "down" // failed or exited; restarts on next use after backoff
	StateClosed   State = "closed"
)

// InitResult is what the backend answered to initialize.
type InitResult struct {
	ProtocolVersion string
	Capabilities    json.RawMessage
	ServerInfo      json.RawMessage
	Instructions    string
}

// Hooks receive the backend traffic that is not an answer to a call.
// They are called from the transport's reader and must not block.
type Hooks struct {
	// Notification receives notifications other than progress (which is
	// routed to the call it belongs to). list_changed notifications have
	// already invalidated the leg's catalog when it is called.
	Notification func(l *Leg, msg *jsonrpc.Message)
	// Request receives server→client requests (ping included). The hook
	// must answer each eventually with l.Respond. When it is nil the leg
	// answers ping itself and everything else with -32601.
	Request func(l *Leg, msg *jsonrpc.Message)
	// Ready is called each time the leg has initialized a backend.
	Ready func(l *Leg, init InitResult)
}

// Options configure a leg.
type Options struct {
	Spec       *config.Backend
	Logger     *slog.Logger
	HTTPClient *http.Client
	// ClientInfo is the implementation info sent in initialize.
	ClientName, ClientVersion string
	// Capabilities are the client capabilities offered to the backend (raw
	// JSON object); nil offers none.
	Capabilities json.RawMessage
	Hooks        Hooks
}

// Leg is the gateway's MCP client session with one backend: one stdio
// process or one HTTP backend session. It is started on first use,
// restarted with backoff after a crash, and allocates its own request ids
// and progress tokens so nothing a client chose ever reaches the backend.
type Leg struct {
	opts Options
	spec *config.Backend
	log  *slog.Logger

	mu       sync.Mutex
	state    State
	tr       Transport
	gen      int           // transport generation; messages from older ones are ignored
	starting chan struct{} // closed when the current start attempt ends
	lastErr  error
	failures int
	retryAt  time.Time
	upSince  time.Time
	init     InitResult
	nextID   int64
	pending  map[int64]*call
	catalogs map[string]*catalog
	pid      int
	serving  chan struct{}  // a slot per backend request being served
	starts   sync.WaitGroup // start attempts in progress
}

type call struct {
	ch       chan *jsonrpc.Message
	gen      int
	progress func(params json.RawMessage)
}

// NewLeg returns an idle leg; nothing starts until it is used.
func NewLeg(opts Options) *Leg {
	return &Leg{
		opts:     opts,
		spec:     opts.Spec,
		log:      opts.Logger.With(slog.String("backend", opts.Spec.ID)),
		state:    StateIdle,
		pending:  map[int64]*call{},
		catalogs: map[string]*catalog{},
		serving:  make(chan struct{}, maxServing),
	}
}

// ID returns the backend id.
func (l *Leg) ID() string { return l.spec.ID }

// Spec returns the backend configuration.
func (l *Leg) Spec() *config.Backend { return l.spec }

// Status reports the leg's state and its last error, if any.
func (l *Leg) Status() (State, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state, l.lastErr
}

// Pid returns the backend process id for a running stdio leg, else 0.
func (l *Leg) Pid() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state != StateReady {
		return 0
	}
	return l.pid
}

// Init returns what the backend answered to initialize, once ready.
func (l *Leg) Init() InitResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.init
}

func unavailable(id string, format string, args ...any) *gateway.Error {
	return gateway.Errorf(gateway.CodeBackendUnavailable, "backend %q "+format, append([]any{id}, args...)...)
}

// maxBackoffWait is the longest restart backoff a caller waits out; a
// backend further from its next restart is reported down at once.
const maxBackoffWait = 2 * time.Second

// Ensure starts the backend if it is not running and waits until it is
// ready, the start fails, or ctx ends. A caller causes at most one start
// attempt: if it fails, Ensure returns its error. After an earlier failure
// the restart backoff is waited out when it is short and fits in ctx;
// otherwise Ensure fails fast, so one dead backend never stalls the others.
func (l *Leg) Ensure(ctx context.Context) error {
	waited := false // this caller has already seen a start attempt end
	for {
		l.mu.Lock()
		switch l.state {
		case StateReady:
			l.mu.Unlock()
			return nil
		case StateClosed:
			l.mu.Unlock()
			return unavailable(l.spec.ID, "is closed")
		case StateStarting:
			ch := l.starting
			l.mu.Unlock()
			select {
			case <-ch:
				waited = true
				continue
			case <-ctx.Done():
				return unavailable(l.spec.ID, "did not start in time")
			}
		case StateDown:
			lastErr := l.lastErr
			if waited {
				l.mu.Unlock()
				return unavailable(l.spec.ID, "is down: %v", lastErr)
			}
			if wait := time.Until(l.retryAt); wait > 0 {
				l.mu.Unlock()
				dl, hasDL := ctx.Deadline()
				if wait > maxBackoffWait || (hasDL && time.Until(dl) < wait) {
					return unavailable(l.spec.ID, "is down (next restart in %s): %v", wait.Round(time.Millisecond), lastErr)
				}
				select {
				case <-time.After(wait):
					continue
				case <-ctx.Done():
					return unavailable(l.spec.ID, "is down: %v", lastErr)
				}
			}
			fallthrough
		case StateIdle:
			l.state = StateStarting
			l.starting = make(chan struct{})
			l.gen++
			gen := l.gen
			l.starts.Add(1)
			l.mu.Unlock()
			go l.start(gen)
		}
	}
}

// start opens the transport and performs the initialize handshake, under
// the startup timeout and independent of any one caller's context.
func (l *Leg) start(gen int) {
	defer l.starts.Done()
	ctx, cancel := context.WithTimeout(context.Background(), l.spec.Timeouts.Startup.D())
	defer cancel()
	tr, pid, init, err := l.open(ctx, gen)
	l.mu.Lock()
	if l.gen != gen || l.state == StateClosed {
		l.mu.Unlock()
		if tr != nil {
			tr.Close(context.Background()) // Close waits for this
		}
		return
	}
	defer l.mu.Unlock()
	defer close(l.starting)
	if err != nil {
		l.markDownLocked(fmt.Errorf("start: %w", err))
		return
	}
	l.tr, l.pid, l.init = tr, pid, init
	l.state = StateReady
	l.lastErr = nil
	l.upSince = time.Now()
	l.log.Info("backend ready", slog.String("protocol", l.init.ProtocolVersion), slog.Int("pid", l.pid))
	if l.opts.Hooks.Ready != nil {
		go l.opts.Hooks.Ready(l, l.init)
	}
}

// open starts a transport and performs the initialize handshake on it.
func (l *Leg) open(ctx context.Context, gen int) (tr Transport, pid int, init InitResult, err error) {
	recv := &receiver{leg: l, gen: gen}
	switch l.spec.Transport {
	case "stdio":
		st, err := StartStdio(l.spec, l.log, recv)
		if err != nil {
			return nil, 0, init, err
		}
		tr, pid = st, st.Pid()
	case "http":
		tr = NewHTTPTransport(l.spec, l.opts.HTTPClient, l.log, recv)
	case "sse":
		tr = NewSSETransport(l.spec, l.opts.HTTPClient, l.log, recv)
	default:
		return nil, 0, init, fmt.Errorf("unknown transport %q", l.spec.Transport)
	}
	fail := func(err error) (Transport, int, InitResult, error) {
		tr.Close(context.Background())
		return nil, 0, InitResult{}, err
	}

	caps := l.opts.Capabilities
	if caps == nil {
		caps = json.RawMessage(`{}`)
	}
	params := json.RawMessage(`{"protocolVersion":` + string(jsonrpc.Quote(ProtocolVersion)) +
		`,"capabilities":` + string(caps) +
		`,"clientInfo":{"name":` + string(jsonrpc.Quote(l.opts.ClientName)) +
		`,"version":` + string(jsonrpc.Quote(l.opts.ClientVersion)) + `}}`)
	resp, err := l.roundTrip(ctx, tr, gen, "initialize", params, nil)
	if err != nil {
		return fail(fmt.Errorf("initialize: %w", err))
	}
	if resp.Error != nil {
		return fail(fmt.Errorf("initialize: backend answered error %d: %s", resp.Error.Code, resp.Error.Message))
	}
	init, err = parseInit(resp.Result)
	if err != nil {
		return fail(fmt.Errorf("initialize: %w", err))
	}
	if pv, ok := tr.(protocolVersionSetter); ok {
		pv.SetProtocolVersion(init.ProtocolVersion)
	}
	if err := tr.Send(ctx, jsonrpc.NewNotification("notifications/initialized", nil)); err != nil {
		return fail(fmt.Errorf("send initialized: %w", err))
	}
	return tr, pid, init, nil
}

func parseInit(result json.RawMessage) (InitResult, error) {
	var r struct {
		ProtocolVersion string          `json:"protocolVersion"`
		Capabilities    json.RawMessage `json:"capabilities"`
		ServerInfo      json.RawMessage `json:"serverInfo"`
		Instructions    string          `json:"instructions"`
	}
	if err := json.Unmarshal(result, &r); err != nil {
		return InitResult{}, fmt.Errorf("malformed result: %w", err)
	}
	if !slices.Contains(LegacyVersions, r.ProtocolVersion) {
		return InitResult{}, fmt.Errorf("backend chose protocol version %q, which the gateway does not speak", r.ProtocolVersion)
	}
	if len(r.Capabilities) == 0 || r.Capabilities[0] != '{' {
		r.Capabilities = json.RawMessage(`{}`)
	}
	return InitResult{r.ProtocolVersion, r.Capabilities, r.ServerInfo, r.Instructions}, nil
}

// markDownLocked records a failure and schedules the next restart.
func (l *Leg) markDownLocked(err error) {
	if !l.upSince.IsZero() && time.Since(l.upSince) > time.Minute {
		l.failures = 0
	}
	l.failures++
	l.upSince = time.Time{}
	l.state = StateDown
	l.lastErr = err
	l.tr = nil
	l.pid = 0
	backoff := min(250*time.Millisecond<<min(l.failures-1, 8), 30*time.Second)
	l.retryAt = time.Now().Add(backoff)
	for id, c := range l.pending {
		delete(l.pending, id)
		c.ch <- nil
	}
	for _, c := range l.catalogs {
		c.invalidate()
	}
	l.log.Warn("backend down", slog.String("err", err.Error()), slog.Duration("restart_in", backoff))
}

// transportGone is called when a transport of generation gen ended.
func (l *Leg) transportGone(gen int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if gen != l.gen {
		return
	}
	switch l.state {
	case StateReady:
		if err == nil {
			err = errors.New("connection closed")
		}
		l.markDownLocked(err)
	case StateStarting:
		// The start goroutine sees the failure through its round trip.
		for id, c := range l.pending {
			delete(l.pending, id)
			c.ch <- nil
		}
		if err != nil {
			l.lastErr = err
		}
	}
}

// Call sends a request to the backend and waits for its answer, starting
// the backend if needed. The answer may be a JSON-RPC error response; the
// returned error is for a call that got no answer (backend down, exited,
// timed out, or ctx ended). When ctx ends first, the backend is told with
// notifications/cancelled. If progress is not nil, the request carries a
// progress token the leg allocates, and the backend's progress
// notifications for it are passed to progress until the call ends.
func (l *Leg) Call(ctx context.Context, method string, params json.RawMessage, progress func(params json.RawMessage)) (*jsonrpc.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, l.spec.Timeouts.Request.D())
	defer cancel()
	if err := l.Ensure(ctx); err != nil {
		return nil, err
	}
	l.mu.Lock()
	tr, gen := l.tr, l.gen
	l.mu.Unlock()
	if tr == nil {
		return nil, unavailable(l.spec.ID, "is not running")
	}
	return l.roundTrip(ctx, tr, gen, method, params, progress)
}

func (l *Leg) roundTrip(ctx context.Context, tr Transport, gen int, method string, params json.RawMessage, progress func(json.RawMessage)) (*jsonrpc.Message, error) {
	c := &call{ch: make(chan *jsonrpc.Message, 1), gen: gen, progress: progress}
	l.mu.Lock()
	if gen != l.gen || (l.state != StateReady && l.state != StateStarting) {
		l.mu.Unlock()
		return nil, unavailable(l.spec.ID, "is not running")
	}
	l.nextID++
	id := l.nextID
	l.pending[id] = c
	l.mu.Unlock()

	idRaw := json.RawMessage(strconv.FormatInt(id, 10))
	// A progress token is always the leg's own: the request id when the
	// caller relays progress, none otherwise. A client's token never
	// reaches a backend (on a shared leg it could name another's request).
	if meta, ok := jsonrpc.Member(params, "_meta"); ok {
		if _, has := jsonrpc.Member(meta, "progressToken"); has || progress != nil {
			if progress != nil {
				meta = jsonrpc.SetMember(meta, "progressToken", idRaw)
			} else {
				meta = jsonrpc.DeleteMember(meta, "progressToken")
			}
			params = jsonrpc.SetMember(params, "_meta", meta)
		}
	} else if progress != nil {
		params = jsonrpc.SetMember(params, "_meta", jsonrpc.SetMember(nil, "progressToken", idRaw))
	}
	if err := tr.Send(ctx, jsonrpc.NewRequest(idRaw, method, params)); err != nil {
		l.forget(id)
		if ctx.Err() != nil {
			return nil, l.ctxError(ctx, method)
		}
		e := unavailable(l.spec.ID, "request failed: %v", err)
		if l.spec.Transport != config.TransportStdio && !neverSent(err) {
			// An HTTP request may fail after the server read it: whether
			// it ran is unknown. A pipe write that failed was not read,
			// nor was a request whose connection was never made.
			e.Err = gateway.ErrNoAnswer
		}
		return nil, e
	}
	select {
	case resp := <-c.ch:
		if resp == nil {
			_, lastErr := l.Status()
			e := unavailable(l.spec.ID, "ended before answering: %v", lastErr)
			e.Err = gateway.ErrNoAnswer
			return nil, e
		}
		return resp, nil
	case <-ctx.Done():
		if l.forget(id) && method != "initialize" { // initialize must not be cancelled
			cancelParams := json.RawMessage(`{"requestId":` + string(idRaw) + `,"reason":` +
				string(jsonrpc.Quote(reasonFor(ctx))) + `}`)
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = tr.Send(sctx, jsonrpc.NewNotification("notifications/cancelled", cancelParams))
			scancel()
		}
		return nil, noAnswer(l.ctxError(ctx, method))
	}
}

// neverSent reports whether err says the request never left: the
// connection to the backend could not be made.
func neverSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// noAnswer marks err, a failure after the request was sent, as one whose
// outcome at the backend is unknown.
func noAnswer(err error) error {
	var e *gateway.Error
	if errors.As(err, &e) {
		c := *e
		c.Err = errors.Join(e.Err, gateway.ErrNoAnswer)
		return &c
	}
	return errors.Join(err, gateway.ErrNoAnswer)
}

func reasonFor(ctx context.Context) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "request timed out at the gateway"
	}
	return "cancelled by the client"
}

func (l *Leg) ctxError(ctx context.Context, method string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return gateway.Errorf(gateway.CodeTimeout, "backend %q did not answer %s within %s", l.spec.ID, method, l.spec.Timeouts.Request.D())
	}
	return &gateway.Error{Code: gateway.CodeRequestCancelled, Message: "request cancelled", Err: context.Cause(ctx)}
}

// forget removes a pending call; it reports whether the call was still
// pending (no answer had arrived).
func (l *Leg) forget(id int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.pending[id]
	delete(l.pending, id)
	return ok
}

// Notify sends a notification to a running backend.
func (l *Leg) Notify(ctx context.Context, method string, params json.RawMessage) error {
	l.mu.Lock()
	tr := l.tr
	ready := l.state == StateReady
	l.mu.Unlock()
	if !ready || tr == nil {
		return unavailable(l.spec.ID, "is not running")
	}
	return tr.Send(ctx, jsonrpc.NewNotification(method, params))
}

// Respond answers a server→client request the backend sent.
func (l *Leg) Respond(ctx context.Context, msg *jsonrpc.Message) error {
	l.mu.Lock()
	tr := l.tr
	l.mu.Unlock()
	if tr == nil {
		return unavailable(l.spec.ID, "is not running")
	}
	return tr.Send(ctx, msg)
}

// Close stops the backend and fails every pending call.
func (l *Leg) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.state == StateClosed {
		l.mu.Unlock()
		return nil
	}
	prev := l.state
	l.state = StateClosed
	tr := l.tr
	l.tr = nil
	for id, c := range l.pending {
		delete(l.pending, id)
		c.ch <- nil
	}
	if prev == StateStarting {
		close(l.starting)
	}
	l.lastErr = errors.New("closed")
	l.mu.Unlock()
	if tr != nil {
		tr.Close(ctx)
	}
	// A start in progress closes what it opened; wait for it, so nothing
	// the leg started outlives Close.
	started := make(chan struct{})
	go func() { l.starts.Wait(); close(started) }()
	select {
	case <-started:
	case <-ctx.Done():
	}
	return nil
}

// receiver routes one transport generation's messages into the leg.
type receiver struct {
	leg *Leg
	gen int
}

func (r *receiver) Closed(err error) { r.leg.transportGone(r.gen, err) }

func (r *receiver) Message(msg *jsonrpc.Message) {
	l := r.leg
	switch {
	case msg.IsResponse():
		id, ok := numericID(msg.ID)
		if !ok {
			l.log.Debug("backend answered an id the gateway never sent; dropped")
			return
		}
		l.mu.Lock()
		c := l.pending[id]
		if c != nil && c.gen == r.gen {
			delete(l.pending, id)
		} else {
			c = nil
		}
		l.mu.Unlock()
		if c == nil {
			l.log.Debug("late or unknown backend answer dropped", slog.Int64("id", id))
			return
		}
		c.ch <- msg
	case msg.IsNotification():
		l.notification(r.gen, msg)
	case msg.IsRequest():
		// Never write to the backend from its reader: a backend that is
		// not reading its input would stop the reader too. Requests are
		// served off the reader, a bounded number at a time.
		select {
		case l.serving <- struct{}{}:
		default:
			l.log.Warn("backend sends more requests than the gateway serves at once; dropped", slog.String("method", msg.Method))
			return
		}
		go func() {
			defer func() { <-l.serving }()
			l.serverRequest(msg)
		}()
	}
}

// maxServing bounds the backend's requests the leg serves at once.
const maxServing = 64

func (l *Leg) serverRequest(msg *jsonrpc.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), l.spec.Timeouts.Request.D())
	defer cancel()
	switch {
	case l.opts.Hooks.Request != nil:
		l.opts.Hooks.Request(l, msg)
	case msg.Method == "ping":
		_ = l.Respond(ctx, jsonrpc.NewResult(msg.ID, json.RawMessage(`{}`)))
	default:
		_ = l.Respond(ctx, jsonrpc.NewError(msg.ID, jsonrpc.CodeMethodNotFound,
			"the gateway does not offer "+msg.Method+" to this backend", nil))
	}
}

func numericID(raw json.RawMessage) (int64, bool) {
	k := jsonrpc.IDKey(raw)
	if !strings.HasPrefix(k, "n:") {
		return 0, false
	}
	n, err := strconv.ParseInt(k[2:], 10, 64)
	return n, err == nil
}

func (l *Leg) notification(gen int, msg *jsonrpc.Message) {
	switch msg.Method {
	case "notifications/progress":
		tok, _ := jsonrpc.Member(msg.Params, "progressToken")
		id, ok := numericID(tok)
		if !ok {
			return
		}
		l.mu.Lock()
		c := l.pending[id]
		l.mu.Unlock()
		if c == nil || c.gen != gen || c.progress == nil {
			return // finished or unknown token: dropped
		}
		c.progress(msg.Params)
		return
	case "notifications/tools/list_changed":
		l.invalidate("tools")
	case "notifications/prompts/list_changed":
		l.invalidate("prompts")
	case "notifications/resources/list_changed":
		l.invalidate("resources")
		l.invalidate("templates")
	}
	if l.opts.Hooks.Notification != nil {
		l.opts.Hooks.Notification(l, msg)
	}
}
