package gateway

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// Direction says which way a message travels through the gateway.
type Direction uint8

const (
	// ClientToBackend is a message from a client toward a backend (or toward
	// the gateway itself, for methods the gateway answers).
	ClientToBackend Direction = iota + 1
	// BackendToClient is a message from a backend (or the gateway) toward a client.
	BackendToClient
)

func (d Direction) String() string {
	switch d {
	case ClientToBackend:
		return "client_to_backend"
	case BackendToClient:
		return "backend_to_client"
	}
	return "unknown"
}

// ParseDirection returns the direction String names.
func ParseDirection(s string) (Direction, bool) {
	switch s {
	case ClientToBackend.String():
		return ClientToBackend, true
	case BackendToClient.String():
		return BackendToClient, true
	}
	return 0, false
}

// Kind classifies a message within its direction.
type Kind uint8

const (
	// KindRequest is a request from the client.
	KindRequest Kind = iota + 1
	// KindResult is a response (result or error) to a request.
	KindResult
	// KindNotification is a notification, either way.
	KindNotification
	// KindServerRequest is a request a backend sends to the client
	// (sampling, elicitation, roots/list).
	KindServerRequest
)

func (k Kind) String() string {
	switch k {
	case KindRequest:
		return "request"
	case KindResult:
		return "result"
	case KindNotification:
		return "notification"
	case KindServerRequest:
		return "server_request"
	}
	return "unknown"
}

// SessionInfo describes the client session an exchange belongs to. It is
// set when the session is initialized and not changed afterwards.
type SessionInfo struct {
	// ID is the gateway's session id (never a backend's).
	ID string
	// Transport is the client transport: "stdio", "http" or "sse".
	Transport string
	// ProtocolVersion is the MCP version negotiated with the client.
	ProtocolVersion string
	// ClientName and ClientVersion are the client's self-reported
	// clientInfo; they are informational and never used to authorize.
	ClientName    string
	ClientVersion string
}

// Exchange carries one MCP message through the pipeline, with everything a
// stage needs to judge it. The Message is exactly what will be delivered if
// every stage passes it: the body is the truth.
type Exchange struct {
	Direction Direction
	Kind      Kind
	// Method is the JSON-RPC method; for results, the method of the request
	// they answer.
	Method    string
	Principal *Principal
	Session   *SessionInfo
	// Backend is the backend id the message goes to or comes from; empty
	// for messages the gateway answers itself (initialize, ping, lists).
	Backend string
	// Target is the tool or prompt name as the backend knows it (without
	// the namespace prefix), or a resource URI.
	Target string
	// Arguments are the tool or prompt arguments, raw JSON, when present.
	Arguments json.RawMessage
	// Definition is the backend's definition of the target tool or prompt,
	// raw JSON, when known.
	Definition json.RawMessage
	// Message is the message as it will be delivered. Stages that change it
	// (redaction) replace it.
	Message *jsonrpc.Message
	// Request is, for results, the exchange of the request they answer.
	Request *Exchange
	// Time is when the message entered the gateway.
	Time time.Time
	// AuditSeq is the Seq of the exchange's audit row, once the audit
	// stage recorded it (0 before).
	AuditSeq int64
	// Decision is policy's decision, once the policy stage made it.
	Decision *Decision
	// Listed is, on a request for an aggregated list (tools/list,
	// prompts/list, resources/list, resources/templates/list), where each
	// entry of its answer came from, in the answer's order. The routing
	// step fills it in; the policy stage filters the answer by it.
	Listed []ListedEntry
	// Findings are what the DLP stage found in the message (after its
	// redactions, the message no longer holds the values).
	Findings []Finding
	// Grant is the approval that authorized delivering this request, set
	// by the approval stage; the audit Gate refuses a request whose
	// decision asks for approval and that carries none.
	Grant *Grant
	// Progress, on a client's request that asked for progress (a
	// progressToken), sends the client a progress notification while the
	// request waits (for an approval); nil otherwise.
	Progress Progress
	// CurrentDefinition, on a routed tools/call or prompts/get, looks the
	// target's definition up again (the backend may have changed it since
	// the call was routed); nil elsewhere.
	CurrentDefinition func(ctx context.Context) (json.RawMessage, error)
	// Answer is, on a delivered request, the backend's answer as it came
	// back (a result or a JSON-RPC error), before its own pass through
	// the pipeline.
	Answer *jsonrpc.Message

	deliver func(ctx context.Context, x *Exchange) error
}

// Replace puts m, a rewritten copy of x.Message (a redaction), in its
// place, and derives again what the exchange took from the message, so
// that no stage after it, nor the audit row, sees a value the redaction
// removed: the arguments, and the target where it came from the name or
// URI in the params (params.name, params.uri, params.ref.name,
// params.ref.uri; a namespace prefix before the target is kept off).
func (x *Exchange) Replace(m *jsonrpc.Message) {
	old := x.Message
	x.Message = m
	if len(x.Arguments) > 0 {
		x.Arguments, _ = jsonrpc.Member(m.Params, "arguments")
	}
	if x.Target == "" || old == nil || len(old.Params) == 0 {
		return
	}
	for _, keys := range targetSources {
		o, ok := memberString(old.Params, keys)
		if !ok || !strings.HasSuffix(o, x.Target) {
			continue
		}
		n, _ := memberString(m.Params, keys)
		if n == o {
			continue
		}
		if prefix := o[:len(o)-len(x.Target)]; strings.HasPrefix(n, prefix) {
			x.Target = n[len(prefix):]
		} else {
			x.Target = n // the redaction reached into the prefix
		}
		return
	}
}

// targetSources are where in the params a target comes from.
var targetSources = [][]string{{"name"}, {"uri"}, {"ref", "name"}, {"ref", "uri"}}

// memberString returns the string at the member path keys of obj.
func memberString(obj json.RawMessage, keys []string) (string, bool) {
	for _, k := range keys {
		var ok bool
		if obj, ok = jsonrpc.Member(obj, k); !ok {
			return "", false
		}
	}
	return jsonrpc.Unquote(obj)
}

// ListedEntry is the origin of one entry of an aggregated list.
type ListedEntry struct {
	// Backend is the backend id the entry came from.
	Backend string
	// Name is the entry's name as the backend knows it (tools and
	// prompts), or its URI or URI template (resources).
	Name string
	// Definition is the entry as the backend listed it (before the
	// gateway renamed or adapted it): what a call to it would see.
	Definition json.RawMessage
}

// NewExchange returns an exchange whose final step, after every stage has
// passed it, is deliver.
func NewExchange(deliver func(ctx context.Context, x *Exchange) error) *Exchange {
	return &Exchange{deliver: deliver, Time: time.Now()}
}

// Deliver performs the exchange's final step. Stages never call it; the
// compiled chain does, after the last stage.
func (x *Exchange) Deliver(ctx context.Context) error {
	if x.deliver == nil {
		return Errorf(CodeInternal, "exchange has no delivery")
	}
	return x.deliver(ctx, x)
}

// Handler handles an exchange.
type Handler interface {
	Handle(ctx context.Context, x *Exchange) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, x *Exchange) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, x *Exchange) error { return f(ctx, x) }

// Stage is one step of the pipeline: DLP, policy, approval, audit,
// credential injection. Handle inspects (and may replace) x.Message, then
// either calls next to pass the exchange on, or returns an error to refuse
// it. A stage must not call next more than once. An error refuses the
// message: the gateway answers a refused request with a JSON-RPC error
// derived from it (see RPCError) and drops a refused notification. A stage
// that fails for any reason must refuse: the pipeline fails closed.
type Stage interface {
	Handle(ctx context.Context, x *Exchange, next Handler) error
}

// Chain compiles stages into one Handler, once, at start-up. The first
// stage sees the exchange first; after the last one the exchange is
// delivered.
func Chain(stages ...Stage) Handler {
	var h Handler = HandlerFunc(func(ctx context.Context, x *Exchange) error { return x.Deliver(ctx) })
	for _, s := range slices.Backward(stages) {
		h = link{stage: s, next: h}
	}
	return h
}

type link struct {
	stage Stage
	next  Handler
}

func (l link) Handle(ctx context.Context, x *Exchange) error { return l.stage.Handle(ctx, x, l.next) }
