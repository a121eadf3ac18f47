package approvals

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// pendingItem leaves a pending item for c with no call waiting on it: the
// call is sent in retry mode and gives up.
func (e *env) pendingItem(c call) *gateway.ApprovalItem {
	e.t.Helper()
	c.approval.Mode = gateway.ApprovalModeRetry
	f := e.start(c)
	it := e.waitHeld(f, c)
	f.cancel(errors.New("the client gave up"))
	f.wait(e.t)
	return e.item(it.ID)
}

func TestQuorum(t *testing.T) {
	t.Parallel()

	t.Run("one approval of two leaves it pending and a second reviewer approves it", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{})
		c := deleteCall().with(func(c *call) { c.approval.Quorum = 2 })
		f := e.start(c)
		it := e.waitHeld(f, c)
		if it.Quorum != 2 {
			t.Fatalf("item quorum %d, want 2", it.Quorum)
		}
		got := e.decide(it.ID, rita, true, "")
		if got.State != gateway.ApprovalPending || got.Approvals() != 1 {
			t.Fatalf("after one approval: %s with %d approvals; want pending with 1", got.State, got.Approvals())
		}
		if f.ended() || e.backend.delivered.Load() != 0 {
			t.Fatal("the call went on with one approval of two")
		}
		got = e.decide(it.ID, sam, true, "")
		if got.State != gateway.ApprovalApproved {
			t.Fatalf("after two approvals: %s", got.State)
		}
		if err := f.wait(t); err != nil {
			t.Fatal(err)
		}
		if n := e.backend.delivered.Load(); n != 1 {
			t.Errorf("delivered %d times", n)
		}
	})

	t.Run("the same reviewer twice is refused and counts once", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{})
		it := e.pendingItem(deleteCall().with(func(c *call) { c.approval.Quorum = 2 }))
		once := e.decide(it.ID, rita, true, "")
		_, err := e.svc.Decide(context.Background(), it.ID, rita, true, "again")
		if decisionStatus(err) != 409 {
			t.Fatalf("a second vote by rita: %v; want 409", err)
		}
		contains(t, "the refusal", err.Error(), "rita has already decided")
		if got := e.item(it.ID); got.State != gateway.ApprovalPending || len(got.Votes) != 1 || got.Rev != once.Rev {
			t.Errorf("after the refused vote: %s, %d votes, rev %d (was %d)", got.State, len(got.Votes), got.Rev, once.Rev)
		}
		// Nor can she turn her approval into a denial.
		if _, err := e.svc.Decide(context.Background(), it.ID, rita, false, ""); decisionStatus(err) != 409 {
			t.Errorf("rita denying after approving: %v; want 409", err)
		}
	})

	t.Run("any one denial denies", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, envOptions{})
		c := deleteCall().with(func(c *call) { c.approval.Quorum = 3 })
		f := e.start(c)
		it := e.waitHeld(f, c)
		e.decide(it.ID, rita, true, "")
		got := e.decide(it.ID, sam, false, "too broad")
		if got.State != gateway.ApprovalDenied {
			t.Fatalf("after a denial: %s", got.State)
		}
		ge := wantCode(t, f.wait(t), gateway.CodeApprovalDenied)
		contains(t, "the denial", ge.Message, "denied by sam: too broad")
		if n := e.backend.delivered.Load(); n != 0 {
			t.Errorf("delivered %d times", n)
		}
	})
}

func TestDecideRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noRun: true})
	ctx := context.Background()
	// sam both reviews and calls tools.
	samsCall := deleteCall().with(func(c *call) { c.principal = sam })
	samsItem := e.pendingItem(samsCall)
	other := e.pendingItem(deleteCall().with(func(c *call) { c.approval.Reviewers = "finance-reviewers"; c.args = `{"repo":"acme/ledger"}` }))
	plain := e.pendingItem(deleteCall().with(func(c *call) { c.args = `{"repo":"acme/plain"}` }))
	decided := e.pendingItem(deleteCall().with(func(c *call) { c.args = `{"repo":"acme/decided"}` }))
	e.decide(decided.ID, rita, false, "no")
	decided = e.item(decided.ID)
	late := e.pendingItem(deleteCall().with(func(c *call) {
		c.args = `{"repo":"acme/late"}`
		c.approval.Timeout = 100 * time.Millisecond
	}))
	// Run is stopped: the item stays pending past its expiry.
	waitFor(t, "the item's expiry to pass", func() bool { return time.Now().After(late.Expires) })

	cases := []struct {
		name     string
		id       string
		reviewer gateway.Principal
		comment  string
		status   int
		msg      string
	}{
		{"the requester cannot decide their own call", samsItem.ID, sam, "", 403, "separation of duties"},
		{"a reviewer outside the named group cannot decide", other.ID, rita, "", 403, `not in group "finance-reviewers"`},
		{"an admin who is no reviewer cannot decide", plain.ID, ada, "", 403, `not in group "reviewers"`},
		{"an anonymous principal cannot decide", plain.ID, anon, "", 403, "anonymous"},
		{"an anonymous principal in the group cannot decide", plain.ID, gateway.Principal{ID: "x", Anonymous: true, Groups: []string{"reviewers"}}, "", 403, "anonymous"},
		{"a principal with no id cannot decide", plain.ID, gateway.Principal{Groups: []string{"reviewers"}}, "", 403, "anonymous"},
		{"an unknown id is not found", "apr_doesnotexist", rita, "", 404, "no approval"},
		{"a decided item cannot be decided again", decided.ID, sam, "", 409, "denied, not pending"},
		{"an item past its expiry cannot be decided", late.ID, rita, "", 410, "expired"},
		{"a comment over 2000 bytes is refused", plain.ID, rita, strings.Repeat("x", 2001), 400, "comment"},
	}
	for _, tc := range cases {
		for _, approve := range []bool{true, false} {
			verb := map[bool]string{true: "approve", false: "deny"}[approve]
			t.Run(tc.name+" ("+verb+")", func(t *testing.T) {
				var before *gateway.ApprovalItem
				if tc.status != 404 {
					before = e.item(tc.id)
				}
				rowsBefore := len(rowsOf(t, e.db.Audit(), gateway.AuditFilter{}))
				it, err := e.svc.Decide(ctx, tc.id, tc.reviewer, approve, tc.comment)
				if decisionStatus(err) != tc.status {
					t.Fatalf("Decide: %v (status %d); want status %d", err, decisionStatus(err), tc.status)
				}
				if it != nil {
					t.Errorf("a refused decision returned item %+v", it)
				}
				contains(t, "the refusal", err.Error(), tc.msg)
				if before != nil {
					if after := e.item(tc.id); !reflect.DeepEqual(after, before) {
						t.Errorf("the refused decision changed the item:\n%+v\nwas\n%+v", after, before)
					}
				}
				if n := len(rowsOf(t, e.db.Audit(), gateway.AuditFilter{})); n != rowsBefore {
					t.Errorf("the refused decision wrote %d audit rows", n-rowsBefore)
				}
			})
		}
	}

	t.Run("with AllowSelfApproval the requester may decide their own call", func(t *testing.T) {
		self := newEnv(t, envOptions{noRun: true, opts: Options{AllowSelfApproval: true}})
		it := self.pendingItem(samsCall)
		if got := self.decide(it.ID, sam, true, "mine"); got.State != gateway.ApprovalApproved {
			t.Errorf("self-approved item is %s", got.State)
		}
	})

	t.Run("an expired item stays undecidable once expiry moved it", func(t *testing.T) {
		e.svc.expireDue(ctx)
		if got := e.item(late.ID); got.State != gateway.ApprovalExpired {
			t.Fatalf("after expireDue the item is %s", got.State)
		}
		if _, err := e.svc.Decide(ctx, late.ID, rita, true, ""); decisionStatus(err) != 410 {
			t.Errorf("Decide: %v; want 410", err)
		}
	})
}

func TestDecisionThatLosesARace(t *testing.T) {
	t.Parallel()
	// Two processes share the file: the CLI denies the item between the
	// serving process's read and its write.
	path := t.TempDir() + "/sallyport.db"
	var fs *failingStore
	e := newEnv(t, envOptions{path: path, noRun: true, wrapStore: func(s gateway.ApprovalStore) gateway.ApprovalStore {
		fs = &failingStore{ApprovalStore: s}
		return fs
	}})
	cli := newEnv(t, envOptions{path: path, noRun: true})
	ctx := context.Background()

	cases := []struct {
		name string
		act  func(id string) error
	}{
		{"a vote on an item another process decided meanwhile is refused", func(id string) error {
			_, err := e.svc.Decide(ctx, id, rita, true, "fine by me")
			return err
		}},
		{"a cancellation of an item another process decided meanwhile is refused", func(id string) error {
			_, err := e.svc.Cancel(ctx, id, "alice", "changed my mind")
			return err
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name+", and the audit log says so", func(t *testing.T) {
			it := e.pendingItem(deleteCall().with(func(c *call) { c.args = fmt.Sprintf(`{"repo":"acme/race%d"}`, i) }))
			fs.mu.Lock()
			fs.beforeUpdate = func(string) { cli.decide(it.ID, sam, false, "got there first") }
			fs.mu.Unlock()
			err := tc.act(it.ID)
			if decisionStatus(err) != 409 {
				t.Fatalf("got %v; want 409", err)
			}
			got := e.item(it.ID)
			if got.State != gateway.ApprovalDenied || got.Outcome != "denied by sam: got there first" {
				t.Errorf("the item is %s %q; want sam's denial to stand", got.State, got.Outcome)
			}
			// The attempt's row was written first; a row must then say it
			// did not take, or the log would show a decision never made.
			var attempt, refused *gateway.AuditRecord
			rows := e.rows(it.ID)
			for i := range rows {
				r := &rows[i]
				switch {
				case r.Kind == "approval" && r.Principal != "sam" && r.Outcome != gateway.OutcomeRefused:
					attempt = r
				case r.Method == "sallyport/approval.refused":
					refused = r
				}
			}
			if attempt == nil {
				t.Fatalf("no row of the attempt among %+v", rows)
			}
			if refused == nil {
				t.Fatalf("the attempt's row (%d, outcome %q) is never followed by a refusal", attempt.Seq, attempt.Outcome)
			}
			if refused.Ref != attempt.Seq || refused.Principal != attempt.Principal {
				t.Errorf("the refusal row refs %d by %q; want %d by %q", refused.Ref, refused.Principal, attempt.Seq, attempt.Principal)
			}
			contains(t, "the refusal row's error", refused.Error, "denied")
		})
	}
	e.verifyChain()
}

func TestCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noRun: true})
	ctx := context.Background()
	it := e.pendingItem(deleteCall())

	got, err := e.svc.Cancel(ctx, it.ID, "alice", "not needed any more")
	if err != nil || got.State != gateway.ApprovalCancelled || got.Outcome != "not needed any more" {
		t.Fatalf("Cancel: %v, %+v", err, got)
	}
	cases := []struct {
		name   string
		id     string
		status int
	}{
		{"a cancelled item cannot be cancelled again", it.ID, 409},
		{"an unknown item cannot be cancelled", "apr_nope", 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.svc.Cancel(ctx, tc.id, "alice", ""); decisionStatus(err) != tc.status {
				t.Errorf("Cancel: %v; want %d", err, tc.status)
			}
		})
	}
}

func TestUnclaimedGrantExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	c := deleteCall().with(func(c *call) {
		c.approval.Mode = gateway.ApprovalModeRetry
		c.approval.Timeout = 400 * time.Millisecond
	})
	f := e.start(c)
	it := e.waitHeld(f, c)
	f.cancel(errors.New("the client gave up"))
	f.wait(t)
	e.decide(it.ID, rita, true, "")
	// Nobody comes back for it: Run expires the grant.
	got := e.waitState(it.ID, gateway.ApprovalExpired)
	waitFor(t, "the expiry's outcome", func() bool { got = e.item(it.ID); return got.Outcome != "" })
	contains(t, "the outcome", got.Outcome, "approved, but the call did not come back for it within")
	if got.Claimed != nil {
		t.Error("the expired grant was claimed")
	}
	// A retry now needs a new approval.
	g := e.start(c.with(func(c *call) { c.approval.Timeout = time.Minute }))
	fresh := e.waitHeld(g, c)
	if fresh.ID == it.ID {
		t.Fatal("the retry attached to the expired grant")
	}
	if n := e.backend.delivered.Load(); n != 0 {
		t.Errorf("delivered %d times", n)
	}
}

func TestCanSee(t *testing.T) {
	t.Parallel()
	it := &gateway.ApprovalItem{ID: "apr_x", ApprovalBinding: gateway.ApprovalBinding{Principal: "alice"}, Reviewers: "reviewers"}
	cases := []struct {
		name string
		p    gateway.Principal
		want bool
	}{
		{"a reviewer of its group sees it", rita, true},
		{"the requester sees it", alice, true},
		{"an admin sees it", ada, true},
		{"an auditor sees it", gateway.Principal{ID: "aud", Groups: []string{"auditor"}}, true},
		{"a reviewer of another group does not", otto, false},
		{"another caller does not", bob, false},
		{"an anonymous principal does not, even in the group", gateway.Principal{ID: "x", Anonymous: true, Groups: []string{"reviewers", "admin"}}, false},
		{"an anonymous principal named like the requester does not", gateway.Principal{ID: "alice", Anonymous: true}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := CanSee(tc.p, it); got != tc.want {
				t.Errorf("CanSee = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestShortDuration(t *testing.T) {
	t.Parallel()
	cases := []struct {
		d    time.Duration
		want string
	}{
		{10 * time.Minute, "10m"},
		{90 * time.Minute, "1h30m"},
		{time.Hour, "1h"},
		{45 * time.Second, "45s"},
		{1500 * time.Millisecond, "2s"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s is written %s", tc.d, tc.want), func(t *testing.T) {
			if got := shortDuration(tc.d); got != tc.want {
				t.Errorf("shortDuration(%s) = %q", tc.d, got)
			}
		})
	}
}

// approvedItem leaves an approved, unclaimed retry-mode item for c.
func (e *env) approvedItem(c call) *gateway.ApprovalItem {
	e.t.Helper()
	it := e.pendingItem(c)
	return e.decide(it.ID, rita, true, "")
}

// claimAs claims item id as the process instance names would have, at t.
func (e *env) claimAs(id, instance string, at time.Time) {
	e.t.Helper()
	if _, err := e.db.Approvals().UpdateApproval(context.Background(), id, func(it *gateway.ApprovalItem) error {
		it.Claimed, it.ClaimedBy = &at, instance
		return nil
	}); err != nil {
		e.t.Fatalf("claim %s: %v", id, err)
	}
}

func TestOrphanedClaims(t *testing.T) {
	t.Parallel()
	host, err := os.Hostname()
	if err != nil {
		t.Skipf("no host name: %v", err)
	}
	// A process that has exited: its pid names no process (for now).
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	deadPID := exited.Process.Pid
	now := time.Now()
	cases := []struct {
		name      string
		instance  string
		claimed   time.Time
		ambiguous bool
		why       string
	}{
		{"a claim of an exited process on this host becomes ambiguous",
			fmt.Sprintf("%s/%d/aaaa", host, deadPID), now, true, "stopped before an answer was recorded"},
		{"a claim of an earlier process with this pid becomes ambiguous",
			fmt.Sprintf("%s/%d/bbbb", host, os.Getpid()), now, true, "stopped before an answer was recorded"},
		{"a claim of a live process on this host within the lease stays",
			fmt.Sprintf("%s/%d/cccc", host, os.Getppid()), now, false, ""},
		{"a claim of another host's process within the lease stays",
			"elsewhere.example/1/dddd", now, false, ""},
		{"a claim past the lease becomes ambiguous whoever made it",
			"elsewhere.example/1/eeee", now.Add(-time.Hour), true, "no outcome was recorded within 10m"},
		{"a claim that names no process is left to the lease",
			"", now, false, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{noRun: true})
			c := deleteCall().with(func(c *call) { c.args = fmt.Sprintf(`{"repo":"acme/o%d"}`, i) })
			it := e.approvedItem(c)
			e.claimAs(it.ID, tc.instance, tc.claimed)
			e.svc.orphans(context.Background())
			got := e.item(it.ID)
			if !tc.ambiguous {
				if got.State != gateway.ApprovalApproved {
					t.Errorf("the claim was moved to %s", got.State)
				}
				return
			}
			if got.State != gateway.ApprovalAmbiguous {
				t.Fatalf("the item is %s, want ambiguous", got.State)
			}
			contains(t, "the outcome", got.Outcome, "delivered, and no answer came", tc.why)
			// Never delivered again: the retry needs a new approval, which
			// names the ambiguous item.
			f := e.start(c.with(func(c *call) { c.approval.Mode = gateway.ApprovalModeRetry }))
			fresh := e.waitHeld(f, c)
			if fresh.ID == it.ID || !slices.Contains(fresh.Related, it.ID) {
				t.Errorf("the retry's item %s has related %v; want a new item naming %s", fresh.ID, fresh.Related, it.ID)
			}
			if n := e.backend.delivered.Load(); n != 0 {
				t.Errorf("delivered %d times", n)
			}
		})
	}

	t.Run("a delivery in progress in this process is never called ambiguous", func(t *testing.T) {
		t.Parallel()
		// Every claim is past this lease at once.
		e := newEnv(t, envOptions{noRun: true, opts: Options{DeliveryLease: time.Nanosecond}})
		inBackend, release := make(chan struct{}), make(chan struct{})
		e.backend.setAnswer(func(_ context.Context, x *gateway.Exchange) error {
			close(inBackend)
			<-release
			x.Answer = jsonrpc.NewResult(x.Message.ID, json.RawMessage(`{}`))
			return nil
		})
		c := deleteCall()
		f := e.start(c)
		it := e.waitHeld(f, c)
		e.decide(it.ID, rita, true, "")
		select {
		case <-inBackend:
		case <-time.After(patience):
			t.Fatal("the call never reached the backend")
		}
		e.svc.orphans(context.Background())
		if got := e.item(it.ID); got.State != gateway.ApprovalApproved {
			t.Errorf("while it was being delivered the item became %s", got.State)
		}
		close(release)
		if err := f.wait(t); err != nil {
			t.Fatal(err)
		}
		e.waitState(it.ID, gateway.ApprovalExecuted)
	})
}

func TestDecisionComments(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noRun: true})
	cases := []struct {
		name    string
		comment string
		stored  string
	}{
		{"a comment of 2000 bytes is kept whole on the vote", strings.Repeat("é", 1000), strings.Repeat("é", 1000)},
		{"a comment that is not UTF-8 is stored repaired", "ok\xff\xfe then", "ok\uFFFD then"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			it := e.pendingItem(deleteCall().with(func(c *call) { c.args = fmt.Sprintf(`{"repo":"acme/c%d"}`, i) }))
			got := e.decide(it.ID, rita, false, tc.comment)
			if len(got.Votes) != 1 || got.Votes[0].Comment != tc.stored {
				t.Fatalf("votes %+v", got.Votes)
			}
			for _, r := range e.rows(it.ID) {
				for _, reason := range r.Reasons {
					if len(reason) > 512+len("…") || !utf8.ValidString(reason) {
						t.Errorf("row %d carries a reason of %d bytes (valid UTF-8: %v)", r.Seq, len(reason), utf8.ValidString(reason))
					}
				}
			}
		})
	}
}
