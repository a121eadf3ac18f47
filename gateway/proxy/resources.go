package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/backend"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// CodeResourceNotFound is MCP's (legacy) resource-not-found code.
const CodeResourceNotFound = -32002

// logLevels are the syslog levels logging/setLevel accepts.
var logLevels = []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

// resolveURI finds the one backend that serves uri: the backend whose
// resource list holds it, else the backend with a matching URI template.
// Two backends serving the same URI is an error naming both, never a
// silent pick.
func (s *Session) resolveURI(ctx context.Context, uri string) (string, error) {
	for _, kind := range []string{"resources", "templates"} {
		owners := s.owners(ctx, kind, func(e backend.Entry) bool {
			if kind == "resources" {
				return e.Name == uri
			}
			return matchTemplate(e.Name, uri)
		})
		switch len(owners) {
		case 0:
			continue
		case 1:
			return owners[0], nil
		default:
			return "", gateway.Errorf(gateway.CodeInvalidParams, "resource %q is served by backends %s: ambiguous, refused", uri, strings.Join(owners, " and "))
		}
	}
	return "", gateway.Errorf(CodeResourceNotFound, "resource not found: %q", uri)
}

// owners lists the backends with an entry of the given list that matches.
// Backends that are down are left out.
func (s *Session) owners(ctx context.Context, kind string, match func(backend.Entry) bool) []string {
	ids := s.visibleBackends()
	found := make([]bool, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			entries, err := s.leg(id).List(ctx, kind)
			if err != nil {
				return
			}
			found[i] = slices.ContainsFunc(entries, match)
		})
	}
	wg.Wait()
	var out []string
	for i, id := range ids {
		if found[i] {
			out = append(out, id)
		}
	}
	return out
}

// routeURI routes resources/read, subscribe and unsubscribe by params.uri.
func (s *Session) routeURI(ctx context.Context, x *gateway.Exchange) routeFunc {
	rawURI, _ := jsonrpc.Member(x.Message.Params, "uri")
	uri, ok := jsonrpc.Unquote(rawURI)
	if !ok || uri == "" {
		return fail(gateway.Errorf(gateway.CodeInvalidParams, "params.uri must be a string"))
	}
	x.Target = uri
	if x.Method == "resources/unsubscribe" {
		// Unsubscribe goes where the session's subscription went; one it
		// never made is answered here.
		leg := s.g.subscribedLeg(s, uri)
		if leg == nil {
			return answer(json.RawMessage(`{}`))
		}
		x.Backend = leg.ID()
		return func(ctx context.Context, x *gateway.Exchange) (*jsonrpc.Message, error) {
			return s.g.unsubscribe(ctx, s, leg, uri, x.Message.Params)
		}
	}
	lctx, cancel := context.WithTimeout(ctx, s.g.requestTimeout())
	id, err := s.resolveURI(lctx, uri)
	if err != nil && x.Method == "resources/subscribe" && gateway.RPCError(err).Code == CodeResourceNotFound {
		// A URI no backend lists (a resource that does not exist yet) may
		// be watched on the one backend that offers subscriptions.
		id, err = s.soleSubscriber(lctx, uri)
	}
	cancel()
	if err != nil {
		return fail(err)
	}
	x.Backend = id
	leg := s.leg(id)
	switch x.Method {
	case "resources/subscribe":
		return func(ctx context.Context, x *gateway.Exchange) (*jsonrpc.Message, error) {
			return s.g.subscribe(ctx, s, leg, uri, x.Message.Params)
		}
	}
	return s.forward(leg)
}

// forward sends the request as it is to leg.
func (s *Session) forward(leg *backend.Leg) routeFunc {
	return func(ctx context.Context, x *gateway.Exchange) (*jsonrpc.Message, error) {
		return s.call(ctx, x, leg, x.Message.Params)
	}
}

// routeCompletion routes completion/complete by its reference: a prompt by
// its namespaced name, a resource template by its owner.
func (s *Session) routeCompletion(ctx context.Context, x *gateway.Exchange) routeFunc {
	params := x.Message.Params
	ref, _ := jsonrpc.Member(params, "ref")
	rawType, _ := jsonrpc.Member(ref, "type")
	typ, _ := jsonrpc.Unquote(rawType)
	switch typ {
	case "ref/prompt":
		rawName, _ := jsonrpc.Member(ref, "name")
		name, _ := jsonrpc.Unquote(rawName)
		id, target, ok := s.g.resolveName(name)
		if _, listed := s.g.publicName(id, target); !ok || !listed {
			return fail(gateway.Errorf(gateway.CodeInvalidParams, "unknown prompt %q", name))
		}
		x.Backend, x.Target = id, target
		leg := s.leg(id)
		lctx, cancel := context.WithTimeout(ctx, s.g.requestTimeout())
		_, found, err := leg.Lookup(lctx, "prompts", target)
		cancel()
		if err != nil {
			return fail(err)
		}
		if !found {
			return fail(gateway.Errorf(gateway.CodeInvalidParams, "unknown prompt %q", name))
		}
		x.Message = &jsonrpc.Message{ID: x.Message.ID, Method: x.Method,
			Params: jsonrpc.SetMember(params, "ref", jsonrpc.SetMember(ref, "name", jsonrpc.Quote(target)))}
		return s.forward(leg)
	case "ref/resource":
		rawURI, _ := jsonrpc.Member(ref, "uri")
		uri, _ := jsonrpc.Unquote(rawURI)
		x.Target = uri
		lctx, cancel := context.WithTimeout(ctx, s.g.requestTimeout())
		defer cancel()
		owners := s.owners(lctx, "templates", func(e backend.Entry) bool { return e.Name == uri })
		var id string
		switch len(owners) {
		case 1:
			id = owners[0]
		case 0:
			var err error
			if id, err = s.resolveURI(lctx, uri); err != nil {
				return fail(err)
			}
		default:
			return fail(gateway.Errorf(gateway.CodeInvalidParams, "resource template %q is served by backends %s: ambiguous, refused", uri, strings.Join(owners, " and ")))
		}
		x.Backend = id
		return s.forward(s.leg(id))
	}
	return fail(gateway.Errorf(gateway.CodeInvalidParams, "params.ref.type must be ref/prompt or ref/resource"))
}

// setLevel applies logging/setLevel to this session: it is kept, and sent
// to each of the session's own backends that log, now and when they start.
// Shared backends are not told: one client cannot set their level for all.
func (s *Session) setLevel(ctx context.Context, x *gateway.Exchange) (*jsonrpc.Message, error) {
	raw, _ := jsonrpc.Member(x.Message.Params, "level")
	level, _ := jsonrpc.Unquote(raw)
	if !slices.Contains(logLevels, level) {
		return nil, gateway.Errorf(gateway.CodeInvalidParams, "params.level must be one of %s", strings.Join(logLevels, ", "))
	}
	s.mu.Lock()
	s.logLevel = level
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range s.runningLegs() {
		if st, _ := l.Status(); st != backend.StateReady || !l.Offers("logging") {
			continue
		}
		wg.Go(func() { s.applyLevel(ctx, l, level) })
	}
	wg.Wait()
	return &jsonrpc.Message{Result: json.RawMessage(`{}`)}, nil
}

func (s *Session) applyLevel(ctx context.Context, l *backend.Leg, level string) {
	resp, err := l.Call(ctx, "logging/setLevel", json.RawMessage(`{"level":`+string(jsonrpc.Quote(level))+`}`), nil)
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	if err != nil {
		s.log.Warn("logging/setLevel not applied", slog.String("backend", l.ID()), slog.String("err", err.Error()))
	}
}

// legReady is called when one of the session's own legs has started.
func (s *Session) legReady(l *backend.Leg, _ backend.InitResult) {
	s.mu.Lock()
	level := s.logLevel
	s.mu.Unlock()
	if level != "" && l.Offers("logging") {
		ctx, cancel := context.WithTimeout(s.ctx, l.Spec().Timeouts.Request.D())
		defer cancel()
		s.applyLevel(ctx, l, level)
	}
}

// subscriptions counts, per leg and URI, the sessions subscribed, so a
// backend is subscribed once however many clients want the updates, and
// updates go only to those clients.
type subscriptions struct {
	mu sync.Mutex
	m  map[*backend.Leg]map[string]map[*Session]bool
}

// maxSubscriptions bounds one session's resource subscriptions.
const maxSubscriptions = 256

func (g *Gateway) subscribe(ctx context.Context, s *Session, l *backend.Leg, uri string, params json.RawMessage) (*jsonrpc.Message, error) {
	g.subs.mu.Lock()
	n := 0
	for leg, byURI := range g.subs.m {
		for u, sessions := range byURI {
			if sessions[s] && (leg != l || u != uri) { // a repeat of this one does not count
				n++
			}
		}
	}
	if n >= maxSubscriptions {
		g.subs.mu.Unlock()
		return nil, gateway.Errorf(gateway.CodeInvalidRequest, "too many subscriptions in this session (%d)", maxSubscriptions)
	}
	byURI := g.subs.m[l]
	if byURI == nil {
		byURI = map[string]map[*Session]bool{}
		g.subs.m[l] = byURI
	}
	first := len(byURI[uri]) == 0
	if byURI[uri] == nil {
		byURI[uri] = map[*Session]bool{}
	}
	byURI[uri][s] = true
	g.subs.mu.Unlock()
	if !first {
		return &jsonrpc.Message{Result: json.RawMessage(`{}`)}, nil
	}
	resp, err := l.Call(ctx, "resources/subscribe", params, nil)
	if err != nil || resp.Error != nil {
		g.dropSub(s, l, uri)
	}
	return resp, err
}

func (g *Gateway) unsubscribe(ctx context.Context, s *Session, l *backend.Leg, uri string, params json.RawMessage) (*jsonrpc.Message, error) {
	if !g.dropSub(s, l, uri) {
		return &jsonrpc.Message{Result: json.RawMessage(`{}`)}, nil
	}
	return l.Call(ctx, "resources/unsubscribe", params, nil)
}

// dropSub removes s's subscription and reports whether it was the last
// one for that URI on that leg.
func (g *Gateway) dropSub(s *Session, l *backend.Leg, uri string) (last bool) {
	g.subs.mu.Lock()
	defer g.subs.mu.Unlock()
	sessions := g.subs.m[l][uri]
	if !sessions[s] {
		return false
	}
	delete(sessions, s)
	if len(sessions) > 0 {
		return false
	}
	delete(g.subs.m[l], uri)
	if len(g.subs.m[l]) == 0 {
		delete(g.subs.m, l)
	}
	return true
}

// dropSessionSubs removes every subscription of a closing session, and
// unsubscribes shared backends from URIs nobody follows any more.
func (g *Gateway) dropSessionSubs(s *Session) {
	type lu struct {
		l   *backend.Leg
		uri string
	}
	var mine []lu
	g.subs.mu.Lock()
	for l, byURI := range g.subs.m {
		for uri, sessions := range byURI {
			if sessions[s] {
				mine = append(mine, lu{l, uri})
			}
		}
	}
	g.subs.mu.Unlock()
	for _, x := range mine {
		if g.dropSub(s, x.l, x.uri) && g.shared[x.l.ID()] == x.l {
			ctx, cancel := context.WithTimeout(context.Background(), x.l.Spec().Timeouts.Request.D())
			x.l.Call(ctx, "resources/unsubscribe", json.RawMessage(`{"uri":`+string(jsonrpc.Quote(x.uri))+`}`), nil)
			cancel()
		}
	}
}

// resourceUpdated delivers notifications/resources/updated to the
// sessions subscribed to that URI on that leg, and to nobody else.
func (g *Gateway) resourceUpdated(l *backend.Leg, msg *jsonrpc.Message) {
	raw, _ := jsonrpc.Member(msg.Params, "uri")
	uri, _ := jsonrpc.Unquote(raw)
	g.subs.mu.Lock()
	var to []*Session
	for s := range g.subs.m[l][uri] {
		to = append(to, s)
	}
	g.subs.mu.Unlock()
	for _, s := range to {
		s.notifyClient(l.ID(), msg)
	}
}

// soleSubscriber returns the one backend that offers resource
// subscriptions, for a URI no backend lists; with none or several it is
// resource-not-found, naming the candidates.
func (s *Session) soleSubscriber(ctx context.Context, uri string) (string, error) {
	var ids []string
	for _, id := range s.visibleBackends() {
		l := s.leg(id)
		if l.Ensure(ctx) != nil {
			continue
		}
		res, _ := jsonrpc.Member(l.Init().Capabilities, "resources")
		if sub, _ := jsonrpc.Member(res, "subscribe"); string(sub) == "true" {
			ids = append(ids, id)
		}
	}
	if len(ids) == 1 {
		return ids[0], nil
	}
	if len(ids) == 0 {
		return "", gateway.Errorf(CodeResourceNotFound, "resource not found: %q, and no backend offers subscriptions", uri)
	}
	return "", gateway.Errorf(CodeResourceNotFound, "resource not found: %q; backends %s offer subscriptions, so it is ambiguous", uri, strings.Join(ids, " and "))
}

// subscribedLeg returns the leg where session s subscribed to uri, if any.
func (g *Gateway) subscribedLeg(s *Session, uri string) *backend.Leg {
	g.subs.mu.Lock()
	defer g.subs.mu.Unlock()
	for l, byURI := range g.subs.m {
		if byURI[uri][s] {
			return l
		}
	}
	return nil
}
