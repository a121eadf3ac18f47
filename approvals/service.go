// Package approvals holds calls that policy sends for human approval until
// reviewers decide, and delivers each approved call exactly once.
//
// The Service owns the state machine of gateway.ApprovalItem over a
// gateway.ApprovalStore (SQLite), records every transition in the audit
// log, wakes the requests waiting on an item, pushes each change to the
// reviewers' live feeds, and expires what nobody decided. The Stage sits
// in the pipeline between policy and the audit Gate. See DESIGN.md.
package approvals

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sallyport/sallyport/gateway"
)

// System is the actor of transitions the gateway makes itself (expiry,
// delivery outcomes).
const System = "sallyport"

// Groups whose members see every item (besides the reviewers of each).
var ObserverGroups = []string{"admin", "auditor"}

// Options configure a Service.
type Options struct {
	Store gateway.ApprovalStore
	Audit gateway.AuditLog
	// RequestRow builds the audit row of a held request (audit.Auditor.Row).
	RequestRow func(x *gateway.Exchange) *gateway.AuditRecord

	// Timeout, Mode and Reviewers apply when policy names none.
	Timeout   time.Duration
	Mode      string
	Reviewers string
	// MaxPending caps one principal's pending items.
	MaxPending int
	// AllowSelfApproval lets a reviewer approve their own call.
	AllowSelfApproval bool
	// ProgressInterval is how often a waiting client gets progress.
	ProgressInterval time.Duration
	// PolicyVersion, when set, returns the version of the policy in force:
	// a call held under another version is not delivered (its decision is
	// stale), and a pending one is cancelled.
	PolicyVersion func() string
	// DeliveryLease bounds how long a claimed delivery may go without an
	// outcome before another process calls it ambiguous (its process may
	// be alive on another host); default 10m. Give it at least the
	// longest backend start plus request timeout.
	DeliveryLease time.Duration
	// PollInterval is how often the store is read for changes made by
	// other processes (the CLI); default 250ms.
	PollInterval time.Duration
	Logger       *slog.Logger
	// Now, for tests; default time.Now.
	Now func() time.Time
}

// Service is the approval queue. Its methods are safe for concurrent use.
type Service struct {
	store      gateway.ApprovalStore
	audit      gateway.AuditLog
	requestRow func(x *gateway.Exchange) *gateway.AuditRecord
	timeout    time.Duration
	mode       string
	reviewers  string
	maxPending int
	selfOK     bool
	progress   time.Duration
	poll       time.Duration
	log        *slog.Logger
	now        func() time.Time

	hub     *Hub
	metrics metrics

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
	// seen is the newest revision published per item, so a change is
	// pushed once whether this process or another made it.
	seen    map[string]int64
	lastRev int64
	// hooks are told of each new pending item (webhooks).
	hooks []func(*gateway.ApprovalItem)

	storeErr      atomic.Pointer[string]
	policyVersion func() string
	// instance names this process in the claims it makes.
	instance string
	lease    time.Duration
	// delivering are the items this process claimed and is delivering.
	delivering sync.Map
	// stopping is set when Run's context ends: the gateway is shutting
	// down, and the requests it drops did not give up on their calls.
	stopping atomic.Bool
}

// ErrDecision is the kind of a refused decision; errors.As gives the
// status a client of the API gets.
type ErrDecision struct {
	// Status is the HTTP status: 403 not allowed, 404 unknown, 409 not
	// pending or voted already, 410 expired.
	Status int
	Msg    string
}

func (e *ErrDecision) Error() string { return e.Msg }

func refuse(status int, format string, args ...any) error {
	return &ErrDecision{Status: status, Msg: fmt.Sprintf(format, args...)}
}

// New returns a Service; Run must run for expiry and cross-process changes.
func New(opts Options) *Service {
	s := &Service{
		store: opts.Store, audit: opts.Audit, requestRow: opts.RequestRow,
		timeout: opts.Timeout, mode: opts.Mode, reviewers: opts.Reviewers,
		maxPending: opts.MaxPending, selfOK: opts.AllowSelfApproval,
		progress: opts.ProgressInterval, poll: opts.PollInterval,
		log: opts.Logger, now: opts.Now,
		waiters: map[string]map[chan struct{}]struct{}{},
		seen:    map[string]int64{},
	}
	if s.timeout <= 0 {
		s.timeout = 10 * time.Minute
	}
	if s.mode == "" {
		s.mode = gateway.ApprovalModeHold
	}
	if s.reviewers == "" {
		s.reviewers = "reviewers"
	}
	if s.progress <= 0 {
		s.progress = 15 * time.Second
	}
	if s.poll <= 0 {
		s.poll = 250 * time.Millisecond
	}
	s.policyVersion = opts.PolicyVersion
	s.lease = opts.DeliveryLease
	if s.lease <= 0 {
		s.lease = 10 * time.Minute
	}
	s.instance = instanceName()
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.requestRow == nil {
		s.requestRow = func(x *gateway.Exchange) *gateway.AuditRecord { return &gateway.AuditRecord{Time: x.Time} }
	}
	s.hub = newHub(s.log)
	s.metrics.init()
	return s
}

// Hub returns the live feed's subscriber hub.
func (s *Service) Hub() *Hub { return s.hub }

// OnCreate adds fn to what is told of each new pending item. fn must not
// block.
func (s *Service) OnCreate(fn func(*gateway.ApprovalItem)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, fn)
}

// Run expires items and picks up changes other processes made, until ctx
// ends.
func (s *Service) Run(ctx context.Context) {
	if _, rev, err := s.store.ApprovalsSince(ctx, 1<<62); err == nil {
		s.mu.Lock()
		s.lastRev = rev
		// Requests held before Run started (the server accepts calls
		// first) would never hear of a change another process made
		// before rev: they read their items again.
		for _, chs := range s.waiters {
			for ch := range chs {
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
		s.mu.Unlock()
	}
	s.refreshCounts(ctx)
	s.orphans(ctx) // claims of a process that died before this one started
	poll := time.NewTicker(s.poll)
	defer poll.Stop()
	expire := time.NewTicker(time.Second)
	defer expire.Stop()
	for {
		select {
		case <-ctx.Done():
			s.Stop()
			return
		case <-poll.C:
			s.pollChanges(ctx)
		case <-expire.C:
			s.expireDue(ctx)
			s.orphans(ctx)
			s.refreshCounts(ctx)
		}
	}
}

// Stop tells the queue the gateway is shutting down: requests dropped from
// now on leave their items pending (they expire on time), and the live
// feeds are closed. Call it before closing the client sessions.
func (s *Service) Stop() {
	s.stopping.Store(true)
	s.hub.close()
}

// pollChanges publishes the changes made since the last poll (by any
// process) that were not published yet.
func (s *Service) pollChanges(ctx context.Context) {
	s.mu.Lock()
	since := s.lastRev
	s.mu.Unlock()
	items, rev, err := s.store.ApprovalsSince(ctx, since)
	if err != nil {
		s.setStoreErr(err)
		return
	}
	s.setStoreErr(nil)
	for _, it := range items {
		if s.changed(it) {
			s.foreignDecision(it)
		}
	}
	s.mu.Lock()
	if rev > s.lastRev {
		s.lastRev = rev
	}
	s.mu.Unlock()
}

func (s *Service) setStoreErr(err error) {
	if err == nil {
		s.storeErr.Store(nil)
		return
	}
	msg := err.Error()
	s.storeErr.Store(&msg)
}

// foreignDecision counts in the metrics a decision another process (the
// CLI) made on a pending item, as this process counts its own.
func (s *Service) foreignDecision(it *gateway.ApprovalItem) {
	if len(it.Transitions) == 0 {
		return
	}
	t := it.Transitions[len(it.Transitions)-1]
	if t.From != gateway.ApprovalPending || t.To == gateway.ApprovalPending {
		return
	}
	s.metrics.decided(t.To, t.Time.Sub(it.Created))
}

// changed publishes a changed item to the feed and wakes its waiters,
// once per revision; it reports whether this revision was new to it.
func (s *Service) changed(it *gateway.ApprovalItem) bool {
	s.mu.Lock()
	if s.seen[it.ID] >= it.Rev {
		s.mu.Unlock()
		return false
	}
	s.seen[it.ID] = it.Rev
	if len(s.seen) > 100000 {
		// Forget the oldest half; a forgotten item may be pushed twice,
		// never missed.
		n := 0
		for id := range s.seen {
			delete(s.seen, id)
			if n++; n > 50000 {
				break
			}
		}
	}
	for ch := range s.waiters[it.ID] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	s.hub.publish(it)
	return true
}

// wait registers a waiter for changes of item id.
func (s *Service) wait(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.waiters[id] == nil {
		s.waiters[id] = map[chan struct{}]struct{}{}
	}
	s.waiters[id][ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.waiters[id], ch)
		if len(s.waiters[id]) == 0 {
			delete(s.waiters, id)
		}
		s.mu.Unlock()
	}
}

// Waiting reports how many requests wait on item id (tests, status).
func (s *Service) Waiting(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiters[id])
}

// newID returns "apr_" and 128 random bits in lower-case base32.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return "apr_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// Get returns the item id.
func (s *Service) Get(ctx context.Context, id string) (*gateway.ApprovalItem, error) {
	return s.store.Approval(ctx, id)
}

// List returns the items f selects.
func (s *Service) List(ctx context.Context, f gateway.ApprovalFilter) ([]*gateway.ApprovalItem, error) {
	return s.store.Approvals(ctx, f)
}

// CanSee reports whether p may see item it: a reviewer of its group, an
// observer (admin, auditor), or the requester.
func CanSee(p gateway.Principal, it *gateway.ApprovalItem) bool {
	if p.Anonymous {
		return false
	}
	return p.InGroup(it.Reviewers) || slices.ContainsFunc(ObserverGroups, p.InGroup) || p.ID == it.Principal
}

// Decide records reviewer's vote on item id: approve or deny, with a
// comment. A denial denies; the quorum's approval approves. A refused
// decision changes nothing and is an *ErrDecision.
func (s *Service) Decide(ctx context.Context, id string, reviewer gateway.Principal, approve bool, comment string) (*gateway.ApprovalItem, error) {
	if len(comment) > 2000 {
		return nil, refuse(400, "comment is longer than 2000 bytes")
	}
	comment = strings.ToValidUTF8(comment, "\uFFFD")
	it, err := s.store.Approval(ctx, id)
	if errors.Is(err, gateway.ErrApprovalNotFound) {
		return nil, refuse(404, "no approval %s", id)
	}
	if err != nil {
		return nil, fmt.Errorf("decide approval: %w", err)
	}
	if err := s.mayDecide(it, reviewer); err != nil {
		return nil, err
	}
	now := s.now()
	verb := "approve"
	if !approve {
		verb = "deny"
	}
	// The row first: a decision nobody recorded is not taken.
	rec := s.transitionRow(it, reviewer.ID, "sallyport/approval."+verb, comment, now)
	rec.TokenID = reviewer.TokenID
	switch {
	case !approve:
		rec.Outcome = string(gateway.ApprovalDenied)
	case it.Approvals()+1 >= max(it.Quorum, 1):
		rec.Outcome = string(gateway.ApprovalApproved)
	default:
		rec.Outcome = string(gateway.ApprovalPending) // a vote short of the quorum
	}
	if err := s.audit.Append(ctx, rec); err != nil {
		return nil, fmt.Errorf("decide approval: %w", err)
	}
	var moved *gateway.ApprovalTransition
	prev := it
	it, err = s.store.UpdateApproval(ctx, id, func(it *gateway.ApprovalItem) error {
		if err := s.mayDecide(it, reviewer); err != nil {
			return err
		}
		it.Votes = append(it.Votes, gateway.ApprovalVote{Reviewer: reviewer.ID, Approve: approve, Comment: comment, Time: now})
		it.Updated = now
		switch {
		case !approve:
			moved = s.move(it, gateway.ApprovalDenied, reviewer.ID, comment, now, rec.Seq)
			it.Outcome = "denied by " + reviewer.ID
			if comment != "" {
				it.Outcome += ": " + comment
			}
		case it.Approvals() >= max(it.Quorum, 1):
			moved = s.move(it, gateway.ApprovalApproved, reviewer.ID, comment, now, rec.Seq)
		default:
			// A vote short of the quorum: recorded, still pending.
			it.Transitions = append(it.Transitions, gateway.ApprovalTransition{From: it.State, To: it.State,
				Actor: reviewer.ID, Comment: comment, Time: now, AuditSeq: rec.Seq})
		}
		return nil
	})
	if err != nil {
		var de *ErrDecision
		if errors.As(err, &de) {
			s.eventRow(ctx, prev, reviewer.ID, "sallyport/approval.refused", de.Msg, rec.Seq)
			return nil, err
		}
		// The vote's row is written; the log must say it did not take.
		s.eventRow(context.WithoutCancel(ctx), prev, reviewer.ID, "sallyport/approval.refused", "the approval store failed: the decision was not recorded", rec.Seq)
		return nil, fmt.Errorf("decide approval: %w", err)
	}
	if moved != nil {
		s.metrics.decided(moved.To, now.Sub(it.Created))
	}
	if rec.Outcome != string(it.State) {
		// Another vote landed between the read and the write (quorum): the
		// vote's row named the state as it was read; this one says what the
		// vote did.
		r := s.transitionRow(it, reviewer.ID, "sallyport/approval."+string(it.State), comment, now)
		r.TokenID, r.Outcome, r.Ref = reviewer.TokenID, string(it.State), rec.Seq
		if err := s.audit.Enqueue(r); err != nil {
			s.log.Warn("audit write failed", slog.String("approval", it.ID), slog.String("err", err.Error()))
		}
	}
	s.changed(it)
	return it, nil
}

// mayDecide checks that reviewer may vote on it now.
func (s *Service) mayDecide(it *gateway.ApprovalItem, reviewer gateway.Principal) error {
	switch {
	case reviewer.Anonymous || reviewer.ID == "":
		return refuse(403, "an anonymous principal cannot decide approvals")
	case !reviewer.InGroup(it.Reviewers):
		return refuse(403, "%s is not in group %q, which decides %s", reviewer.ID, it.Reviewers, it.ID)
	case reviewer.ID == it.Principal && !s.selfOK:
		return refuse(403, "%s requested this call and cannot decide it (separation of duties)", reviewer.ID)
	case it.State == gateway.ApprovalPending && !s.now().Before(it.Expires):
		return refuse(410, "approval %s expired at %s", it.ID, it.Expires.UTC().Format(time.RFC3339))
	case it.State == gateway.ApprovalExpired:
		return refuse(410, "approval %s expired at %s", it.ID, it.Expires.UTC().Format(time.RFC3339))
	case it.State != gateway.ApprovalPending:
		return refuse(409, "approval %s is %s, not pending", it.ID, it.State)
	case it.Voted(reviewer.ID):
		return refuse(409, "%s has already decided approval %s", reviewer.ID, it.ID)
	}
	return nil
}

// move records it's transition to state to (the caller checked it is
// allowed) and returns it.
func (s *Service) move(it *gateway.ApprovalItem, to gateway.ApprovalState, actor, comment string, now time.Time, seq int64) *gateway.ApprovalTransition {
	t := gateway.ApprovalTransition{From: it.State, To: to, Actor: actor, Comment: comment, Time: now, AuditSeq: seq}
	it.Transitions = append(it.Transitions, t)
	it.State, it.Updated = to, now
	return &it.Transitions[len(it.Transitions)-1]
}

// errNotFrom is a transition whose item was not in the expected state.
type errNotFrom struct{ state gateway.ApprovalState }

func (e errNotFrom) Error() string { return "approval is " + string(e.state) }

// transition moves item id to state to when it is in one of from (and
// check, if set, passes), recording an audit row first. It returns the
// item as stored, and whether it moved.
func (s *Service) transition(ctx context.Context, id string, from []gateway.ApprovalState, to gateway.ApprovalState,
	actor, comment, outcome string, check func(*gateway.ApprovalItem) bool) (*gateway.ApprovalItem, bool, error) {
	it, err := s.store.Approval(ctx, id)
	if err != nil {
		return nil, false, err
	}
	if !slices.Contains(from, it.State) || check != nil && !check(it) {
		return it, false, nil
	}
	now := s.now()
	rec := s.transitionRow(it, actor, "sallyport/approval."+string(to), comment, now)
	rec.Outcome = string(to)
	if outcome != "" {
		rec.Error = clip(outcome)
	}
	if err := s.audit.Append(ctx, rec); err != nil {
		return it, false, err
	}
	moved := false
	prev := it // UpdateApproval returns no item with its error
	it, err = s.store.UpdateApproval(ctx, id, func(it *gateway.ApprovalItem) error {
		if !slices.Contains(from, it.State) || check != nil && !check(it) {
			return errNotFrom{it.State}
		}
		s.move(it, to, actor, comment, now, rec.Seq)
		if outcome != "" {
			it.Outcome = outcome
		}
		moved = true
		return nil
	})
	var nf errNotFrom
	if errors.As(err, &nf) {
		// Someone else moved it between the read and the write: the row
		// says the attempt did not take.
		s.eventRow(ctx, prev, actor, "sallyport/approval.refused", "the item had become "+string(nf.state), rec.Seq)
		it, err = s.store.Approval(ctx, id)
		return it, false, err
	}
	if err != nil {
		// The row is written; the log must say the transition did not take.
		s.eventRow(context.WithoutCancel(ctx), prev, actor, "sallyport/approval.refused", "the approval store failed: the transition was not recorded", rec.Seq)
		return nil, false, err
	}
	if to == gateway.ApprovalExpired || to == gateway.ApprovalCancelled {
		if it.Transitions[len(it.Transitions)-1].From == gateway.ApprovalPending {
			s.metrics.decided(to, now.Sub(it.Created))
		}
	}
	s.metrics.outcome(to)
	s.changed(it)
	return it, moved, nil
}

// Cancel cancels a pending item on behalf of actor.
func (s *Service) Cancel(ctx context.Context, id, actor, reason string) (*gateway.ApprovalItem, error) {
	it, moved, err := s.transition(ctx, id, []gateway.ApprovalState{gateway.ApprovalPending}, gateway.ApprovalCancelled, actor, reason, reason, nil)
	if errors.Is(err, gateway.ErrApprovalNotFound) {
		return nil, refuse(404, "no approval %s", id)
	}
	if err != nil {
		return nil, err
	}
	if !moved {
		return it, refuse(409, "approval %s is %s, not pending", id, it.State)
	}
	return it, nil
}

// expire moves item id to expired when it is due: pending, or approved
// and never claimed.
func (s *Service) expire(ctx context.Context, id string) (*gateway.ApprovalItem, error) {
	now := s.now()
	it, _, err := s.transition(ctx, id, []gateway.ApprovalState{gateway.ApprovalPending, gateway.ApprovalApproved},
		gateway.ApprovalExpired, System, "", "", func(it *gateway.ApprovalItem) bool {
			return !now.Before(it.Expires) && it.Claimed == nil
		})
	if it != nil && it.State == gateway.ApprovalExpired && it.Outcome == "" {
		// Said once, in the words the client gets.
		return s.store.UpdateApproval(ctx, id, func(it *gateway.ApprovalItem) error {
			it.Outcome = expiredText(it)
			return nil
		})
	}
	return it, err
}

// expireDue expires every item past its expiry.
func (s *Service) expireDue(ctx context.Context) {
	items, err := s.store.Approvals(ctx, gateway.ApprovalFilter{
		States: []gateway.ApprovalState{gateway.ApprovalPending, gateway.ApprovalApproved}, ExpiresBefore: s.now().Add(time.Millisecond), Limit: 500})
	if err != nil {
		s.setStoreErr(err)
		return
	}
	for _, it := range items {
		if it.Claimed != nil {
			continue
		}
		if _, err := s.expire(ctx, it.ID); err != nil {
			s.log.Warn("approval expiry failed", slog.String("approval", it.ID), slog.String("err", err.Error()))
		}
	}
}

// orphans moves to ambiguous the claimed grants whose delivering process
// died before it recorded an outcome (it ran on this host and is gone), or
// that have gone without an outcome for longer than the delivery lease.
// The call may have reached the backend: nobody knows.
func (s *Service) orphans(ctx context.Context) {
	items, err := s.store.Approvals(ctx, gateway.ApprovalFilter{States: []gateway.ApprovalState{gateway.ApprovalApproved}, Limit: 1000})
	if err != nil {
		s.setStoreErr(err)
		return
	}
	now := s.now()
	for _, it := range items {
		if it.Claimed == nil {
			continue
		}
		if _, mine := s.delivering.Load(it.ID); mine {
			continue
		}
		var why string
		switch {
		case it.ClaimedBy != s.instance && processGone(it.ClaimedBy):
			why = "the gateway process delivering it (" + it.ClaimedBy + ") stopped before an answer was recorded"
		case now.Sub(*it.Claimed) > s.lease:
			why = "no outcome was recorded within " + shortDuration(s.lease) + " of the delivery"
		default:
			continue
		}
		claimed := *it.Claimed
		if _, _, err := s.transition(ctx, it.ID, []gateway.ApprovalState{gateway.ApprovalApproved}, gateway.ApprovalAmbiguous, System, why,
			"delivered, and no answer came: "+why, func(it *gateway.ApprovalItem) bool { return it.Claimed != nil && it.Claimed.Equal(claimed) }); err != nil {
			s.log.Warn("an orphaned approval could not be marked ambiguous", slog.String("approval", it.ID), slog.String("err", err.Error()))
		}
	}
}

// instanceName names this process: host, pid and a random nonce.
func instanceName() string {
	host, _ := os.Hostname()
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%x", host, os.Getpid(), b)
}

// processGone reports whether the process an instance name names ran on
// this host and no longer exists. Another host's process is never known
// to be gone (the lease covers it).
func processGone(instance string) bool {
	host, rest, ok := strings.Cut(instance, "/")
	if !ok {
		return false
	}
	if h, _ := os.Hostname(); h != host {
		return false
	}
	pidText, _, _ := strings.Cut(rest, "/")
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return true // this process, and not its own instance: an earlier process with the same pid
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

func (s *Service) refreshCounts(ctx context.Context) {
	counts, err := s.store.CountApprovals(ctx, "")
	if err != nil {
		s.setStoreErr(err)
		return
	}
	s.metrics.setCounts(counts)
}

// expiredText is what an expired item's client is told.
func expiredText(it *gateway.ApprovalItem) string {
	if it.Claimed == nil && len(it.Votes) > 0 && it.Approvals() >= max(it.Quorum, 1) {
		return "approved, but the call did not come back for it within " + shortDuration(it.Expires.Sub(it.Created))
	}
	return "no reviewer decided within " + shortDuration(it.Expires.Sub(it.Created))
}

// shortDuration writes d as "10m", "1h30m", "45s".
func shortDuration(d time.Duration) string {
	d = d.Round(time.Second)
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// transitionRow is the audit row of a transition or vote on it.
func (s *Service) transitionRow(it *gateway.ApprovalItem, actor, method, comment string, now time.Time) *gateway.AuditRecord {
	r := &gateway.AuditRecord{
		Time: now, Session: it.Session, Transport: it.Transport,
		Principal: actor, Direction: gateway.ClientToBackend.String(), Kind: "approval",
		Method: method, Ref: it.AuditSeq, Backend: it.Backend, Target: it.Target,
		Decision: gateway.DecisionApproval, Approval: it.ID, PolicyVersion: it.PolicyVersion,
	}
	if comment != "" {
		r.Reasons = []string{clip(comment)}
	}
	return r
}

// eventRow records an event on an item that changed nothing (a refused
// decision); a failure to record it is logged.
func (s *Service) eventRow(ctx context.Context, it *gateway.ApprovalItem, actor, method, text string, ref int64) {
	if it == nil {
		return
	}
	r := s.transitionRow(it, actor, method, "", s.now())
	r.Outcome, r.Error = gateway.OutcomeRefused, clip(text)
	if ref != 0 {
		r.Ref = ref
	}
	if err := s.audit.Enqueue(r); err != nil {
		s.log.Warn("audit write failed", slog.String("approval", it.ID), slog.String("err", err.Error()))
	}
}

func clip(s string) string {
	if len(s) <= 512 {
		return s
	}
	s = s[:512]
	return strings.ToValidUTF8(s, "") + "…"
}
