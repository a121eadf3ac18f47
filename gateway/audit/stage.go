// Package audit records every message the gateway's pipeline handles in a
// gateway.AuditLog, exports the log (CSV, JSONL) and verifies its hash
// chain, from the database or from an export.
//
// The Auditor gives the pipeline two stages. Gate sits last before
// delivery: it writes the message's row and waits until it is durable, and
// only then passes the message on; when the row cannot be written the
// message is refused with CodeAuditUnavailable ("no audit row, no
// forward"). Outer sits first: it sees what the stages between refused,
// and requests whose delivery failed, and records those outcomes too.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// Argument recording modes.
const (
	// ArgumentsFull records the canonical JSON arguments.
	ArgumentsFull = "full"
	// ArgumentsDigest records "sha256:<hex>" of the canonical arguments.
	ArgumentsDigest = "digest"
)

// maxErrorText bounds the error message kept in a row.
const maxErrorText = 512

// Options configure an Auditor.
type Options struct {
	Log gateway.AuditLog
	// Arguments is ArgumentsFull (the default) or ArgumentsDigest.
	Arguments string
	// SampleNotifications, when above 1, records one in so many of the
	// high-volume notifications (progress, log messages, resource updates)
	// of each session; the recorded one counts those skipped. Requests,
	// results and every other notification are always recorded.
	SampleNotifications int
	Logger              *slog.Logger
}

// Auditor records exchanges; see the package documentation.
type Auditor struct {
	log    gateway.AuditLog
	digest bool
	sample int
	logger *slog.Logger

	mu      sync.Mutex
	skipped map[sampleKey]int64
}

type sampleKey struct{ session, method string }

// maxSampleKeys bounds the sampling counters; past it they start over,
// which only ever records more.
const maxSampleKeys = 4096

// New returns an Auditor.
func New(opts Options) *Auditor {
	a := &Auditor{log: opts.Log, digest: opts.Arguments == ArgumentsDigest, sample: opts.SampleNotifications, logger: opts.Logger}
	if a.logger == nil {
		a.logger = slog.New(slog.DiscardHandler)
	}
	if a.sample > 1 {
		a.skipped = make(map[sampleKey]int64)
	}
	return a
}

// Outer returns the stage that goes first in the pipeline.
func (a *Auditor) Outer() gateway.Stage { return outer{a} }

// Gate returns the stage that goes last before delivery.
func (a *Auditor) Gate() gateway.Stage { return gate{a} }

type gate struct{ a *Auditor }

// Handle records x durably, then passes it on.
func (g gate) Handle(ctx context.Context, x *gateway.Exchange, next gateway.Handler) error {
	a := g.a
	if d := x.Decision; d != nil && d.Allow && d.Approval != nil && (x.Grant == nil || !x.Grant.Approved) {
		// The seam approvals plug into: a message policy sent for approval
		// passes only with the approval that authorizes it.
		msg := "approval required"
		if d.Approval.Reason != "" {
			msg += " (" + d.Approval.Reason + ")"
		}
		return &gateway.Error{Code: gateway.CodeRefused, Message: msg + ": no approval authorizes it, so it was not delivered"}
	}
	skipped, record := a.sampled(x)
	if !record {
		x.AuditSeq = sampledOut // tells Outer a failure past here is no refusal
		return next.Handle(ctx, x)
	}
	r := a.record(x)
	r.Decision = gateway.DecisionAllow
	a.decision(r, x.Decision)
	r.Skipped = skipped
	if x.Kind == gateway.KindResult {
		r.Outcome = gateway.OutcomeOK
		if x.Message != nil && x.Message.Error != nil {
			e := x.Message.Error
			r.Outcome, r.ErrorCode, r.Error = gateway.OutcomeError, int64(e.Code), clip(e.Message)
		}
	}
	// Everything toward a backend (requests, the client's answers to a
	// backend's requests, its notifications), and a backend's requests to
	// the client, is passed on only once its row is committed. A backend's
	// answers and notifications to the client are queued for the next
	// commit instead of waited for: what they answer is already on record,
	// and the queue refuses them while writes are failing.
	// (An enqueued row belongs to the log from then on: its Seq is set
	// when it is written, by another goroutine.)
	var err error
	seq := int64(queued)
	if x.Direction == gateway.ClientToBackend || x.Kind == gateway.KindServerRequest {
		err = a.log.Append(ctx, r)
		seq = r.Seq
	} else {
		err = a.log.Enqueue(r)
	}
	if err != nil {
		a.logger.Error("audit write failed; message refused", slog.String("method", x.Method), slog.String("err", err.Error()))
		return &gateway.Error{Code: gateway.CodeAuditUnavailable, Message: "audit log unavailable: the message was not forwarded", Err: err}
	}
	x.AuditSeq = seq
	return next.Handle(ctx, x)
}

type outer struct{ a *Auditor }

// AuditSeq values of exchanges the Gate passed whose row has no Seq yet.
const (
	// sampledOut: passed without a row of its own (notification sampling).
	sampledOut = -1
	// queued: its row is queued for the next commit.
	queued = -2
)

// Handle passes x on, and records what became of it when that failed: a
// refusal by a stage, or a request whose delivery failed after its row was
// written.
func (o outer) Handle(ctx context.Context, x *gateway.Exchange, next gateway.Handler) error {
	err := next.Handle(ctx, x)
	if err == nil || x.AuditSeq < 0 || errors.Is(err, gateway.ErrAuditUnavailable) {
		return err
	}
	a := o.a
	r := a.record(x)
	rpc := gateway.RPCError(err)
	r.ErrorCode, r.Error = int64(rpc.Code), clip(rpc.Message)
	switch {
	case x.AuditSeq == 0: // refused before the gate
		r.Outcome = gateway.OutcomeRefused
		r.Decision = gateway.DecisionDeny
		a.decision(r, x.Decision) // the decision column holds policy's verdict
		if d := x.Decision; d == nil || d.Allow && d.Approval == nil {
			// Refused by another stage than policy (or with no policy).
			r.Reasons = append(slices.Clip(r.Reasons), clip(rpc.Message))
		}
	case x.Kind == gateway.KindRequest || x.Kind == gateway.KindServerRequest:
		// Forwarded, and no answer came back: the answer the client gets
		// is this error.
		r.Direction = reverse(x.Direction)
		r.Kind = gateway.KindResult.String()
		r.Ref, r.Arguments, r.Bytes = x.AuditSeq, "", 0
		r.Decision = gateway.DecisionAllow // the request was; its delivery failed
		a.decision(r, x.Decision)
		r.PolicyInput, r.Findings = "", "" // the request's row has them
		r.Time = time.Now()
		r.LatencyMicros = r.Time.Sub(x.Time).Microseconds()
		r.Outcome = gateway.OutcomeError
		if rpc.Code == gateway.CodeRequestCancelled {
			r.Outcome = gateway.OutcomeCancelled
		}
	default:
		return err // a recorded notification or result the peer did not take
	}
	if werr := a.log.Enqueue(r); werr != nil {
		a.logger.Error("audit write failed", slog.String("method", x.Method), slog.String("err", werr.Error()))
	}
	return err
}

func reverse(d gateway.Direction) string {
	if d == gateway.ClientToBackend {
		return gateway.BackendToClient.String()
	}
	return gateway.ClientToBackend.String()
}

// sampled reports whether x is to be recorded and, if so, how many like it
// were skipped before.
func (a *Auditor) sampled(x *gateway.Exchange) (skipped int64, record bool) {
	if a.sample <= 1 || x.Kind != gateway.KindNotification {
		return 0, true
	}
	switch x.Method {
	case "notifications/progress", "notifications/message", "notifications/resources/updated":
	default:
		return 0, true
	}
	k := sampleKey{method: x.Method}
	if x.Session != nil {
		k.session = x.Session.ID
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n, ok := a.skipped[k]
	if !ok {
		if len(a.skipped) >= maxSampleKeys {
			clear(a.skipped)
		}
		a.skipped[k] = 0
		return 0, true // the first of its kind is always recorded
	}
	if n+1 < int64(a.sample) {
		a.skipped[k] = n + 1
		return 0, false
	}
	a.skipped[k] = 0
	return n, true
}

// record builds x's row, without decision or outcome.
func (a *Auditor) record(x *gateway.Exchange) *gateway.AuditRecord {
	r := &gateway.AuditRecord{
		Time:      x.Time,
		Direction: x.Direction.String(),
		Kind:      x.Kind.String(),
		Method:    x.Method,
		Backend:   x.Backend,
		Target:    x.Target,
	}
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	if s := x.Session; s != nil {
		r.Session, r.Transport, r.ProtocolVersion = s.ID, s.Transport, s.ProtocolVersion
		r.ClientName, r.ClientVersion = clip(s.ClientName), clip(s.ClientVersion)
	}
	if x.Method == "initialize" && x.Kind == gateway.KindRequest && r.ClientName == "" && x.Message != nil {
		// The session learns these from this very request.
		info, _ := jsonrpc.Member(x.Message.Params, "clientInfo")
		name, _ := jsonrpc.Member(info, "name")
		version, _ := jsonrpc.Member(info, "version")
		r.ClientName, _ = jsonrpc.Unquote(name)
		r.ClientVersion, _ = jsonrpc.Unquote(version)
		r.ClientName, r.ClientVersion = clip(r.ClientName), clip(r.ClientVersion)
		pv, _ := jsonrpc.Member(x.Message.Params, "protocolVersion")
		r.ProtocolVersion, _ = jsonrpc.Unquote(pv)
		r.ProtocolVersion = clip(r.ProtocolVersion)
	}
	if p := x.Principal; p != nil {
		r.Principal, r.TokenID = p.ID, p.TokenID
	}
	if m := x.Message; m != nil {
		r.MessageID = string(m.ID)
		r.Bytes = int64(len(m.ID) + len(m.Method) + len(m.Params) + len(m.Result))
		if m.Error != nil {
			r.Bytes += int64(len(m.Error.Message) + len(m.Error.Data))
		}
	}
	if x.Request != nil && x.Request.AuditSeq > 0 {
		r.Ref = x.Request.AuditSeq
		r.LatencyMicros = time.Since(x.Request.Time).Microseconds()
	}
	if len(x.Arguments) > 0 {
		r.Arguments = a.arguments(x.Arguments)
	}
	r.Findings = gateway.AuditFindingsText(x.Findings)
	switch {
	case x.Grant != nil:
		r.Approval = x.Grant.ID
		if x.Kind == gateway.KindRequest && r.Ref == 0 {
			r.Ref = x.Grant.AuditSeq // the held request's row
		}
	case x.Request != nil && x.Request.Grant != nil:
		r.Approval = x.Request.Grant.ID
	}
	return r
}

// Row returns the row the Gate would write for x, with its decision: the
// approval stage records a held request with it.
func (a *Auditor) Row(x *gateway.Exchange) *gateway.AuditRecord {
	r := a.record(x)
	r.Decision = gateway.DecisionAllow
	a.decision(r, x.Decision)
	return r
}

// arguments returns the canonical form (or its digest) of raw arguments.
func (a *Auditor) arguments(raw []byte) string {
	c, err := jsonrpc.Canonical(raw)
	if err != nil {
		// Not JSON the codec would have passed; keep a digest of the bytes.
		sum := sha256.Sum256(raw)
		return "sha256-raw:" + hex.EncodeToString(sum[:])
	}
	if a.digest {
		sum := sha256.Sum256(c)
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	return string(c)
}

// decision records policy's decision d (if any) in r.
func (a *Auditor) decision(r *gateway.AuditRecord, d *gateway.Decision) {
	if d == nil {
		return
	}
	r.Decision = d.Verdict()
	r.Reasons = d.Reasons
	if d.Detail != "" {
		r.Reasons = append(slices.Clip(r.Reasons), clip(d.Detail))
	}
	r.Rules = d.Rules
	r.PolicyVersion = d.PolicyVersion
	if len(d.Input) > 0 {
		in := d.Input
		if a.digest {
			// Digest mode keeps message content out of the log.
			in = jsonrpc.DeleteMember(in, "params")
		}
		r.PolicyInput = string(in)
	}
}

// clip bounds a backend- or client-supplied text kept in a row.
func clip(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	s = s[:maxErrorText]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return strings.ToValidUTF8(s, "") + "…"
}

var (
	_ gateway.Stage = gate{}
	_ gateway.Stage = outer{}
)
