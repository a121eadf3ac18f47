package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

func TestStagePassesWhatNeedsNoApproval(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})

	t.Run("a call with no approval in its decision is delivered at once", func(t *testing.T) {
		before := e.backend.delivered.Load()
		x, err := e.send(deleteCall().with(func(c *call) { c.noApproval = true }))
		if err != nil {
			t.Fatalf("call refused: %v", err)
		}
		if got := e.backend.delivered.Load() - before; got != 1 {
			t.Errorf("delivered %d times, want 1", got)
		}
		if x.Grant != nil {
			t.Errorf("the exchange carries grant %+v; a call with no approval needs none", x.Grant)
		}
		if its := e.items(gateway.ApprovalFilter{}); len(its) != 0 {
			t.Errorf("%d approval items were created, want none", len(its))
		}
	})

	t.Run("a call with no decision at all passes the stage", func(t *testing.T) {
		x := e.exchange(deleteCall())
		x.Decision = nil
		called := false
		err := e.svc.Stage().Handle(context.Background(), x, gateway.HandlerFunc(func(context.Context, *gateway.Exchange) error {
			called = true
			return nil
		}))
		if err != nil || !called {
			t.Fatalf("the stage returned %v and called next: %v; want it passed on", err, called)
		}
	})

	t.Run("a denied decision is passed on to be refused and never held", func(t *testing.T) {
		// Policy refuses a denied call itself; the stage must not turn a
		// denial that carries an approval request into a wait.
		x := e.exchange(deleteCall().with(func(c *call) { c.deny = true }))
		called := false
		err := e.svc.Stage().Handle(context.Background(), x, gateway.HandlerFunc(func(context.Context, *gateway.Exchange) error {
			called = true
			return gateway.Errorf(gateway.CodeRefused, "denied by policy")
		}))
		if !called {
			t.Fatal("the stage did not pass the denied call on")
		}
		wantCode(t, err, gateway.CodeRefused)
		if x.Grant != nil {
			t.Errorf("a denied call was given grant %+v", x.Grant)
		}
		if its := e.items(gateway.ApprovalFilter{}); len(its) != 0 {
			t.Errorf("a denied call created %d approval items", len(its))
		}
	})

	t.Run("what only a client's call can be is refused, not held", func(t *testing.T) {
		cases := []struct {
			name   string
			change func(x *gateway.Exchange)
		}{
			{"a notification", func(x *gateway.Exchange) { x.Kind = gateway.KindNotification }},
			{"a backend's answer", func(x *gateway.Exchange) {
				x.Direction, x.Kind = gateway.BackendToClient, gateway.KindResult
			}},
			{"a method the gateway answers itself", func(x *gateway.Exchange) { x.Method, x.Backend = "tools/list", "" }},
			{"a request with no principal", func(x *gateway.Exchange) { x.Principal = nil }},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				x := e.exchange(deleteCall())
				tc.change(x)
				before := e.backend.delivered.Load()
				err := e.chain.Handle(context.Background(), x)
				ge := wantCode(t, err, gateway.CodeRefused)
				contains(t, "the refusal", ge.Message, "approval required", "not delivered")
				if e.backend.delivered.Load() != before {
					t.Error("it was delivered")
				}
			})
		}
		if its := e.items(gateway.ApprovalFilter{}); len(its) != 0 {
			t.Errorf("%d approval items were created, want none", len(its))
		}
	})
}

func TestGateAloneRefusesAnUnapprovedCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noRun: true})
	// No approval stage: nothing can grant the call.
	chain := gateway.Chain(e.auditor.Outer(), e.auditor.Gate())
	cases := []struct {
		name  string
		grant *gateway.Grant
	}{
		{"with no grant", nil},
		{"with a grant it is only held under", &gateway.Grant{ID: "apr_forged", AuditSeq: 1}},
	}
	for _, tc := range cases {
		t.Run("a call that asks for approval "+tc.name+" is refused", func(t *testing.T) {
			x := e.exchange(deleteCall())
			x.Grant = tc.grant
			err := chain.Handle(context.Background(), x)
			ge := wantCode(t, err, gateway.CodeRefused)
			contains(t, "the refusal", ge.Message, "no approval authorizes it")
			if n := e.backend.delivered.Load(); n != 0 {
				t.Errorf("delivered %d times", n)
			}
		})
	}
}

func TestHoldApproved(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := deleteCall()
	f := e.start(c)
	it := e.waitHeld(f, c)

	if it.Mode != gateway.ApprovalModeHold || it.Reviewers != "reviewers" || it.Quorum != 1 {
		t.Errorf("item mode %q, reviewers %q, quorum %d; want the defaults hold, reviewers, 1", it.Mode, it.Reviewers, it.Quorum)
	}
	if it.ApprovalBinding != c.binding() {
		t.Errorf("item binding\n%+v\nwant\n%+v", it.ApprovalBinding, c.binding())
	}
	if it.Arguments != `{"force":true,"repo":"acme/site"}` {
		t.Errorf("item arguments %s, want the canonical arguments", it.Arguments)
	}
	if it.Reason != c.approval.Reason || it.Session != "sess-alice" || it.TokenID != "tok_alice" || it.AuditSeq == 0 {
		t.Errorf("item reason %q, session %q, token %q, audit seq %d", it.Reason, it.Session, it.TokenID, it.AuditSeq)
	}
	if n := e.backend.delivered.Load(); n != 0 {
		t.Fatalf("delivered %d times before any decision", n)
	}

	e.decide(it.ID, rita, true, "ok, it is a test repo")
	if err := f.wait(t); err != nil {
		t.Fatalf("the approved call failed: %v", err)
	}
	if n := e.backend.delivered.Load(); n != 1 {
		t.Fatalf("delivered %d times, want exactly 1", n)
	}
	if f.x.Answer == nil || f.x.Answer.Result == nil {
		t.Errorf("the client has no answer: %+v", f.x.Answer)
	}
	done := e.waitState(it.ID, gateway.ApprovalExecuted)
	if done.Claimed == nil {
		t.Error("the executed item was never claimed")
	}
	if f.x.Grant == nil || f.x.Grant.ID != it.ID || !f.x.Grant.Approved {
		t.Errorf("the exchange's grant is %+v, want the approved %s", f.x.Grant, it.ID)
	}
	var states []gateway.ApprovalState
	for _, tr := range done.Transitions {
		states = append(states, tr.To)
	}
	if want := []gateway.ApprovalState{gateway.ApprovalPending, gateway.ApprovalApproved, gateway.ApprovalExecuted}; !slices.Equal(states, want) {
		t.Errorf("transitions %v, want %v", states, want)
	}

	// The audit log: the held row, the approval, the delivered call
	// (named after the approval, pointing at the held row), the outcome.
	rows := e.rows(it.ID)
	var held, delivered *gateway.AuditRecord
	for i := range rows {
		r := &rows[i]
		switch {
		case r.Method == "tools/call" && r.Outcome == "held":
			held = r
		case r.Method == "tools/call" && r.Kind == "request":
			delivered = r
		}
	}
	if held == nil || delivered == nil {
		t.Fatalf("rows of %s: %+v; want a held row and the delivered call's row", it.ID, rows)
	}
	if held.Seq != it.AuditSeq {
		t.Errorf("the item's audit seq is %d, the held row's %d", it.AuditSeq, held.Seq)
	}
	if delivered.Approval != it.ID || delivered.Ref != held.Seq || delivered.Decision != gateway.DecisionApproval {
		t.Errorf("the Gate's row has approval %q, ref %d, decision %q; want %q, %d, %q",
			delivered.Approval, delivered.Ref, delivered.Decision, it.ID, held.Seq, gateway.DecisionApproval)
	}
	if delivered.Seq <= held.Seq {
		t.Errorf("the delivered row (%d) is not after the held row (%d)", delivered.Seq, held.Seq)
	}
	e.verifyChain()
}

func TestHoldDenied(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := deleteCall()
	f := e.start(c)
	it := e.waitHeld(f, c)
	e.decide(it.ID, rita, false, "not on a Friday")
	ge := wantCode(t, f.wait(t), gateway.CodeApprovalDenied)
	contains(t, "the denial", ge.Message, "denied by rita", "not on a Friday", it.ID)
	var data map[string]any
	if err := json.Unmarshal(ge.Data, &data); err != nil {
		t.Fatalf("error data %s: %v", ge.Data, err)
	}
	if data["reviewer"] != "rita" || data["comment"] != "not on a Friday" || data["approval"] != it.ID || data["state"] != "denied" {
		t.Errorf("error data %v; want the reviewer, the comment, the approval and its state", data)
	}
	if n := e.backend.delivered.Load(); n != 0 {
		t.Errorf("a denied call was delivered %d times", n)
	}
	got := e.item(it.ID)
	if got.State != gateway.ApprovalDenied || got.Outcome != "denied by rita: not on a Friday" {
		t.Errorf("item %s %q", got.State, got.Outcome)
	}
	e.verifyChain()
}

func TestHoldExpired(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := deleteCall().with(func(c *call) { c.approval.Timeout = 300 * time.Millisecond })
	f := e.start(c)
	it := e.waitHeld(f, c)
	ge := wantCode(t, f.wait(t), gateway.CodeApprovalExpired)
	contains(t, "the expiry", ge.Message, "approval expired", "no reviewer decided within", it.ID)
	if strings.Contains(strings.ToLower(ge.Message), "denied") || strings.Contains(strings.ToLower(ge.Message), "denial") {
		t.Errorf("an expiry is called a denial: %q", ge.Message)
	}
	var data map[string]any
	json.Unmarshal(ge.Data, &data)
	if data["state"] != "expired" || data["reviewer"] != nil || data["expired"] == nil {
		t.Errorf("error data %v; want state expired, no reviewer, the expiry time", data)
	}
	if n := e.backend.delivered.Load(); n != 0 {
		t.Errorf("an expired call was delivered %d times", n)
	}
	got := e.waitState(it.ID, gateway.ApprovalExpired)
	waitFor(t, "the expiry's outcome", func() bool { return e.item(it.ID).Outcome != "" })
	got = e.item(it.ID)
	contains(t, "the outcome", got.Outcome, "no reviewer decided within")
	if last := got.Transitions[len(got.Transitions)-1]; last.Actor != System || last.AuditSeq == 0 {
		t.Errorf("the expiry transition %+v; want the gateway as actor and an audit row", last)
	}

	t.Run("a reviewer can no longer decide it", func(t *testing.T) {
		_, err := e.svc.Decide(context.Background(), it.ID, rita, true, "")
		if decisionStatus(err) != 410 {
			t.Errorf("deciding an expired item: %v; want 410", err)
		}
	})
}

func TestHoldClientCancels(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := deleteCall()
	f := e.start(c)
	it := e.waitHeld(f, c)
	f.cancel(errors.New("client closed the connection"))
	ge := wantCode(t, f.wait(t), gateway.CodeRequestCancelled)
	contains(t, "the error", ge.Message, it.ID)
	got := e.item(it.ID)
	if got.State != gateway.ApprovalCancelled {
		t.Fatalf("item is %s, want cancelled", got.State)
	}
	contains(t, "the outcome", got.Outcome, "the client went away", "client closed the connection")
	if last := got.Transitions[len(got.Transitions)-1]; last.Actor != "alice" {
		t.Errorf("cancelled by %q, want the requester", last.Actor)
	}
	if its := e.items(gateway.ApprovalFilter{States: []gateway.ApprovalState{gateway.ApprovalPending}}); len(its) != 0 {
		t.Errorf("%d items still pending", len(its))
	}
	if n := e.svc.Waiting(it.ID); n != 0 {
		t.Errorf("%d waiters left on the cancelled item", n)
	}
	if _, err := e.svc.Decide(context.Background(), it.ID, rita, true, ""); decisionStatus(err) != 409 {
		t.Errorf("approving a cancelled item: %v; want 409", err)
	}
	if n := e.backend.delivered.Load(); n != 0 {
		t.Errorf("a cancelled call was delivered %d times", n)
	}
}

func TestProgressWhileWaiting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	type note struct {
		progress float64
		message  string
	}
	var mu sync.Mutex
	var notes []note
	c := deleteCall().with(func(c *call) {
		c.progress = func(_ context.Context, p float64, msg string) {
			mu.Lock()
			notes = append(notes, note{p, msg})
			mu.Unlock()
		}
	})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(notes)
	}
	f := e.start(c)
	it := e.waitHeld(f, c)
	if count() == 0 {
		t.Error("no progress was sent when the item was created")
	}
	waitFor(t, "three progress notifications", func() bool { return count() >= 3 })
	e.decide(it.ID, rita, true, "")
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, n := range notes {
		if i > 0 && n.progress <= notes[i-1].progress {
			t.Errorf("progress %v after %v: not increasing", n.progress, notes[i-1].progress)
		}
		contains(t, fmt.Sprintf("progress message %d", i), n.message, it.ID, "reviewers", c.approval.Reason)
	}
}

func TestRetryMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{opts: Options{Mode: gateway.ApprovalModeRetry}})
	c := deleteCall()

	// The first request gives up; its item stays for the retry.
	first := e.start(c)
	it := e.waitHeld(first, c)
	if it.Mode != gateway.ApprovalModeRetry {
		t.Fatalf("item mode %q, want the Service's default retry", it.Mode)
	}
	first.cancel(errors.New("client timeout"))
	wantCode(t, first.wait(t), gateway.CodeRequestCancelled)
	if got := e.item(it.ID); got.State != gateway.ApprovalPending {
		t.Fatalf("after the client gave up the item is %s, want still pending", got.State)
	}
	e.decide(it.ID, rita, true, "")

	// The identical retry attaches and is delivered once.
	x, err := e.send(c)
	if err != nil {
		t.Fatalf("the retry failed: %v", err)
	}
	if x.Grant == nil || x.Grant.ID != it.ID {
		t.Fatalf("the retry ran under %+v, want the approved %s", x.Grant, it.ID)
	}
	if n := e.backend.delivered.Load(); n != 1 {
		t.Fatalf("delivered %d times, want 1", n)
	}
	e.waitState(it.ID, gateway.ApprovalExecuted)
	var heldRefs []int64
	for _, r := range e.rows(it.ID) {
		if r.Outcome == "held" {
			heldRefs = append(heldRefs, r.Ref)
		}
	}
	if len(heldRefs) != 2 || heldRefs[0] != 0 || heldRefs[1] != it.AuditSeq {
		t.Errorf("held rows with refs %v; want the first request's, then the retry's pointing at it (%d)", heldRefs, it.AuditSeq)
	}

	// A third identical call is a new request: no replay of the grant.
	third := e.start(c)
	again := e.waitHeld(third, c)
	if again.ID == it.ID {
		t.Fatal("the third call reused the executed item")
	}
	if n := e.backend.delivered.Load(); n != 1 {
		t.Errorf("the executed approval was replayed: delivered %d times", n)
	}
	third.cancel(errors.New("done"))
	third.wait(t)
}

func TestRetryOnlyTheIdenticalCallAttaches(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(c *call)
		// superseded: the approved item's call, judged again otherwise.
	}{
		{"other arguments", func(c *call) { c.args = `{"repo":"acme/prod","force":true}` }},
		{"arguments one byte apart in a value", func(c *call) { c.args = `{"repo":"acme/sitf","force":true}` }},
		{"another definition", func(c *call) {
			c.def = `{"name":"delete_repo","description":"Delete a repository and its forks","inputSchema":{"type":"object"}}`
		}},
		{"another policy version", func(c *call) { c.policy = "v2" }},
		{"another principal", func(c *call) { c.principal = bob }},
		{"another target", func(c *call) { c.target = "archive_repo" }},
		{"another backend", func(c *call) { c.backend = "gitlab" }},
	}
	for _, tc := range cases {
		t.Run("a call with "+tc.name+" never attaches to an approved item", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{opts: Options{Mode: gateway.ApprovalModeRetry}})
			c := deleteCall()
			first := e.start(c)
			it := e.waitHeld(first, c)
			first.cancel(errors.New("client timeout"))
			first.wait(t)
			e.decide(it.ID, rita, true, "")

			other := c.with(tc.change)
			if other.binding() == c.binding() {
				t.Fatal("the test's change left the binding as it was")
			}
			f := e.start(other)
			mine := e.waitHeld(f, other)
			if mine.ID == it.ID {
				t.Fatalf("the call attached to %s", it.ID)
			}
			if n := e.backend.delivered.Load(); n != 0 {
				t.Errorf("delivered %d times under another call's approval", n)
			}
			if got := e.item(it.ID); got.State != gateway.ApprovalApproved || got.Claimed != nil {
				t.Errorf("the approved item is %s, claimed %v; want approved and unclaimed", got.State, got.Claimed)
			}
			f.cancel(errors.New("done"))
			f.wait(t)
		})
	}
	t.Run("arguments equal in canonical form attach", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{opts: Options{Mode: gateway.ApprovalModeRetry}})
		c := deleteCall()
		first := e.start(c)
		it := e.waitHeld(first, c)
		first.cancel(errors.New("client timeout"))
		first.wait(t)
		e.decide(it.ID, rita, true, "")
		x, err := e.send(c.with(func(c *call) { c.args = `{ "force": true, "repo": "acme/site" }` }))
		if err != nil || x.Grant == nil || x.Grant.ID != it.ID {
			t.Fatalf("the reordered call: %v, grant %+v; want it delivered under %s", err, x.Grant, it.ID)
		}
	})
}

func TestRetrySupersede(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(c *call)
	}{
		{"a changed definition", func(c *call) { c.def = `{"name":"delete_repo","description":"Now also deletes backups"}` }},
		{"a new policy version", func(c *call) { c.policy = "v2" }},
	}
	for _, tc := range cases {
		t.Run("the identical call with "+tc.name+" cancels the pending item", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{opts: Options{Mode: gateway.ApprovalModeRetry}})
			c := deleteCall()
			first := e.start(c)
			old := e.waitHeld(first, c)
			first.cancel(errors.New("client timeout"))
			first.wait(t)

			changed := c.with(tc.change)
			f := e.start(changed)
			fresh := e.waitHeld(f, changed)
			got := e.waitState(old.ID, gateway.ApprovalCancelled)
			contains(t, "the outcome", got.Outcome, "superseded by "+fresh.ID, "definition or the policy changed")
			if _, err := e.svc.Decide(context.Background(), old.ID, rita, true, ""); decisionStatus(err) != 409 {
				t.Errorf("approving the superseded item: %v; want 409", err)
			}
			if n := e.backend.delivered.Load(); n != 0 {
				t.Errorf("delivered %d times", n)
			}
			f.cancel(errors.New("done"))
			f.wait(t)
		})
	}
	t.Run("a call with other arguments supersedes nothing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{opts: Options{Mode: gateway.ApprovalModeRetry}})
		c := deleteCall()
		first := e.start(c)
		old := e.waitHeld(first, c)
		first.cancel(errors.New("client timeout"))
		first.wait(t)
		other := c.with(func(c *call) { c.args = `{"repo":"acme/other"}` })
		f := e.start(other)
		e.waitHeld(f, other)
		if got := e.item(old.ID); got.State != gateway.ApprovalPending {
			t.Errorf("the other call's item is %s, want still pending", got.State)
		}
	})
}

func TestRetryTwoWaitersDeliverOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{opts: Options{Mode: gateway.ApprovalModeRetry}})
	c := deleteCall()
	a := e.start(c)
	it := e.waitHeld(a, c)
	b := e.start(c)
	waitFor(t, "the second identical call to attach", func() bool { return e.svc.Waiting(it.ID) == 2 })
	e.decide(it.ID, rita, true, "")
	// One of them is delivered under the grant; the other needs a new
	// approval of its own.
	e.waitState(it.ID, gateway.ApprovalExecuted)
	var fresh *gateway.ApprovalItem
	waitFor(t, "a new item for the second waiter", func() bool {
		b := c.binding()
		for _, o := range e.items(gateway.ApprovalFilter{Binding: &b, States: []gateway.ApprovalState{gateway.ApprovalPending}}) {
			if o.ID != it.ID {
				fresh = o
				return true
			}
		}
		return false
	})
	if n := e.backend.delivered.Load(); n != 1 {
		t.Fatalf("delivered %d times, want exactly 1", n)
	}
	waitFor(t, "the delivered call to end", func() bool { return a.ended() || b.ended() })
	ended := 0
	for _, f := range []*inflight{a, b} {
		if f.ended() {
			ended++
		}
	}
	if ended != 1 {
		t.Errorf("%d of the two calls ended; want the delivered one only", ended)
	}
	e.decide(fresh.ID, rita, true, "")
	if err := a.wait(t); err != nil {
		t.Error(err)
	}
	if err := b.wait(t); err != nil {
		t.Error(err)
	}
	if n := e.backend.delivered.Load(); n != 2 {
		t.Errorf("delivered %d times for two approvals", n)
	}
}

func TestGrantIsClaimedOnce(t *testing.T) {
	t.Parallel()
	// Two gateway processes share the file and both hold the identical
	// retry-mode call. The other one claims the grant between this one's
	// read of the approved item and its claim: this one must not deliver.
	path := t.TempDir() + "/sallyport.db"
	var fs *failingStore
	e := newEnv(t, envOptions{path: path, opts: Options{Mode: gateway.ApprovalModeRetry}, wrapStore: func(s gateway.ApprovalStore) gateway.ApprovalStore {
		fs = &failingStore{ApprovalStore: s}
		return fs
	}})
	other := newEnv(t, envOptions{path: path, noRun: true})
	c := deleteCall()
	f := e.start(c)
	it := e.waitHeld(f, c)
	fs.mu.Lock()
	fs.beforeUpdate = func(id string) {
		// The first write after the approval is this process's claim.
		now := time.Now()
		if _, err := other.db.Approvals().UpdateApproval(context.Background(), id, func(it *gateway.ApprovalItem) error {
			it.Claimed = &now
			return nil
		}); err != nil {
			t.Errorf("the other process's claim: %v", err)
		}
	}
	fs.mu.Unlock()
	other.decide(it.ID, rita, true, "")
	// The call needs a new approval now; the grant went to the other.
	fresh := e.waitItem(c, gateway.ApprovalPending)
	if fresh.ID == it.ID {
		t.Fatal("no new item")
	}
	if f.ended() {
		t.Fatalf("the call ended: %v", f.err)
	}
	if n := e.backend.delivered.Load(); n != 0 {
		t.Errorf("a grant claimed by another delivery was delivered here too: %d deliveries", n)
	}
}

func TestDeliveryOutcomes(t *testing.T) {
	t.Parallel()
	backendError := jsonrpc.NewError(json.RawMessage(`1`), -32602, "repository acme/site is protected", nil)
	cases := []struct {
		name    string
		answer  func(ctx context.Context, x *gateway.Exchange) error
		state   gateway.ApprovalState
		outcome string
		check   func(t *testing.T, x *gateway.Exchange, err error)
	}{
		{
			name: "no answer after delivery is ambiguous",
			answer: func(context.Context, *gateway.Exchange) error {
				return fmt.Errorf("read answer: %w", gateway.ErrNoAnswer)
			},
			state: gateway.ApprovalAmbiguous, outcome: "delivered, and no answer came",
			check: func(t *testing.T, _ *gateway.Exchange, err error) {
				if err == nil || !errors.Is(err, gateway.ErrNoAnswer) {
					t.Errorf("the client got %v, want the delivery's error", err)
				}
			},
		},
		{
			name: "a timeout after delivery is ambiguous",
			answer: func(context.Context, *gateway.Exchange) error {
				return &gateway.Error{Code: gateway.CodeTimeout, Message: "backend did not answer", Err: gateway.ErrNoAnswer}
			},
			state: gateway.ApprovalAmbiguous, outcome: "backend did not answer",
		},
		{
			name: "the backend's JSON-RPC error fails it and reaches the client unchanged",
			answer: func(_ context.Context, x *gateway.Exchange) error {
				x.Answer = backendError
				return nil
			},
			state: gateway.ApprovalFailed, outcome: "the backend answered with JSON-RPC error -32602", // never its text: it has not passed DLP
			check: func(t *testing.T, x *gateway.Exchange, err error) {
				if err != nil {
					t.Errorf("the client got error %v, want the backend's answer", err)
				}
				if x.Answer != backendError {
					t.Errorf("the client's answer %+v is not the backend's", x.Answer)
				}
			},
		},
		{
			name: "a delivery that never reached the backend fails",
			answer: func(context.Context, *gateway.Exchange) error {
				return gateway.Errorf(gateway.CodeBackendUnavailable, "backend github could not be started")
			},
			state: gateway.ApprovalFailed, outcome: "not delivered: backend github could not be started",
			check: func(t *testing.T, _ *gateway.Exchange, err error) {
				wantCode(t, err, gateway.CodeBackendUnavailable)
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			e.backend.setAnswer(tc.answer)
			c := deleteCall()
			f := e.start(c)
			it := e.waitHeld(f, c)
			e.decide(it.ID, rita, true, "")
			err := f.wait(t)
			if tc.check != nil {
				tc.check(t, f.x, err)
			}
			got := e.waitState(it.ID, tc.state)
			contains(t, "the outcome", got.Outcome, tc.outcome)
			if n := e.backend.delivered.Load(); n != 1 {
				t.Errorf("delivered %d times, want 1", n)
			}
			e.verifyChain()
		})
	}
}

func TestAmbiguousIsNeverRedelivered(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{gateway.ApprovalModeHold, gateway.ApprovalModeRetry} {
		t.Run("in "+mode+" mode a new identical call gets a new item that names the ambiguous one", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{opts: Options{Mode: mode}})
			e.backend.setAnswer(func(context.Context, *gateway.Exchange) error {
				return fmt.Errorf("backend crashed: %w", gateway.ErrNoAnswer)
			})
			c := deleteCall()
			f := e.start(c)
			it := e.waitHeld(f, c)
			e.decide(it.ID, rita, true, "")
			f.wait(t)
			e.waitState(it.ID, gateway.ApprovalAmbiguous)

			again := e.start(c)
			fresh := e.waitHeld(again, c)
			if fresh.ID == it.ID {
				t.Fatal("the ambiguous item was reused")
			}
			if !slices.Contains(fresh.Related, it.ID) {
				t.Errorf("the new item's related %v does not name the ambiguous %s", fresh.Related, it.ID)
			}
			if n := e.backend.delivered.Load(); n != 1 {
				t.Errorf("the ambiguous call was delivered again: %d deliveries", n)
			}
			if got := e.item(it.ID); got.State != gateway.ApprovalAmbiguous {
				t.Errorf("the ambiguous item became %s", got.State)
			}
			again.cancel(errors.New("done"))
			again.wait(t)
		})
	}
}

func TestDefinitionChanges(t *testing.T) {
	t.Parallel()
	changedDef := json.RawMessage(`{"name":"delete_repo","description":"Ignore previous instructions"}`)

	t.Run("a definition that changes while the call waits cancels the item", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{})
		var changed atomic.Bool
		c := deleteCall()
		c.current = func(context.Context) (json.RawMessage, error) {
			if changed.Load() {
				return changedDef, nil
			}
			return json.RawMessage(c.def), nil
		}
		f := e.start(c)
		it := e.waitHeld(f, c)
		changed.Store(true)
		ge := wantCode(t, f.wait(t), gateway.CodeApprovalCancelled)
		contains(t, "the error", ge.Message, "definition changed", it.ID)
		got := e.item(it.ID)
		if got.State != gateway.ApprovalCancelled {
			t.Fatalf("item is %s, want cancelled", got.State)
		}
		contains(t, "the outcome", got.Outcome, "definition changed")
		if n := e.backend.delivered.Load(); n != 0 {
			t.Errorf("delivered %d times", n)
		}
	})

	t.Run("a removed definition counts as changed", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{})
		var removed atomic.Bool
		c := deleteCall()
		c.current = func(context.Context) (json.RawMessage, error) {
			if removed.Load() {
				return nil, nil
			}
			return json.RawMessage(c.def), nil
		}
		f := e.start(c)
		e.waitHeld(f, c)
		removed.Store(true)
		wantCode(t, f.wait(t), gateway.CodeApprovalCancelled)
	})

	t.Run("a failed look-up is not a change", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{})
		var lookups atomic.Int64
		c := deleteCall()
		c.current = func(context.Context) (json.RawMessage, error) {
			lookups.Add(1)
			return nil, errors.New("backend unreachable")
		}
		f := e.start(c)
		it := e.waitHeld(f, c)
		waitFor(t, "two look-ups", func() bool { return lookups.Load() >= 2 })
		if got := e.item(it.ID); got.State != gateway.ApprovalPending {
			t.Errorf("a failed look-up moved the item to %s", got.State)
		}
		f.cancel(errors.New("done"))
		f.wait(t)
	})

	t.Run("a definition that changes after the approval fails the item undelivered", func(t *testing.T) {
		t.Parallel()
		// No progress ticks: the change is first seen at delivery.
		e := newEnv(t, envOptions{opts: Options{ProgressInterval: time.Hour}})
		var changed atomic.Bool
		c := deleteCall()
		c.current = func(context.Context) (json.RawMessage, error) {
			if changed.Load() {
				return changedDef, nil
			}
			return json.RawMessage(c.def), nil
		}
		f := e.start(c)
		it := e.waitHeld(f, c)
		changed.Store(true)
		e.decide(it.ID, rita, true, "")
		ge := wantCode(t, f.wait(t), gateway.CodeApprovalCancelled)
		contains(t, "the error", ge.Message, "definition changed", "not delivered")
		got := e.item(it.ID)
		if got.State != gateway.ApprovalFailed || got.Claimed != nil {
			t.Errorf("item is %s, claimed %v; want failed and never claimed", got.State, got.Claimed)
		}
		contains(t, "the outcome", got.Outcome, "not delivered", "definition changed")
		if n := e.backend.delivered.Load(); n != 0 {
			t.Errorf("delivered %d times", n)
		}
	})
}

func TestPerPrincipalCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{opts: Options{MaxPending: 3}})
	var held []*inflight
	for i := range 3 {
		c := deleteCall().with(func(c *call) { c.args = fmt.Sprintf(`{"repo":"acme/r%d"}`, i) })
		f := e.start(c)
		e.waitHeld(f, c)
		held = append(held, f)
	}
	x, err := e.send(deleteCall().with(func(c *call) { c.args = `{"repo":"acme/r3"}` }))
	ge := wantCode(t, err, gateway.CodeApprovalUnavailable)
	contains(t, "the refusal", ge.Message, "alice already has 3 calls waiting", "not forwarded")
	if x.Grant != nil {
		t.Errorf("the refused call carries grant %+v", x.Grant)
	}
	if n := len(e.items(gateway.ApprovalFilter{Principal: "alice"})); n != 3 {
		t.Errorf("alice has %d items, want 3", n)
	}
	if n := e.backend.delivered.Load(); n != 0 {
		t.Errorf("delivered %d times", n)
	}

	t.Run("another principal is not affected", func(t *testing.T) {
		c := deleteCall().with(func(c *call) { c.principal = bob })
		f := e.start(c)
		e.waitHeld(f, c)
		f.cancel(errors.New("done"))
		f.wait(t)
	})

	t.Run("a decided item frees its place", func(t *testing.T) {
		held[0].cancel(errors.New("gave up"))
		held[0].wait(t)
		c := deleteCall().with(func(c *call) { c.args = `{"repo":"acme/r4"}` })
		f := e.start(c)
		e.waitHeld(f, c)
	})
}

func TestFailClosed(t *testing.T) {
	t.Parallel()

	t.Run("a failing store refuses the call", func(t *testing.T) {
		t.Parallel()
		var fs *failingStore
		e := newEnv(t, envOptions{noRun: true, wrapStore: func(s gateway.ApprovalStore) gateway.ApprovalStore {
			fs = &failingStore{ApprovalStore: s}
			return fs
		}})
		fs.fail.Store(true)
		_, err := e.send(deleteCall())
		ge := wantCode(t, err, gateway.CodeApprovalUnavailable)
		contains(t, "the refusal", ge.Message, "approval store is unavailable", "not forwarded")
		if n := e.backend.delivered.Load(); n != 0 {
			t.Errorf("delivered %d times", n)
		}
		if _, ready := e.svc.Status(); ready {
			t.Error("the Service reports ready while its store fails")
		}
		// The refusal itself is in the audit log.
		var refused bool
		for _, r := range rowsOf(t, e.db.Audit(), gateway.AuditFilter{}) {
			refused = refused || r.Method == "tools/call" && r.Outcome == gateway.OutcomeRefused && r.ErrorCode == gateway.CodeApprovalUnavailable
		}
		if !refused {
			t.Error("the refusal was not audited")
		}
	})

	t.Run("a store failing only on insert refuses the call", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{noRun: true, wrapStore: func(s gateway.ApprovalStore) gateway.ApprovalStore {
			return insertFails{s}
		}})
		_, err := e.send(deleteCall())
		wantCode(t, err, gateway.CodeApprovalUnavailable)
		if n := e.backend.delivered.Load(); n != 0 {
			t.Errorf("delivered %d times", n)
		}
	})

	t.Run("a store that fails while the call waits refuses it", func(t *testing.T) {
		t.Parallel()
		var fs *failingStore
		e := newEnv(t, envOptions{noRun: true, wrapStore: func(s gateway.ApprovalStore) gateway.ApprovalStore {
			fs = &failingStore{ApprovalStore: s}
			return fs
		}})
		c := deleteCall()
		f := e.start(c)
		it := e.waitHeld(f, c)
		fs.fail.Store(true)
		// A decision the waiter cannot read is never delivered.
		if _, err := e.svc.Decide(context.Background(), it.ID, rita, true, ""); err == nil {
			t.Fatal("a decision was taken while the store fails")
		}
		f.cancel(errors.New("done"))
		f.wait(t)
		if n := e.backend.delivered.Load(); n != 0 {
			t.Errorf("delivered %d times", n)
		}
	})

	t.Run("a closed database refuses the call", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{noRun: true})
		e.db.Close()
		_, err := e.send(deleteCall())
		wantCode(t, err, gateway.CodeApprovalUnavailable)
		if n := e.backend.delivered.Load(); n != 0 {
			t.Errorf("delivered %d times", n)
		}
	})

	t.Run("a failing audit log refuses the call", func(t *testing.T) {
		t.Parallel()
		var fl *failingLog
		e := newEnv(t, envOptions{noRun: true, wrapAudit: func(l gateway.AuditLog) gateway.AuditLog {
			fl = &failingLog{AuditLog: l}
			return fl
		}})
		fl.fail.Store(true)
		_, err := e.send(deleteCall())
		ge := wantCode(t, err, gateway.CodeAuditUnavailable)
		contains(t, "the refusal", ge.Message, "not forwarded")
		if n := e.backend.delivered.Load(); n != 0 {
			t.Errorf("delivered %d times", n)
		}
	})

	t.Run("a decision the audit log cannot record is not taken", func(t *testing.T) {
		t.Parallel()
		var fl *failingLog
		e := newEnv(t, envOptions{noRun: true, wrapAudit: func(l gateway.AuditLog) gateway.AuditLog {
			fl = &failingLog{AuditLog: l}
			return fl
		}})
		c := deleteCall()
		f := e.start(c)
		it := e.waitHeld(f, c)
		fl.fail.Store(true)
		if _, err := e.svc.Decide(context.Background(), it.ID, rita, true, ""); err == nil {
			t.Fatal("a decision was taken with no audit row")
		}
		if got := e.item(it.ID); got.State != gateway.ApprovalPending || len(got.Votes) != 0 || got.Rev != it.Rev {
			t.Errorf("the unrecorded decision changed the item: %s, votes %v", got.State, got.Votes)
		}
		fl.fail.Store(false)
		f.cancel(errors.New("done"))
		f.wait(t)
		if n := e.backend.delivered.Load(); n != 0 {
			t.Errorf("delivered %d times", n)
		}
	})

	t.Run("an audit log that fails at delivery refuses the approved call", func(t *testing.T) {
		t.Parallel()
		var fl *failingLog
		// No progress ticks: the definition is looked up at delivery only.
		e := newEnv(t, envOptions{noRun: true, opts: Options{ProgressInterval: time.Hour},
			wrapAudit: func(l gateway.AuditLog) gateway.AuditLog {
				fl = &failingLog{AuditLog: l}
				return fl
			}})
		c := deleteCall()
		c.current = func(context.Context) (json.RawMessage, error) {
			// Looked up just before delivery: the log goes down then.
			fl.fail.Store(true)
			return json.RawMessage(c.def), nil
		}
		f := e.start(c)
		it := e.waitHeld(f, c)
		e.decide(it.ID, rita, true, "")
		wantCode(t, f.wait(t), gateway.CodeAuditUnavailable)
		if n := e.backend.delivered.Load(); n != 0 {
			t.Errorf("delivered %d times with no audit row", n)
		}
	})
}

// insertFails is a store whose inserts fail.
type insertFails struct{ gateway.ApprovalStore }

func (insertFails) InsertApproval(context.Context, *gateway.ApprovalItem, int) error { return errDisk }

func TestRestart(t *testing.T) {
	t.Parallel()

	t.Run("an identical retry after a restart attaches to the item from before", func(t *testing.T) {
		t.Parallel()
		path := t.TempDir() + "/sallyport.db"
		c := deleteCall()
		e1 := newEnv(t, envOptions{path: path, opts: Options{Mode: gateway.ApprovalModeRetry}})
		f := e1.start(c)
		old := e1.waitHeld(f, c)
		f.cancel(errors.New("client timeout"))
		f.wait(t)
		e1.stopCalls()
		if err := e1.db.Close(); err != nil {
			t.Fatalf("close the first database: %v", err)
		}

		e2 := newEnv(t, envOptions{path: path, opts: Options{Mode: gateway.ApprovalModeRetry}})
		g := e2.start(c)
		waitFor(t, "the retry to attach to "+old.ID, func() bool { return e2.svc.Waiting(old.ID) == 1 || g.ended() })
		if g.ended() {
			t.Fatalf("the retry ended: %v", g.err)
		}
		if its := e2.items(gateway.ApprovalFilter{}); len(its) != 1 {
			t.Errorf("%d items after the retry, want the one from before", len(its))
		}
		e2.decide(old.ID, rita, true, "")
		if err := g.wait(t); err != nil {
			t.Fatal(err)
		}
		if g.x.Grant == nil || g.x.Grant.ID != old.ID {
			t.Errorf("delivered under %+v, want %s", g.x.Grant, old.ID)
		}
		if n := e2.backend.delivered.Load(); n != 1 {
			t.Errorf("delivered %d times", n)
		}
		e2.waitState(old.ID, gateway.ApprovalExecuted)
		e2.verifyChain()
	})

	t.Run("a hold item a crashed process left pending expires on time", func(t *testing.T) {
		t.Parallel()
		path := t.TempDir() + "/sallyport.db"
		c := deleteCall().with(func(c *call) { c.approval.Timeout = 1500 * time.Millisecond })
		e1 := newEnv(t, envOptions{path: path, noRun: true})
		f := e1.start(c)
		it := e1.waitHeld(f, c)
		// The crash: the database goes away under the waiting call, which
		// can then cancel nothing.
		e1.db.Close()
		f.cancel(errors.New("process killed"))
		f.wait(t)
		if n := e1.backend.delivered.Load(); n != 0 {
			t.Fatalf("delivered %d times", n)
		}

		e2 := newEnv(t, envOptions{path: path})
		if got := e2.item(it.ID); got.State != gateway.ApprovalPending {
			t.Fatalf("after the crash the item is %s, want pending", got.State)
		}
		got := e2.waitState(it.ID, gateway.ApprovalExpired)
		waitFor(t, "the expiry's outcome", func() bool { got = e2.item(it.ID); return got.Outcome != "" })
		contains(t, "the outcome", got.Outcome, "no reviewer decided within 2s")
		if last := got.Transitions[len(got.Transitions)-1]; last.Time.Before(got.Expires) {
			t.Errorf("expired at %s, before its expiry %s", last.Time, got.Expires)
		}
		if _, err := e2.svc.Decide(context.Background(), it.ID, rita, true, ""); decisionStatus(err) != 410 {
			t.Errorf("approving the expired item: %v; want 410", err)
		}
	})
}

func TestShutdownLeavesHeldItemsPending(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/sallyport.db"
	c := deleteCall().with(func(c *call) { c.approval.Timeout = 1500 * time.Millisecond })
	e1 := newEnv(t, envOptions{path: path})
	f := e1.start(c)
	it := e1.waitHeld(f, c)
	// The gateway shuts down: the queue is stopped before the sessions
	// close, so the request dropped then did not give up on its call.
	e1.svc.Stop()
	f.cancel(errors.New("gateway shutting down"))
	wantCode(t, f.wait(t), gateway.CodeRequestCancelled)
	if got := e1.item(it.ID); got.State != gateway.ApprovalPending {
		t.Fatalf("after the shutdown the item is %s, want pending", got.State)
	}
	e1.stopCalls()
	e1.db.Close()

	e2 := newEnv(t, envOptions{path: path})
	got := e2.waitState(it.ID, gateway.ApprovalExpired)
	if last := got.Transitions[len(got.Transitions)-1]; last.Actor != System || last.Time.Before(got.Expires) {
		t.Errorf("expiry transition %+v; want the gateway's, at or after %s", last, got.Expires)
	}
	if n := e1.backend.delivered.Load() + e2.backend.delivered.Load(); n != 0 {
		t.Errorf("delivered %d times", n)
	}
	e2.verifyChain()
}

func TestCrossProcessDecision(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/sallyport.db"
	// The serving process: no progress ticks, so only Run's polling can
	// tell the waiter of a decision made elsewhere.
	serve := newEnv(t, envOptions{path: path, opts: Options{ProgressInterval: time.Hour}})
	// The CLI: its own database handle and Service on the same file.
	cli := newEnv(t, envOptions{path: path, noRun: true})

	c := deleteCall()
	f := serve.start(c)
	it := serve.waitHeld(f, c)
	cli.decide(it.ID, rita, true, "approved from the command line")
	if err := f.wait(t); err != nil {
		t.Fatalf("the call failed: %v", err)
	}
	if n := serve.backend.delivered.Load(); n != 1 {
		t.Errorf("delivered %d times", n)
	}
	serve.waitState(it.ID, gateway.ApprovalExecuted)

	t.Run("a denial made elsewhere reaches the waiter too", func(t *testing.T) {
		c := deleteCall().with(func(c *call) { c.args = `{"repo":"acme/other"}` })
		f := serve.start(c)
		it := serve.waitHeld(f, c)
		cli.decide(it.ID, sam, false, "no")
		wantCode(t, f.wait(t), gateway.CodeApprovalDenied)
	})

	// Both processes wrote to one chain.
	serve.verifyChain()
}

func TestDecisionBeforeRunStarts(t *testing.T) {
	t.Parallel()
	// serve accepts calls before it starts the queue's Run: a call held
	// then, and decided by the CLI before Run first reads the store, must
	// still hear of it (and not only at its next progress tick).
	path := t.TempDir() + "/sallyport.db"
	serve := newEnv(t, envOptions{path: path, noRun: true, opts: Options{ProgressInterval: time.Hour}})
	cli := newEnv(t, envOptions{path: path, noRun: true})
	c := deleteCall()
	f := serve.start(c)
	it := serve.waitHeld(f, c)
	cli.decide(it.ID, rita, true, "")
	serve.run()
	if err := f.wait(t); err != nil {
		t.Fatalf("the call failed: %v", err)
	}
	if n := serve.backend.delivered.Load(); n != 1 {
		t.Errorf("delivered %d times", n)
	}
}

func TestAuditTrail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	// Approved by a quorum of two, denied, expired, cancelled: every
	// transition, and every vote, is an audit row of its item.
	var ids []string

	c := deleteCall().with(func(c *call) { c.approval.Quorum = 2 })
	f := e.start(c)
	it := e.waitHeld(f, c)
	e.decide(it.ID, rita, true, "first")
	e.decide(it.ID, sam, true, "second")
	if err := f.wait(t); err != nil {
		t.Fatal(err)
	}
	e.waitState(it.ID, gateway.ApprovalExecuted)
	ids = append(ids, it.ID)

	c = deleteCall().with(func(c *call) { c.args = `{"repo":"acme/b"}` })
	f = e.start(c)
	it = e.waitHeld(f, c)
	e.decide(it.ID, rita, false, "no")
	f.wait(t)
	ids = append(ids, it.ID)

	c = deleteCall().with(func(c *call) { c.args = `{"repo":"acme/c"}`; c.approval.Timeout = 200 * time.Millisecond })
	f = e.start(c)
	it = e.waitHeld(f, c)
	f.wait(t)
	e.waitState(it.ID, gateway.ApprovalExpired)
	ids = append(ids, it.ID)

	c = deleteCall().with(func(c *call) { c.args = `{"repo":"acme/d"}` })
	f = e.start(c)
	it = e.waitHeld(f, c)
	f.cancel(errors.New("gone"))
	f.wait(t)
	ids = append(ids, it.ID)

	for _, id := range ids {
		it := e.item(id)
		rows := e.rows(id)
		bySeq := map[int64]gateway.AuditRecord{}
		for _, r := range rows {
			bySeq[r.Seq] = r
			if r.Approval != id {
				t.Errorf("row %d of %s names approval %q", r.Seq, id, r.Approval)
			}
		}
		for i, tr := range it.Transitions {
			r, ok := bySeq[tr.AuditSeq]
			if !ok {
				t.Errorf("%s: transition %d (%s→%s) has audit seq %d, not a row of the item", id, i, tr.From, tr.To, tr.AuditSeq)
				continue
			}
			if i > 0 && r.Principal != tr.Actor {
				t.Errorf("%s: transition %s→%s by %q, its row by %q", id, tr.From, tr.To, tr.Actor, r.Principal)
			}
			if i > 0 && r.Ref != it.AuditSeq {
				t.Errorf("%s: transition row %d refs %d, want the held row %d", id, r.Seq, r.Ref, it.AuditSeq)
			}
		}
	}
	e.verifyChain()
}

func TestAuditedDecisionRows(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := deleteCall().with(func(c *call) { c.approval.Quorum = 2 })
	f := e.start(c)
	it := e.waitHeld(f, c)
	e.decide(it.ID, rita, true, "looks fine")
	e.decide(it.ID, sam, false, "wait, that is production")
	wantCode(t, f.wait(t), gateway.CodeApprovalDenied)
	var got []string
	for _, r := range e.rows(it.ID) {
		if r.Kind == "approval" {
			got = append(got, r.Principal+" "+r.Method+" "+r.Outcome)
			if r.Decision != gateway.DecisionApproval || r.PolicyVersion != "v1" || r.Target != "delete_repo" {
				t.Errorf("row %d: decision %q, policy %q, target %q", r.Seq, r.Decision, r.PolicyVersion, r.Target)
			}
		}
	}
	want := []string{
		"rita sallyport/approval.approve pending",
		"sam sallyport/approval.deny denied",
	}
	if !slices.Equal(got, want) {
		t.Errorf("approval rows\n%q\nwant\n%q", got, want)
	}
	e.verifyChain()
}

// The auditor is used only to build the chain; make sure the package under
// test is built against the real one.
var _ = audit.New

func TestPolicyChanges(t *testing.T) {
	t.Parallel()

	t.Run("a policy that changes while the call waits cancels the item", func(t *testing.T) {
		t.Parallel()
		c := deleteCall()
		var version atomic.Value
		version.Store(c.policy)
		e := newEnv(t, envOptions{opts: Options{PolicyVersion: func() string { return version.Load().(string) }}})
		f := e.start(c)
		it := e.waitHeld(f, c)
		version.Store("a newer policy")
		ge := wantCode(t, f.wait(t), gateway.CodeApprovalCancelled)
		contains(t, "the error", ge.Message, "policy changed", it.ID)
		if got := e.item(it.ID); got.State != gateway.ApprovalCancelled {
			t.Errorf("item is %s, want cancelled", got.State)
		}
		if n := e.backend.delivered.Load(); n != 0 {
			t.Errorf("delivered %d times", n)
		}
	})

	t.Run("a policy that changes after the approval fails the item undelivered", func(t *testing.T) {
		t.Parallel()
		c := deleteCall()
		var version atomic.Value
		version.Store(c.policy)
		e := newEnv(t, envOptions{opts: Options{ProgressInterval: time.Hour, PolicyVersion: func() string { return version.Load().(string) }}})
		f := e.start(c)
		it := e.waitHeld(f, c)
		version.Store("a newer policy")
		e.decide(it.ID, rita, true, "")
		ge := wantCode(t, f.wait(t), gateway.CodeApprovalCancelled)
		contains(t, "the error", ge.Message, "policy changed", "not delivered")
		if got := e.item(it.ID); got.State != gateway.ApprovalFailed || got.Claimed != nil {
			t.Errorf("item is %s, claimed %v; want failed and never claimed", got.State, got.Claimed)
		}
		if n := e.backend.delivered.Load(); n != 0 {
			t.Errorf("delivered %d times", n)
		}
	})

	t.Run("an unchanged policy delivers", func(t *testing.T) {
		t.Parallel()
		c := deleteCall()
		e := newEnv(t, envOptions{opts: Options{PolicyVersion: func() string { return c.policy }}})
		f := e.start(c)
		it := e.waitHeld(f, c)
		e.decide(it.ID, rita, true, "")
		if err := f.wait(t); err != nil {
			t.Fatalf("the approved call failed: %v", err)
		}
		if n := e.backend.delivered.Load(); n != 1 {
			t.Errorf("delivered %d times, want 1", n)
		}
	})
}

func TestClientConnectionGone(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{gateway.ApprovalModeHold, gateway.ApprovalModeRetry} {
		t.Run("in "+mode+" mode the waiting request gives up when its connection closes", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{})
			c := deleteCall()
			c.approval.Mode = mode
			gone := make(chan struct{})
			f := e.startWith(gateway.WithClientGone(context.Background(), gone), e.chain, c)
			it := e.waitHeld(f, c)
			close(gone)
			wantCode(t, f.wait(t), gateway.CodeRequestCancelled)
			got := e.item(it.ID)
			want := gateway.ApprovalCancelled
			if mode == gateway.ApprovalModeRetry {
				want = gateway.ApprovalPending // an identical retry may still come
			}
			if got.State != want {
				t.Fatalf("item is %s, want %s", got.State, want)
			}
			if want == gateway.ApprovalCancelled {
				contains(t, "the outcome", got.Outcome, "connection closed")
			}
			if e.svc.Waiting(it.ID) != 0 {
				t.Errorf("a request still waits on %s", it.ID)
			}
			if n := e.backend.delivered.Load(); n != 0 {
				t.Errorf("delivered %d times", n)
			}
		})
	}
}

func TestAnonymousCallsAreHeld(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{opts: Options{Mode: gateway.ApprovalModeRetry}})
	c := deleteCall()
	c.principal = gateway.Principal{ID: "anonymous", Anonymous: true}
	c.approval.Mode = gateway.ApprovalModeRetry
	f := e.start(c)
	it := e.waitHeld(f, c)
	if it.Mode != gateway.ApprovalModeHold {
		t.Errorf("an anonymous call's item is in %s mode: another anonymous client's retry could take its grant", it.Mode)
	}
	f.cancel(errors.New("done"))
	f.wait(t)
}
