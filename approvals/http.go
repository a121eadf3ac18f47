package approvals

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/websocket"

	"github.com/sallyport/sallyport/gateway"
)

// Live feed timings.
const (
	writeWait  = 10 * time.Second
	pingPeriod = 25 * time.Second
	pongWait   = pingPeriod + 15*time.Second
)

// HandlerOptions configure the API.
type HandlerOptions struct {
	// AllowedOrigins are the browser origins (scheme://host[:port]) whose
	// pages may open the live feed, besides the gateway's own.
	AllowedOrigins []string
	// PingPeriod overrides the feed's ping interval (tests).
	PingPeriod time.Duration
}

// Handler returns the HTTP API, mounted at /api/approvals behind the
// frontend's Host, Origin and authentication checks (the principal is in
// the request context):
//
//	GET  /api/approvals?state=pending&principal=&backend=&tool=&limit=
//	GET  /api/approvals/{id}
//	POST /api/approvals/{id}/approve   {"comment": "..."}
//	POST /api/approvals/{id}/deny      {"comment": "..."}
//	GET  /api/approvals/ws             the live feed (WebSocket)
func (s *Service) Handler(opts HandlerOptions) http.Handler {
	origins := map[string]bool{}
	for _, o := range opts.AllowedOrigins {
		origins[strings.ToLower(o)] = true
	}
	ping := opts.PingPeriod
	if ping <= 0 {
		ping = pingPeriod
	}
	a := &api{s: s, origins: origins, ping: ping}
	a.up = websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 16 << 10, CheckOrigin: a.checkOrigin}
	r := chi.NewRouter()
	r.Get("/api/approvals", a.list)
	r.Get("/api/approvals/ws", a.feed)
	r.Get("/api/approvals/{id}", a.get)
	r.Post("/api/approvals/{id}/approve", a.decide(true))
	r.Post("/api/approvals/{id}/deny", a.decide(false))
	r.NotFound(func(w http.ResponseWriter, _ *http.Request) { apiError(w, http.StatusNotFound, "not found") })
	r.MethodNotAllowed(func(w http.ResponseWriter, _ *http.Request) {
		apiError(w, http.StatusMethodNotAllowed, "method not allowed")
	})
	return r
}

type api struct {
	s       *Service
	origins map[string]bool
	ping    time.Duration
	up      websocket.Upgrader
}

// principal returns the caller, or answers 403 for an anonymous one.
func principal(w http.ResponseWriter, r *http.Request) (gateway.Principal, bool) {
	p, ok := gateway.PrincipalFrom(r.Context())
	if !ok || p.Anonymous || p.ID == "" {
		apiError(w, http.StatusForbidden, "approvals need an authenticated principal")
		return p, false
	}
	return p, true
}

func (a *api) list(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	for k, vs := range q {
		if !slices.Contains([]string{"state", "principal", "backend", "tool", "limit"}, k) {
			apiError(w, http.StatusBadRequest, "unknown parameter "+strconv.Quote(k))
			return
		}
		if len(vs) > 1 && k != "state" {
			apiError(w, http.StatusBadRequest, "parameter "+strconv.Quote(k)+" given more than once")
			return
		}
	}
	f := gateway.ApprovalFilter{Principal: q.Get("principal"), Backend: q.Get("backend"), Target: q.Get("tool"), Limit: 1000,
		VisibleTo: visibility(p)}
	for _, v := range q["state"] {
		for st := range strings.SplitSeq(v, ",") {
			if !slices.Contains(gateway.ApprovalStates, gateway.ApprovalState(st)) {
				apiError(w, http.StatusBadRequest, "unknown state "+strconv.Quote(st))
				return
			}
			f.States = append(f.States, gateway.ApprovalState(st))
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			apiError(w, http.StatusBadRequest, "limit must be a number from 1 to 1000")
			return
		}
		f.Limit = n
	}
	items, err := a.s.List(r.Context(), f)
	if err != nil {
		a.s.log.Error("list approvals", slog.String("err", err.Error()))
		apiError(w, http.StatusServiceUnavailable, "approval store unavailable")
		return
	}
	visible := make([]*gateway.ApprovalItem, 0, len(items))
	for _, it := range items {
		if CanSee(p, it) {
			visible = append(visible, it)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": visible})
}

func (a *api) get(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r)
	if !ok {
		return
	}
	it, err := a.s.Get(r.Context(), chi.URLParam(r, "id"))
	switch {
	case errors.Is(err, gateway.ErrApprovalNotFound) || err == nil && !CanSee(p, it):
		// An item the caller may not see is answered like an unknown one.
		apiError(w, http.StatusNotFound, "no such approval")
	case err != nil:
		a.s.log.Error("read approval", slog.String("err", err.Error()))
		apiError(w, http.StatusServiceUnavailable, "approval store unavailable")
	default:
		writeJSON(w, http.StatusOK, it)
	}
}

func (a *api) decide(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := principal(w, r)
		if !ok {
			return
		}
		var body struct {
			Comment string `json:"comment"`
		}
		// Always JSON, even without a body: a form or text/plain POST, which
		// a page on another site can send without a preflight, is refused.
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			apiError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			return
		}
		data, err := io.ReadAll(io.LimitReader(r.Body, 16<<10+1))
		if err != nil || len(data) > 16<<10 {
			apiError(w, http.StatusBadRequest, "body unreadable or larger than 16 KiB")
			return
		}
		if len(data) > 0 {
			dec := json.NewDecoder(strings.NewReader(string(data)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil {
				apiError(w, http.StatusBadRequest, "body must be a JSON object {\"comment\": \"...\"}")
				return
			}
		}
		id := chi.URLParam(r, "id")
		if cur, err := a.s.Get(r.Context(), id); err == nil && !CanSee(p, cur) {
			apiError(w, http.StatusNotFound, "no such approval")
			return
		}
		it, err := a.s.Decide(r.Context(), id, p, approve, body.Comment)
		var de *ErrDecision
		switch {
		case errors.As(err, &de):
			apiError(w, de.Status, de.Msg)
		case err != nil:
			a.s.log.Error("decide approval", slog.String("err", err.Error()))
			apiError(w, http.StatusServiceUnavailable, "the decision could not be recorded: nothing changed")
		default:
			writeJSON(w, http.StatusOK, it)
		}
	}
}

// visibility selects, in the store, the items p may see (CanSee): the
// limits of a list apply to those, not to everybody's.
func visibility(p gateway.Principal) *gateway.ApprovalVisibility {
	return &gateway.ApprovalVisibility{Principal: p.ID, Groups: p.Groups, All: slices.ContainsFunc(ObserverGroups, p.InGroup)}
}

// checkOrigin admits a WebSocket with no Origin (not a browser), the
// gateway's own origin, and the allow-listed ones.
func (a *api) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	o := strings.ToLower(origin)
	if a.origins[o] {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host == strings.ToLower(r.Host)
}

// feed serves the live feed: the pending items the caller may see, then
// every change to an item it may see, as Events.
func (a *api) feed(w http.ResponseWriter, r *http.Request) {
	p, ok := principal(w, r)
	if !ok {
		return
	}
	if !a.checkOrigin(r) {
		apiError(w, http.StatusForbidden, "origin not allowed")
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		apiError(w, http.StatusBadRequest, "a WebSocket upgrade is required")
		return
	}
	sub, err := a.s.hub.subscribe(p)
	if err != nil {
		apiError(w, http.StatusTooManyRequests, err.Error())
		return
	}
	defer a.s.hub.unsubscribe(sub)
	conn, err := a.up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	defer conn.Close()
	conn.SetReadLimit(4096)
	// The read loop handles control frames, and notices the peer going.
	go func() {
		defer a.s.hub.unsubscribe(sub)
		conn.SetReadDeadline(time.Now().Add(a.ping + 15*time.Second))
		conn.SetPongHandler(func(string) error {
			return conn.SetReadDeadline(time.Now().Add(a.ping + 15*time.Second))
		})
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}()
	// Subscribed before the snapshot is read: nothing falls between.
	items, err := a.s.List(r.Context(), gateway.ApprovalFilter{States: []gateway.ApprovalState{gateway.ApprovalPending}, Limit: 1000,
		VisibleTo: visibility(p)})
	if err != nil {
		conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseInternalServerErr, "approval store unavailable"), time.Now().Add(writeWait))
		return
	}
	snap := make([]*gateway.ApprovalItem, 0, len(items))
	for _, it := range items {
		if CanSee(p, it) {
			snap = append(snap, feedItem(it))
		}
	}
	if err := a.write(conn, Event{Type: "snapshot", Items: snap}); err != nil {
		return
	}
	ping := time.NewTicker(a.ping)
	defer ping.Stop()
	for {
		select {
		case msg := <-sub.ch:
			conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := conn.WriteMessage(websocket.TextMessage, msg); err != nil {
				return
			}
		case <-ping.C:
			if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				return
			}
		case <-sub.gone:
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "feed dropped: reconnect"), time.Now().Add(writeWait))
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (a *api) write(conn *websocket.Conn, ev Event) error {
	conn.SetWriteDeadline(time.Now().Add(writeWait))
	return conn.WriteJSON(ev)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": strings.TrimSpace(msg)})
}
