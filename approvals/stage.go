package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// Stage returns the pipeline stage: it goes after policy and before the
// audit Gate. A message whose decision asks for no approval passes at the
// cost of two pointer checks.
func (s *Service) Stage() gateway.Stage { return stage{s} }

type stage struct{ s *Service }

// Handle holds x when policy asks for an approval, and passes it on only
// under an approved, claimed grant.
func (st stage) Handle(ctx context.Context, x *gateway.Exchange, next gateway.Handler) error {
	if d := x.Decision; d == nil || d.Approval == nil || !d.Allow {
		return next.Handle(ctx, x)
	}
	return st.s.hold(ctx, x, next)
}

// holdable are the methods whose calls can be held: a client's request to
// one backend, whose effect a reviewer can judge from its arguments.
var holdable = map[string]bool{"tools/call": true, "prompts/get": true, "resources/read": true}

// errRegrant: the grant the request waited on was taken by another
// delivery; the request needs a new item.
var errRegrant = errors.New("the approval was used by another delivery")

// hold creates or attaches to the item for x's call, waits for its
// decision, and delivers x once under an approved grant.
func (s *Service) hold(ctx context.Context, x *gateway.Exchange, next gateway.Handler) error {
	req := x.Decision.Approval
	if x.Kind != gateway.KindRequest || x.Direction != gateway.ClientToBackend || x.Backend == "" || !holdable[x.Method] || x.Principal == nil {
		msg := "approval required"
		if req.Reason != "" {
			msg += " (" + req.Reason + ")"
		}
		return &gateway.Error{Code: gateway.CodeRefused, Message: msg + ": only a client's tools/call, prompts/get or resources/read can be held for approval; the message was not delivered"}
	}
	binding := gateway.ApprovalBinding{
		Principal: x.Principal.ID, Backend: x.Backend, Method: x.Method, Target: x.Target,
		DefinitionHash: gateway.DefinitionHash(x.Definition), ArgumentsHash: gateway.ArgumentsHash(x.Arguments),
		PolicyVersion: x.Decision.PolicyVersion,
	}
	mode := req.Mode
	if mode == "" {
		mode = s.mode
	}
	if x.Principal.Anonymous {
		// Every anonymous client is the same principal: a retry could
		// attach to another client's grant. Anonymous calls are held.
		mode = gateway.ApprovalModeHold
	}
	for range 4 {
		it, err := s.acquire(ctx, x, binding, mode)
		if err != nil {
			return err
		}
		err = s.await(ctx, x, it, next)
		if !errors.Is(err, errRegrant) {
			return err
		}
	}
	return &gateway.Error{Code: gateway.CodeApprovalUnavailable, Message: "the call's approvals kept being used by other identical calls: send it again"}
}

// maxWaiters bounds the requests attached to one item (retry mode).
const maxWaiters = 16

// acquire returns the item x waits on: in retry mode an open item for the
// identical call, else a new one. It records x's held row first: an item
// exists only once the request it holds is on record.
func (s *Service) acquire(ctx context.Context, x *gateway.Exchange, b gateway.ApprovalBinding, mode string) (*gateway.ApprovalItem, error) {
	if mode == gateway.ApprovalModeRetry {
		open, err := s.store.Approvals(ctx, gateway.ApprovalFilter{Binding: &b,
			States: []gateway.ApprovalState{gateway.ApprovalPending, gateway.ApprovalApproved}})
		if err != nil {
			return nil, s.unavailable(err)
		}
		now := s.now()
		var it *gateway.ApprovalItem
		for _, o := range open {
			if o.Mode != gateway.ApprovalModeRetry || !now.Before(o.Expires) || o.Claimed != nil {
				continue
			}
			if it == nil || o.State == gateway.ApprovalApproved && it.State != gateway.ApprovalApproved {
				it = o
			}
		}
		if it != nil {
			if s.Waiting(it.ID) >= maxWaiters {
				return nil, &gateway.Error{Code: gateway.CodeApprovalUnavailable,
					Message: fmt.Sprintf("%d identical calls already wait on approval %s: the call was not forwarded", maxWaiters, it.ID)}
			}
			if _, err := s.held(ctx, x, it.ID, it.AuditSeq); err != nil {
				return nil, err
			}
			return it, nil
		}
	}
	return s.create(ctx, x, b, mode)
}

// held records x's own row, held under item id (ref: the item's first
// held row, when x is not it), and marks x held.
func (s *Service) held(ctx context.Context, x *gateway.Exchange, id string, ref int64) (int64, error) {
	x.Grant = &gateway.Grant{ID: id}
	r := s.requestRow(x)
	r.Outcome, r.Approval, r.Ref = "held", id, ref
	if err := s.audit.Append(ctx, r); err != nil {
		x.Grant = nil
		return 0, &gateway.Error{Code: gateway.CodeAuditUnavailable, Message: "audit log unavailable: the message was not forwarded", Err: err}
	}
	x.AuditSeq, x.Grant.AuditSeq = r.Seq, r.Seq
	return r.Seq, nil
}

// create stores a new pending item for x, after x's held row, supersedes
// the pending items of the same call judged against another definition or
// policy, and names the earlier ambiguous ones.
func (s *Service) create(ctx context.Context, x *gateway.Exchange, b gateway.ApprovalBinding, mode string) (*gateway.ApprovalItem, error) {
	req := x.Decision.Approval
	now := s.now()
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = s.timeout
	}
	reviewers := req.Reviewers
	if reviewers == "" {
		reviewers = s.reviewers
	}
	it := &gateway.ApprovalItem{
		ID: newID(), State: gateway.ApprovalPending, Mode: mode, ApprovalBinding: b,
		TokenID: x.Principal.TokenID, Reason: req.Reason, Reasons: x.Decision.Reasons, Rules: x.Decision.Rules,
		Reviewers: reviewers, Quorum: max(req.Quorum, 1), Created: now, Expires: now.Add(timeout), Updated: now,
		Findings: gateway.AuditFindingsText(x.Findings),
	}
	if x.Session != nil {
		it.Session, it.Transport = x.Session.ID, x.Session.Transport
	}
	if len(x.Arguments) > 0 {
		if c, err := jsonrpc.Canonical(x.Arguments); err == nil {
			it.Arguments = string(c)
		}
	}
	same, err := s.store.Approvals(ctx, gateway.ApprovalFilter{CallOf: &b,
		States: []gateway.ApprovalState{gateway.ApprovalPending, gateway.ApprovalAmbiguous}})
	if err != nil {
		return nil, s.unavailable(err)
	}
	var stale []string
	for _, o := range same {
		switch {
		case o.State == gateway.ApprovalAmbiguous:
			it.Related = append(it.Related, o.ID)
		case o.DefinitionHash != b.DefinitionHash || o.PolicyVersion != b.PolicyVersion:
			stale = append(stale, o.ID)
		}
	}
	if s.maxPending > 0 {
		// Checked before anything is recorded; InsertApproval checks
		// again in its transaction.
		mine, err := s.store.CountApprovals(ctx, b.Principal)
		if err != nil {
			return nil, s.unavailable(err)
		}
		if mine[gateway.ApprovalPending] >= s.maxPending {
			return nil, s.limited(b.Principal)
		}
	}
	seq, err := s.held(ctx, x, it.ID, 0)
	if err != nil {
		return nil, err
	}
	it.AuditSeq = seq
	it.Transitions = []gateway.ApprovalTransition{{To: gateway.ApprovalPending, Actor: b.Principal, Time: now, AuditSeq: seq}}
	if err := s.store.InsertApproval(ctx, it, s.maxPending); err != nil {
		// The held row is on record; the Outer stage records the refusal
		// as its answer.
		x.Grant = nil
		if errors.Is(err, gateway.ErrApprovalLimit) {
			return nil, s.limited(b.Principal)
		}
		return nil, s.unavailable(err)
	}
	s.metrics.created.Add(1)
	if stored, err := s.store.Approval(ctx, it.ID); err == nil {
		it = stored // with its revision
	}
	s.published(it)
	for _, id := range stale {
		why := "superseded by " + it.ID + ": the tool definition or the policy changed"
		if _, _, err := s.transition(ctx, id, []gateway.ApprovalState{gateway.ApprovalPending}, gateway.ApprovalCancelled, System, why, why, nil); err != nil {
			s.log.Warn("superseding an approval failed", slog.String("approval", id), slog.String("err", err.Error()))
		}
	}
	return it, nil
}

// limited is the refusal of a call whose principal has too many pending.
func (s *Service) limited(principal string) error {
	s.metrics.limited.Add(1)
	return &gateway.Error{Code: gateway.CodeApprovalUnavailable,
		Message: fmt.Sprintf("approval required, but %s already has %d calls waiting for approval: the call was not forwarded", principal, s.maxPending)}
}

// published pushes a new item and tells the create hooks.
func (s *Service) published(it *gateway.ApprovalItem) {
	s.changed(it)
	s.mu.Lock()
	hooks := s.hooks
	s.mu.Unlock()
	for _, h := range hooks {
		h(it)
	}
}

func (s *Service) unavailable(err error) error {
	s.setStoreErr(err)
	s.log.Error("approval store failed; call refused", slog.String("err", err.Error()))
	return &gateway.Error{Code: gateway.CodeApprovalUnavailable, Message: "approval required, but the approval store is unavailable: the call was not forwarded", Err: err}
}

// await waits until item it is decided, then delivers x under it once, or
// returns the outcome's error.
func (s *Service) await(ctx context.Context, x *gateway.Exchange, it *gateway.ApprovalItem, next gateway.Handler) error {
	changes, stop := s.wait(it.ID)
	defer stop()
	tick := time.NewTicker(s.progress)
	defer tick.Stop()
	var progress float64
	notify := func() {
		if x.Progress == nil {
			return
		}
		progress++
		msg := fmt.Sprintf("waiting for approval %s by %s", it.ID, it.Reviewers)
		if it.Reason != "" {
			msg += ": " + it.Reason
		}
		if left := it.Expires.Sub(s.now()); left > 0 {
			msg += fmt.Sprintf(" (expires in %s)", shortDuration(left))
		}
		x.Progress(ctx, progress, msg)
	}
	notify()
	bg := context.WithoutCancel(ctx)
	gone := gateway.ClientGone(ctx)
	for {
		cur, err := s.store.Approval(bg, it.ID)
		if err != nil {
			return s.unavailable(err)
		}
		it = cur
		switch it.State {
		case gateway.ApprovalApproved:
			if it.Claimed != nil {
				return errRegrant
			}
			return s.deliver(ctx, x, it, next)
		case gateway.ApprovalDenied:
			return decisionError(gateway.CodeApprovalDenied, it, "approval "+nonEmpty(it.Outcome, "denied"))
		case gateway.ApprovalExpired:
			return decisionError(gateway.CodeApprovalExpired, it, "approval expired: "+nonEmpty(it.Outcome, expiredText(it)))
		case gateway.ApprovalCancelled:
			return decisionError(gateway.CodeApprovalCancelled, it, "approval cancelled: "+nonEmpty(it.Outcome, "cancelled"))
		case gateway.ApprovalExecuted, gateway.ApprovalFailed, gateway.ApprovalAmbiguous:
			return errRegrant
		}
		wait := it.Expires.Sub(s.now())
		if wait <= 0 {
			if _, err := s.expire(bg, it.ID); err != nil {
				return s.unavailable(err)
			}
			continue
		}
		timer := time.NewTimer(wait)
		select {
		case <-changes:
		case <-timer.C:
		case <-tick.C:
			if why := s.changedSince(ctx, x, it); why != "" {
				why += " while the call waited"
				if _, _, err := s.transition(bg, it.ID, []gateway.ApprovalState{gateway.ApprovalPending}, gateway.ApprovalCancelled, System, why, why, nil); err != nil {
					timer.Stop()
					return s.unavailable(err)
				}
			}
			notify()
		case <-ctx.Done():
			timer.Stop()
			return s.abandon(ctx, it, "")
		case <-gone:
			// The request's connection closed: its answer has nowhere to
			// go, so the call is not worth delivering.
			timer.Stop()
			return s.abandon(ctx, it, "its connection closed")
		}
		timer.Stop()
	}
}

// abandon handles a waiting client that went away: in hold mode its item
// is cancelled; in retry mode it stays for an identical retry.
func (s *Service) abandon(ctx context.Context, it *gateway.ApprovalItem, what string) error {
	cause := context.Cause(ctx)
	if what != "" {
		cause = errors.New(what)
	}
	// A gateway shutting down leaves the item pending: the client did not
	// give up, and the item expires on time if nobody comes back for it.
	if it.Mode == gateway.ApprovalModeHold && !s.stopping.Load() {
		why := "the client went away"
		if cause != nil {
			why = "the client went away: " + cause.Error()
		}
		if _, _, err := s.transition(context.WithoutCancel(ctx), it.ID, []gateway.ApprovalState{gateway.ApprovalPending},
			gateway.ApprovalCancelled, it.Principal, why, why, nil); err != nil {
			s.log.Warn("cancelling an abandoned approval failed", slog.String("approval", it.ID), slog.String("err", err.Error()))
		}
	}
	if cause == nil {
		cause = ctx.Err()
	}
	return &gateway.Error{Code: gateway.CodeRequestCancelled, Message: "request cancelled while waiting for approval " + it.ID, Err: cause}
}

// changedSince says what no longer matches item it: the tool definition
// or the policy in force; "" when both still do.
func (s *Service) changedSince(ctx context.Context, x *gateway.Exchange, it *gateway.ApprovalItem) string {
	if s.policyVersion != nil && s.policyVersion() != it.PolicyVersion {
		return "the policy changed"
	}
	if s.definitionChanged(ctx, x, it) {
		return "the tool definition changed"
	}
	return ""
}

// definitionChanged reports whether x's target is now defined otherwise
// than when the item was created (removed counts as changed). A failed
// look-up is not a change: the delivery will fail on its own.
func (s *Service) definitionChanged(ctx context.Context, x *gateway.Exchange, it *gateway.ApprovalItem) bool {
	if x.CurrentDefinition == nil {
		return false
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	def, err := x.CurrentDefinition(lctx)
	if err != nil {
		return false
	}
	return gateway.DefinitionHash(def) != it.DefinitionHash
}

// deliver claims the approved grant and delivers x once under it,
// recording the outcome.
func (s *Service) deliver(ctx context.Context, x *gateway.Exchange, it *gateway.ApprovalItem, next gateway.Handler) error {
	bg := context.WithoutCancel(ctx)
	if changed := s.changedSince(ctx, x, it); changed != "" {
		why := "not delivered: " + changed + " after the call was held, so the approval no longer matches it"
		if _, moved, err := s.transition(bg, it.ID, []gateway.ApprovalState{gateway.ApprovalApproved}, gateway.ApprovalFailed, System, why, why,
			func(it *gateway.ApprovalItem) bool { return it.Claimed == nil }); err != nil {
			return s.unavailable(err)
		} else if !moved {
			return errRegrant
		}
		it.State = gateway.ApprovalFailed
		return decisionError(gateway.CodeApprovalCancelled, it, "approval no longer matches the call: "+changed+" since it was held; the call was not delivered")
	}
	now := s.now()
	claimed, err := s.store.UpdateApproval(bg, it.ID, func(it *gateway.ApprovalItem) error {
		if it.State != gateway.ApprovalApproved || it.Claimed != nil {
			return errRegrant
		}
		it.Claimed, it.ClaimedBy, it.Updated = &now, s.instance, now
		return nil
	})
	if errors.Is(err, errRegrant) {
		return errRegrant
	}
	if err != nil {
		return s.unavailable(err)
	}
	s.delivering.Store(it.ID, true)
	defer s.delivering.Delete(it.ID)
	s.changed(claimed)
	x.Grant.Approved = true
	err = next.Handle(ctx, x)
	to, outcome := gateway.ApprovalExecuted, ""
	switch {
	case err == nil && x.Answer != nil && x.Answer.Error != nil:
		// Only the code: the backend's text has not passed DLP (the
		// answer's own pass redacts what the client gets).
		to, outcome = gateway.ApprovalFailed, fmt.Sprintf("the backend answered with JSON-RPC error %d", x.Answer.Error.Code)
	case err == nil:
	case errors.Is(err, gateway.ErrNoAnswer):
		to, outcome = gateway.ApprovalAmbiguous, "delivered, and no answer came: "+gateway.RPCError(err).Message
	default:
		to, outcome = gateway.ApprovalFailed, "not delivered: "+gateway.RPCError(err).Message
	}
	if _, _, terr := s.transition(bg, it.ID, []gateway.ApprovalState{gateway.ApprovalApproved}, to, System, "", outcome, nil); terr != nil {
		s.log.Error("recording an approval's outcome failed", slog.String("approval", it.ID), slog.String("outcome", string(to)), slog.String("err", terr.Error()))
	}
	return err
}

// decisionError is the error a held call's client gets for a decided item.
func decisionError(code int, it *gateway.ApprovalItem, msg string) error {
	data := map[string]any{"approval": it.ID, "state": it.State}
	for i := len(it.Votes) - 1; i >= 0; i-- {
		if v := it.Votes[i]; !v.Approve {
			data["reviewer"], data["comment"] = v.Reviewer, v.Comment
			break
		}
	}
	if it.State == gateway.ApprovalExpired {
		data["expired"] = it.Expires.UTC().Format(time.RFC3339)
	}
	b, _ := json.Marshal(data)
	return &gateway.Error{Code: code, Message: msg + " (approval " + it.ID + ")", Data: b}
}

func nonEmpty(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

var _ gateway.Stage = stage{}
