package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/backend"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// maxServerRequests bounds a session's backend requests waiting for the
// client; more are refused to the backend.
const maxServerRequests = 64

// relayedCapabilities are the client capabilities the gateway can relay
// to a backend, with the server→client request each one allows.
var relayedCapabilities = map[string]string{
	"sampling":    "sampling/createMessage",
	"elicitation": "elicitation/create",
	"roots":       "roots/list",
}

// serverRequest is a backend's request waiting for the client's answer.
type serverRequest struct {
	leg       *backend.Leg
	backendID json.RawMessage // the id the backend gave it
	method    string
	x         *gateway.Exchange
	timer     *time.Timer
}

// relayedCaps returns the capabilities offered to this session's own
// backends: what the client declared, of what the gateway relays. Shared
// backends are offered none (their requests could not be attributed).
// The caller holds s.mu.
func (s *Session) relayedCapsLocked() json.RawMessage {
	caps := s.clientCaps
	out := json.RawMessage(`{}`)
	_ = jsonrpc.EachMember(caps, func(k string, v json.RawMessage) bool {
		if _, ok := relayedCapabilities[k]; ok {
			out = jsonrpc.SetMember(out, k, v)
		}
		return true
	})
	return out
}

// clientDeclared reports whether the client declared capability c.
func (s *Session) clientDeclared(c string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := jsonrpc.Member(s.clientCaps, c)
	return ok
}

// trackLegCall records a client request in flight on leg; the returned
// function forgets it.
func (s *Session) trackLegCall(l *backend.Leg, id json.RawMessage) func() {
	s.mu.Lock()
	s.legCalls[l] = append(s.legCalls[l], id)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		calls := s.legCalls[l]
		for i, c := range calls {
			if string(c) == string(id) {
				s.legCalls[l] = append(calls[:i:i], calls[i+1:]...)
				break
			}
		}
		if len(s.legCalls[l]) == 0 {
			delete(s.legCalls, l)
		}
	}
}

// runningLegs returns the session's own legs.
func (s *Session) runningLegs() []*backend.Leg {
	s.mu.Lock()
	defer s.mu.Unlock()
	legs := make([]*backend.Leg, 0, len(s.legs))
	for _, l := range s.legs {
		legs = append(legs, l)
	}
	return legs
}

// serverRequest relays a request from one of the session's own backends
// (sampling, elicitation, roots, ping) to the client, under an id the
// gateway allocates; the client's answer goes back under the backend's id.
func (s *Session) serverRequest(l *backend.Leg, msg *jsonrpc.Message) {
	refuse := func(code int, text string) {
		_ = l.Respond(context.Background(), jsonrpc.NewError(msg.ID, code, text, nil))
	}
	if msg.Method != "ping" {
		allowed := false
		for c, m := range relayedCapabilities {
			if m == msg.Method && s.clientDeclared(c) {
				allowed = true
			}
		}
		if !allowed {
			refuse(jsonrpc.CodeMethodNotFound, "the client did not declare a capability for "+msg.Method)
			return
		}
	}
	// A backend started during the client's initialize may ask at once
	// (roots, typically); the client may be asked only once it has said
	// it is initialized. Wait for that, within the request timeout.
	select {
	case <-s.clientReady:
	case <-s.ctx.Done():
		refuse(jsonrpc.CodeInvalidRequest, "the client session closed")
		return
	case <-time.After(l.Spec().Timeouts.Request.D()):
		refuse(jsonrpc.CodeInvalidRequest, "the client session did not become ready")
		return
	}
	s.mu.Lock()
	if len(s.serverReqs) >= maxServerRequests {
		s.mu.Unlock()
		refuse(jsonrpc.CodeInvalidRequest, "too many requests waiting for the client")
		return
	}
	gid := json.RawMessage(`"sp-` + NewSessionID() + `"`) // unguessable: no answer can come before the request
	var related json.RawMessage
	if calls := s.legCalls[l]; len(calls) > 0 {
		related = calls[len(calls)-1]
	}
	s.mu.Unlock()

	out := jsonrpc.NewRequest(gid, msg.Method, msg.Params)
	x := s.newExchange(gateway.BackendToClient, gateway.KindServerRequest, msg.Method, out, func(_ context.Context, x *gateway.Exchange) error {
		sr := &serverRequest{leg: l, backendID: msg.ID, method: msg.Method, x: x}
		key := jsonrpc.IDKey(gid)
		s.mu.Lock()
		// The timer exists before the entry is visible to clientResponse.
		sr.timer = time.AfterFunc(l.Spec().Timeouts.Request.D(), func() {
			if s.takeServerRequest(key) != nil {
				// The gateway answers for the client, through the pipeline
				// like any answer (so the audit log has it).
				s.answerBackend(sr, &jsonrpc.Message{ID: sr.backendID,
					Error: &jsonrpc.Error{Code: gateway.CodeTimeout, Message: "the client did not answer " + msg.Method + " in time"}})
				s.sink.Send(jsonrpc.NewNotification("notifications/cancelled",
					json.RawMessage(`{"requestId":`+string(gid)+`,"reason":"timed out at the gateway"}`)), nil)
			}
		})
		s.serverReqs[key] = sr
		s.mu.Unlock()
		s.sink.Send(x.Message, related)
		return nil
	})
	x.Backend = l.ID()
	if err := s.g.chain.Handle(s.ctx, x); err != nil {
		e := gateway.RPCError(err)
		refuse(e.Code, e.Message)
	}
}

// takeServerRequest removes and returns a waiting backend request.
func (s *Session) takeServerRequest(key string) *serverRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	sr := s.serverReqs[key]
	delete(s.serverReqs, key)
	return sr
}

// clientResponse takes the client's answer to a relayed backend request
// and passes it, through the pipeline, back to that backend under the
// backend's own id. Answers to nothing the gateway asked are dropped.
func (s *Session) clientResponse(msg *jsonrpc.Message) {
	sr := s.takeServerRequest(jsonrpc.IDKey(msg.ID))
	if sr == nil {
		s.log.Debug("client answered a request the gateway did not send; dropped")
		return
	}
	sr.timer.Stop()
	s.answerBackend(sr, &jsonrpc.Message{ID: sr.backendID, Result: msg.Result, Error: msg.Error})
}

// answerBackend passes the answer to a relayed backend request, under the
// backend's own id, through the pipeline back to that backend.
func (s *Session) answerBackend(sr *serverRequest, back *jsonrpc.Message) {
	x := s.newExchange(gateway.ClientToBackend, gateway.KindResult, sr.method, back, func(ctx context.Context, x *gateway.Exchange) error {
		return sr.leg.Respond(ctx, x.Message)
	})
	x.Backend, x.Request = sr.leg.ID(), sr.x
	if err := s.g.chain.Handle(s.ctx, x); err != nil {
		e := gateway.RPCError(err)
		_ = sr.leg.Respond(s.ctx, jsonrpc.NewError(sr.backendID, e.Code, e.Message, e.Data))
	}
}

// serverRequestCancelled handles a backend cancelling one of its own
// requests: the client is told under the gateway's id.
func (s *Session) serverRequestCancelled(l *backend.Leg, msg *jsonrpc.Message) {
	reqID, _ := jsonrpc.Member(msg.Params, "requestId")
	want := jsonrpc.IDKey(reqID)
	s.mu.Lock()
	var key string
	for k, sr := range s.serverReqs {
		if sr.leg == l && jsonrpc.IDKey(sr.backendID) == want {
			key = k
			break
		}
	}
	sr := s.serverReqs[key]
	delete(s.serverReqs, key)
	s.mu.Unlock()
	if sr == nil {
		return
	}
	sr.timer.Stop()
	params := jsonrpc.SetMember(msg.Params, "requestId", sr.x.Message.ID)
	s.notifyClient(l.ID(), jsonrpc.NewNotification("notifications/cancelled", params))
	s.log.Debug("backend cancelled its request", slog.String("backend", l.ID()))
}
