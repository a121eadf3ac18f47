package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// patience bounds every wait of these tests. It is generous: the tests
// wait for events, never for an amount of time, and a slow machine only
// makes them slower.
const patience = 15 * time.Second

// The principals of the tests. alice and bob call tools; rita and sam
// review in the default group; otto reviews another group; ada is an
// admin (an observer, not a reviewer); anon is anonymous.
var (
	alice = gateway.Principal{ID: "alice", Groups: []string{"dev"}, TokenID: "tok_alice"}
	bob   = gateway.Principal{ID: "bob", Groups: []string{"dev"}, TokenID: "tok_bob"}
	rita  = gateway.Principal{ID: "rita", Groups: []string{"reviewers"}, TokenID: "tok_rita"}
	sam   = gateway.Principal{ID: "sam", Groups: []string{"reviewers", "dev"}, TokenID: "tok_sam"}
	otto  = gateway.Principal{ID: "otto", Groups: []string{"finance-reviewers"}, TokenID: "tok_otto"}
	ada   = gateway.Principal{ID: "ada", Groups: []string{"admin"}, TokenID: "tok_ada"}
	anon  = gateway.Principal{ID: "anonymous", Anonymous: true}
)

// call describes a tools/call the tests send through the pipeline.
type call struct {
	principal  gateway.Principal
	backend    string
	target     string
	args       string // raw JSON
	def        string // raw JSON definition
	policy     string // policy version
	approval   gateway.ApprovalRequest
	noApproval bool // the decision asks for no approval
	deny       bool // the decision denies

	// progress, when set, is the exchange's progress notifier.
	progress gateway.Progress
	// current, when set, is the exchange's CurrentDefinition.
	current func(ctx context.Context) (json.RawMessage, error)
	// findings are DLP's findings in the call.
	findings []gateway.Finding
}

// deleteCall is the call most tests hold: alice deletes a repository.
func deleteCall() call {
	return call{
		principal: alice, backend: "github", target: "delete_repo",
		args:     `{"repo":"acme/site","force":true}`,
		def:      `{"name":"delete_repo","description":"Delete a repository","inputSchema":{"type":"object"}}`,
		policy:   "v1",
		approval: gateway.ApprovalRequest{Reason: "deleting a repository is destructive"},
	}
}

// with returns c changed by fn.
func (c call) with(fn func(c *call)) call {
	fn(&c)
	return c
}

// binding is the approval binding the stage derives for c.
func (c call) binding() gateway.ApprovalBinding {
	return gateway.ApprovalBinding{Principal: c.principal.ID, Backend: c.backend, Method: "tools/call", Target: c.target,
		DefinitionHash: gateway.DefinitionHash(json.RawMessage(c.def)), ArgumentsHash: gateway.ArgumentsHash(json.RawMessage(c.args)),
		PolicyVersion: c.policy}
}

// backend is the final step of the pipeline: it counts deliveries, which
// is how the tests prove a call never ran, and answers them.
type backend struct {
	delivered atomic.Int64

	mu    sync.Mutex
	calls []string // the arguments of each delivery, in order
	// answer, when set, answers a delivery; by default the delivery
	// succeeds with a result.
	answer func(ctx context.Context, x *gateway.Exchange) error
}

func (b *backend) deliver(ctx context.Context, x *gateway.Exchange) error {
	b.delivered.Add(1)
	b.mu.Lock()
	b.calls = append(b.calls, string(x.Arguments))
	answer := b.answer
	b.mu.Unlock()
	if answer != nil {
		return answer(ctx, x)
	}
	x.Answer = jsonrpc.NewResult(x.Message.ID, json.RawMessage(`{"content":[{"type":"text","text":"deleted"}]}`))
	return nil
}

func (b *backend) setAnswer(fn func(ctx context.Context, x *gateway.Exchange) error) {
	b.mu.Lock()
	b.answer = fn
	b.mu.Unlock()
}

// env is one test's gateway: a real SQLite file, the real auditor, the
// approval Service, and the pipeline Outer → approval stage → Gate →
// backend.
type env struct {
	t       *testing.T
	path    string
	db      *sqlite.DB
	auditor *audit.Auditor
	svc     *Service
	chain   gateway.Handler
	backend *backend

	mu       sync.Mutex
	inflight []*inflight
	nextID   atomic.Int64
}

// envOptions adjust an env before its Service is made.
type envOptions struct {
	// path is the database file; default a new one in t.TempDir().
	path string
	// opts are the Service's options; Store, Audit and RequestRow are
	// filled in when left nil, and the intervals default to small ones.
	opts Options
	// wrapStore and wrapAudit, when set, wrap the real store and log.
	wrapStore func(gateway.ApprovalStore) gateway.ApprovalStore
	wrapAudit func(gateway.AuditLog) gateway.AuditLog
	// noRun leaves Run stopped.
	noRun bool
}

// newEnv opens a database and builds the gateway on it. Everything is
// stopped and closed when the test ends: the calls still in flight are
// cancelled and waited for, then Run, then the database.
func newEnv(t *testing.T, eo envOptions) *env {
	t.Helper()
	if eo.path == "" {
		eo.path = filepath.Join(t.TempDir(), "sallyport.db")
	}
	db, err := sqlite.Open(context.Background(), eo.path, sqlite.Options{})
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{t: t, path: eo.path, db: db, backend: &backend{}}
	var log gateway.AuditLog = db.Audit()
	if eo.wrapAudit != nil {
		log = eo.wrapAudit(log)
	}
	e.auditor = audit.New(audit.Options{Log: log})
	opts := eo.opts
	if opts.Store == nil {
		opts.Store = db.Approvals()
		if eo.wrapStore != nil {
			opts.Store = eo.wrapStore(opts.Store)
		}
	}
	if opts.Audit == nil {
		opts.Audit = log
	}
	if opts.RequestRow == nil {
		opts.RequestRow = e.auditor.Row
	}
	if opts.ProgressInterval == 0 {
		opts.ProgressInterval = 50 * time.Millisecond
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 20 * time.Millisecond
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	e.svc = New(opts)
	e.chain = gateway.Chain(e.auditor.Outer(), e.svc.Stage(), e.auditor.Gate())
	if !eo.noRun {
		e.run()
	}
	t.Cleanup(e.stopCalls)
	return e
}

// run starts the Service's Run until the test ends.
func (e *env) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.svc.Run(ctx)
	}()
	e.t.Cleanup(func() {
		cancel()
		<-done
	})
}

// stopCalls cancels the calls still in flight and waits for them.
func (e *env) stopCalls() {
	e.mu.Lock()
	calls := e.inflight
	e.mu.Unlock()
	for _, f := range calls {
		f.cancel(errors.New("the test ended"))
	}
	for _, f := range calls {
		select {
		case <-f.done:
		case <-time.After(patience):
			e.t.Errorf("a call was still in flight %s after the test ended", patience)
		}
	}
}

// exchange builds the request exchange of c, delivered to the env's
// backend.
func (e *env) exchange(c call) *gateway.Exchange {
	x := gateway.NewExchange(e.backend.deliver)
	x.Direction, x.Kind, x.Method = gateway.ClientToBackend, gateway.KindRequest, "tools/call"
	p := c.principal
	x.Principal = &p
	x.Session = &gateway.SessionInfo{ID: "sess-" + c.principal.ID, Transport: "http", ProtocolVersion: "2025-06-18"}
	x.Backend, x.Target = c.backend, c.target
	if c.args != "" {
		x.Arguments = json.RawMessage(c.args)
	}
	if c.def != "" {
		x.Definition = json.RawMessage(c.def)
	}
	id := fmt.Sprintf("%d", e.nextID.Add(1))
	params := `{"name":"` + c.backend + `__` + c.target + `","arguments":` + nonEmpty(c.args, "{}") + `}`
	x.Message = jsonrpc.NewRequest(json.RawMessage(id), "tools/call", json.RawMessage(params))
	d := &gateway.Decision{Allow: !c.deny, PolicyVersion: c.policy, Reasons: []string{"destructive tool"}, Rules: []string{"approve-destructive"}}
	if !c.noApproval {
		a := c.approval
		d.Approval = &a
	}
	x.Decision = d
	x.Progress = c.progress
	x.CurrentDefinition = c.current
	x.Findings = c.findings
	return x
}

// inflight is a call sent through the pipeline in the background.
type inflight struct {
	x      *gateway.Exchange
	cancel context.CancelCauseFunc
	done   chan struct{}
	err    error // set before done closes
}

// start sends c through the pipeline in the background.
func (e *env) start(c call) *inflight {
	return e.startOn(e.chain, c)
}

// startOn sends c through h in the background.
func (e *env) startOn(h gateway.Handler, c call) *inflight {
	return e.startWith(context.Background(), h, c)
}

// startWith sends c through h in the background, under a context derived
// from parent.
func (e *env) startWith(parent context.Context, h gateway.Handler, c call) *inflight {
	ctx, cancel := context.WithCancelCause(parent)
	f := &inflight{x: e.exchange(c), cancel: cancel, done: make(chan struct{})}
	e.mu.Lock()
	e.inflight = append(e.inflight, f)
	e.mu.Unlock()
	go func() {
		defer close(f.done)
		f.err = h.Handle(ctx, f.x)
	}()
	return f
}

// send sends c through the pipeline and waits for its outcome: for calls
// that do not wait for a reviewer.
func (e *env) send(c call) (*gateway.Exchange, error) {
	e.t.Helper()
	f := e.start(c)
	return f.x, f.wait(e.t)
}

// wait waits for the call's outcome.
func (f *inflight) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-f.done:
		return f.err
	case <-time.After(patience):
		t.Fatalf("the call did not end within %s", patience)
		return nil
	}
}

// ended reports whether the call has ended.
func (f *inflight) ended() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// waitFor polls cond until it holds, failing the test after patience.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// items returns the items f selects.
func (e *env) items(f gateway.ApprovalFilter) []*gateway.ApprovalItem {
	e.t.Helper()
	its, err := e.db.Approvals().Approvals(context.Background(), f)
	if err != nil {
		e.t.Fatalf("list approvals: %v", err)
	}
	return its
}

// item returns item id as stored.
func (e *env) item(id string) *gateway.ApprovalItem {
	e.t.Helper()
	it, err := e.db.Approvals().Approval(context.Background(), id)
	if err != nil {
		e.t.Fatalf("read approval %s: %v", id, err)
	}
	return it
}

// waitItem waits until c's binding has an item in state st, and returns
// the newest such item.
func (e *env) waitItem(c call, st gateway.ApprovalState) *gateway.ApprovalItem {
	e.t.Helper()
	b := c.binding()
	var it *gateway.ApprovalItem
	waitFor(e.t, fmt.Sprintf("a %s item for %s %s", st, c.principal.ID, c.args), func() bool {
		its := e.items(gateway.ApprovalFilter{Binding: &b, States: []gateway.ApprovalState{st}})
		if len(its) == 0 {
			return false
		}
		it = its[0]
		return true
	})
	return it
}

// waitHeld waits until f's call waits on an item with its held row
// recorded, and returns that item.
func (e *env) waitHeld(f *inflight, c call) *gateway.ApprovalItem {
	e.t.Helper()
	it := e.waitItem(c, gateway.ApprovalPending)
	waitFor(e.t, "the call to wait on "+it.ID, func() bool { return e.svc.Waiting(it.ID) > 0 || f.ended() })
	if f.ended() {
		e.t.Fatalf("the call ended instead of waiting: %v", f.err)
	}
	return e.item(it.ID)
}

// waitState waits until item id is in state st.
func (e *env) waitState(id string, st gateway.ApprovalState) *gateway.ApprovalItem {
	e.t.Helper()
	var it *gateway.ApprovalItem
	waitFor(e.t, id+" to be "+string(st), func() bool {
		it = e.item(id)
		return it.State == st
	})
	return it
}

// decide records reviewer's vote and fails the test if it is refused.
func (e *env) decide(id string, reviewer gateway.Principal, approve bool, comment string) *gateway.ApprovalItem {
	e.t.Helper()
	it, err := e.svc.Decide(context.Background(), id, reviewer, approve, comment)
	if err != nil {
		e.t.Fatalf("%s deciding %s: %v", reviewer.ID, id, err)
	}
	return it
}

// rows returns the audit rows of item id, in order, after every queued
// row is written.
func (e *env) rows(id string) []gateway.AuditRecord {
	e.t.Helper()
	return rowsOf(e.t, e.db.Audit(), gateway.AuditFilter{Approval: id})
}

func rowsOf(t testing.TB, log gateway.AuditLog, f gateway.AuditFilter) []gateway.AuditRecord {
	t.Helper()
	ctx := context.Background()
	if err := log.Flush(ctx); err != nil {
		t.Fatalf("flush audit log: %v", err)
	}
	var out []gateway.AuditRecord
	if err := log.Scan(ctx, f, func(r *gateway.AuditRecord) error {
		c := *r
		c.Reasons, c.Rules = append([]string(nil), r.Reasons...), append([]string(nil), r.Rules...)
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatalf("scan audit log: %v", err)
	}
	return out
}

// row returns the audit row seq.
func (e *env) row(seq int64) gateway.AuditRecord {
	e.t.Helper()
	rs := rowsOf(e.t, e.db.Audit(), gateway.AuditFilter{AfterSeq: seq - 1, ThroughSeq: seq})
	if len(rs) != 1 {
		e.t.Fatalf("audit row %d: found %d rows", seq, len(rs))
	}
	return rs[0]
}

// verifyChain fails the test unless the audit log's hash chain verifies.
func (e *env) verifyChain() {
	e.t.Helper()
	if err := e.db.Audit().Flush(context.Background()); err != nil {
		e.t.Fatalf("flush audit log: %v", err)
	}
	rep, err := audit.VerifyLog(context.Background(), e.db.Audit(), nil, 0)
	if err != nil {
		e.t.Fatalf("verify audit log: %v", err)
	}
	if !rep.OK() {
		e.t.Fatalf("the audit chain does not verify: row %d: %s", rep.Bad, rep.Problem)
	}
	if rep.Rows == 0 {
		e.t.Fatalf("the audit log is empty")
	}
}

// rpcCode returns the JSON-RPC code the client gets for err.
func rpcCode(err error) int { return gateway.RPCError(err).Code }

// wantCode fails the test unless err maps to code.
func wantCode(t testing.TB, err error, code int) *gateway.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want code %d", code)
	}
	if got := rpcCode(err); got != code {
		t.Fatalf("got code %d (%v), want %d", got, err, code)
	}
	var ge *gateway.Error
	errors.As(err, &ge)
	return ge
}

// decisionStatus returns the HTTP status of a refused decision, 0 for
// none.
func decisionStatus(err error) int {
	var de *ErrDecision
	if errors.As(err, &de) {
		return de.Status
	}
	return 0
}

// failingStore is the real store, failing every call while fail is set.
// beforeUpdate, when set, runs once before the next UpdateApproval
// (another writer getting there first).
type failingStore struct {
	gateway.ApprovalStore
	fail atomic.Bool

	mu           sync.Mutex
	beforeUpdate func(id string)
}

var errDisk = errors.New("disk I/O error (injected by the test)")

func (s *failingStore) InsertApproval(ctx context.Context, it *gateway.ApprovalItem, maxPending int) error {
	if s.fail.Load() {
		return errDisk
	}
	return s.ApprovalStore.InsertApproval(ctx, it, maxPending)
}

func (s *failingStore) UpdateApproval(ctx context.Context, id string, fn func(it *gateway.ApprovalItem) error) (*gateway.ApprovalItem, error) {
	if s.fail.Load() {
		return nil, errDisk
	}
	s.mu.Lock()
	before := s.beforeUpdate
	s.beforeUpdate = nil
	s.mu.Unlock()
	if before != nil {
		before(id)
	}
	return s.ApprovalStore.UpdateApproval(ctx, id, fn)
}

func (s *failingStore) Approval(ctx context.Context, id string) (*gateway.ApprovalItem, error) {
	if s.fail.Load() {
		return nil, errDisk
	}
	return s.ApprovalStore.Approval(ctx, id)
}

func (s *failingStore) Approvals(ctx context.Context, f gateway.ApprovalFilter) ([]*gateway.ApprovalItem, error) {
	if s.fail.Load() {
		return nil, errDisk
	}
	return s.ApprovalStore.Approvals(ctx, f)
}

func (s *failingStore) ApprovalsSince(ctx context.Context, rev int64) ([]*gateway.ApprovalItem, int64, error) {
	if s.fail.Load() {
		return nil, 0, errDisk
	}
	return s.ApprovalStore.ApprovalsSince(ctx, rev)
}

func (s *failingStore) CountApprovals(ctx context.Context, principal string) (map[gateway.ApprovalState]int, error) {
	if s.fail.Load() {
		return nil, errDisk
	}
	return s.ApprovalStore.CountApprovals(ctx, principal)
}

// failingLog is the real audit log, failing every write while fail is
// set, as the real one does (wrapping ErrAuditUnavailable).
type failingLog struct {
	gateway.AuditLog
	fail atomic.Bool
}

var errLogDown = fmt.Errorf("%w: disk full (injected by the test)", gateway.ErrAuditUnavailable)

func (l *failingLog) Append(ctx context.Context, recs ...*gateway.AuditRecord) error {
	if l.fail.Load() {
		return errLogDown
	}
	return l.AuditLog.Append(ctx, recs...)
}

func (l *failingLog) Enqueue(recs ...*gateway.AuditRecord) error {
	if l.fail.Load() {
		return errLogDown
	}
	return l.AuditLog.Enqueue(recs...)
}

// contains fails the test unless s holds every one of subs.
func contains(t testing.TB, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s %q does not contain %q", what, s, sub)
		}
	}
}
