package sqlite

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
)

// binding is the call the test items are bound to.
var binding = gateway.ApprovalBinding{Principal: "alice", Backend: "github", Method: "tools/call", Target: "delete_repo",
	DefinitionHash: "sha256:def0", ArgumentsHash: "sha256:arg0", PolicyVersion: "v7"}

// item returns a new pending item for binding, created n minutes after t0
// and expiring an hour after that.
func item(id string, n int) *gateway.ApprovalItem {
	created := t0.Add(time.Duration(n) * time.Minute)
	return &gateway.ApprovalItem{ID: id, State: gateway.ApprovalPending, Mode: gateway.ApprovalModeHold,
		ApprovalBinding: binding, Session: "sess-1", Arguments: `{"repo":"x"}`, Reviewers: "security", Quorum: 1,
		Created: created, Expires: created.Add(time.Hour), Updated: created,
		Transitions: []gateway.ApprovalTransition{{To: gateway.ApprovalPending, Actor: "sallyport", Time: created}}}
}

// fullItem returns an item with every field set.
func fullItem(id string) *gateway.ApprovalItem {
	it := item(id, 0)
	claimed := t0.Add(90*time.Second + 123456789*time.Nanosecond)
	it.State = gateway.ApprovalApproved
	it.Mode = gateway.ApprovalModeRetry
	it.TokenID, it.Transport = "tok_0001", "streamable-http"
	it.Arguments = `{"note":"quote \" and <tag> & unicode Zoë 🚀","repo":"x"}`
	it.Findings = `[{"detector":"EMAIL_ADDRESS","path":"params.arguments.to","offset":0,"length":17,"action":"redact"}]`
	it.Reason, it.Reasons, it.Rules = "deleting a repository needs approval", []string{"delete is destructive", "second"}, []string{"approve-delete"}
	it.Quorum = 2
	it.Updated = claimed
	it.Votes = []gateway.ApprovalVote{
		{Reviewer: "rita", Approve: true, Comment: "ok", Time: t0.Add(time.Minute)},
		{Reviewer: "sam", Approve: true, Time: t0.Add(80 * time.Second)},
	}
	it.Claimed = &claimed
	it.Related = []string{"apr_earlier1", "apr_earlier2"}
	it.AuditSeq = 41
	it.Outcome = "approved by rita and sam"
	it.Transitions = append(it.Transitions,
		gateway.ApprovalTransition{From: gateway.ApprovalPending, To: gateway.ApprovalApproved, Actor: "sam", Comment: "quorum",
			Time: t0.Add(80 * time.Second), AuditSeq: 43})
	return it
}

func insert(t testing.TB, s gateway.ApprovalStore, items ...*gateway.ApprovalItem) {
	t.Helper()
	for _, it := range items {
		if err := s.InsertApproval(context.Background(), it, 0); err != nil {
			t.Fatalf("InsertApproval(%s): %v", it.ID, err)
		}
	}
}

func get(t testing.TB, s gateway.ApprovalStore, id string) *gateway.ApprovalItem {
	t.Helper()
	it, err := s.Approval(context.Background(), id)
	if err != nil {
		t.Fatalf("Approval(%s): %v", id, err)
	}
	return it
}

// currentRev returns the store's revision.
func currentRev(t testing.TB, s gateway.ApprovalStore) int64 {
	t.Helper()
	_, rev, err := s.ApprovalsSince(context.Background(), 1<<62)
	if err != nil {
		t.Fatalf("ApprovalsSince: %v", err)
	}
	return rev
}

func ids(items []*gateway.ApprovalItem) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, it.ID)
	}
	return out
}

func TestApprovalRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	db := openDB(t, path, Options{})
	s := db.Approvals()
	want := fullItem("apr_full")
	if err := s.InsertApproval(ctx, want, 0); err != nil {
		t.Fatal(err)
	}
	if want.Rev != 1 {
		t.Errorf("the inserted item's Rev is %d, want 1", want.Rev)
	}
	t.Run("Approval gives back every field", func(t *testing.T) {
		if got := get(t, s, "apr_full"); !reflect.DeepEqual(got, want) {
			t.Errorf("read back\n%+v\nwant\n%+v", got, want)
		}
	})
	t.Run("Approvals and ApprovalsSince give back every field", func(t *testing.T) {
		all, err := s.Approvals(ctx, gateway.ApprovalFilter{})
		if err != nil || len(all) != 1 || !reflect.DeepEqual(all[0], want) {
			t.Errorf("Approvals = %v, %v", all, err)
		}
		since, rev, err := s.ApprovalsSince(ctx, 0)
		if err != nil || rev != 1 || len(since) != 1 || !reflect.DeepEqual(since[0], want) {
			t.Errorf("ApprovalsSince(0) = %v, %d, %v", since, rev, err)
		}
	})
	t.Run("the columns are the item's", func(t *testing.T) {
		var id, state, principal, backend, target, bind, call, item string
		var created, expires, rev int64
		err := rawDB(t, path).QueryRow("SELECT id, state, principal, backend, target, binding, call_key, created, expires, rev, item FROM approvals").
			Scan(&id, &state, &principal, &backend, &target, &bind, &call, &created, &expires, &rev, &item)
		if err != nil {
			t.Fatal(err)
		}
		got := []any{id, state, principal, backend, target, created, expires, rev}
		w := []any{"apr_full", "approved", "alice", "github", "delete_repo", t0.UnixMicro(), t0.Add(time.Hour).UnixMicro(), int64(1)}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("columns %v, want %v", got, w)
		}
		if len(bind) != 64 || len(call) != 64 || bind == call || strings.Trim(bind+call, "0123456789abcdef") != "" {
			t.Errorf("binding %q and call_key %q are not two hex SHA-256 sums", bind, call)
		}
		if !strings.Contains(item, `"votes":[{"reviewer":"rita"`) {
			t.Errorf("item is not the item's JSON: %s", item)
		}
	})
	t.Run("a database opened read-only reads it", func(t *testing.T) {
		ro := openDB(t, path, Options{ReadOnly: true})
		if got := get(t, ro.Approvals(), "apr_full"); !reflect.DeepEqual(got, want) {
			t.Errorf("read back\n%+v\nwant\n%+v", got, want)
		}
		if n, err := ro.Approvals().CountApprovals(ctx, ""); err != nil || n[gateway.ApprovalApproved] != 1 {
			t.Errorf("CountApprovals = %v, %v", n, err)
		}
		if _, rev, err := ro.Approvals().ApprovalsSince(ctx, 0); err != nil || rev != 1 {
			t.Errorf("ApprovalsSince = %d, %v", rev, err)
		}
		err := ro.Approvals().InsertApproval(ctx, item("apr_ro", 1), 0)
		if err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("InsertApproval on a read-only database = %v", err)
		}
		_, err = ro.Approvals().UpdateApproval(ctx, "apr_full", func(*gateway.ApprovalItem) error {
			t.Error("fn was called on a read-only database")
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("UpdateApproval on a read-only database = %v", err)
		}
	})
	t.Run("an unknown id is ErrApprovalNotFound", func(t *testing.T) {
		if _, err := s.Approval(ctx, "apr_none"); !errors.Is(err, gateway.ErrApprovalNotFound) {
			t.Errorf("Approval = %v", err)
		}
	})
	t.Run("a duplicate id is an error and stores nothing", func(t *testing.T) {
		dup := item("apr_full", 5)
		err := s.InsertApproval(ctx, dup, 0)
		if err == nil || errors.Is(err, gateway.ErrApprovalLimit) || !strings.Contains(err.Error(), "exists") {
			t.Errorf("InsertApproval of a duplicate = %v", err)
		}
		if dup.Rev != 0 || currentRev(t, s) != 1 {
			t.Errorf("the refused insert set Rev %d, store revision %d", dup.Rev, currentRev(t, s))
		}
		if got := get(t, s, "apr_full"); !reflect.DeepEqual(got, want) {
			t.Errorf("the duplicate changed the item: %+v", got)
		}
	})
	t.Run("an item the store cannot keep faithfully is refused", func(t *testing.T) {
		for name, edit := range map[string]func(*gateway.ApprovalItem){
			"no id":                         func(it *gateway.ApprovalItem) { it.ID = "" },
			"no state":                      func(it *gateway.ApprovalItem) { it.State = "" },
			"an unknown state":              func(it *gateway.ApprovalItem) { it.State = "maybe" },
			"a target that is not UTF-8":    func(it *gateway.ApprovalItem) { it.Target = "a\xffb" },
			"a principal that is not UTF-8": func(it *gateway.ApprovalItem) { it.Principal = "\xc3" },
		} {
			it := item("apr_bad", 1)
			edit(it)
			if err := s.InsertApproval(ctx, it, 0); err == nil || !strings.HasPrefix(err.Error(), "insert approval: ") {
				t.Errorf("%s: InsertApproval = %v", name, err)
			}
		}
		if n, _ := s.CountApprovals(ctx, ""); n[gateway.ApprovalPending] != 0 {
			t.Errorf("a refused item was stored: %v", n)
		}
	})
	t.Run("an item whose columns were altered outside sallyport is not read", func(t *testing.T) {
		raw := rawDB(t, path)
		if _, err := raw.Exec("UPDATE approvals SET state = 'pending' WHERE id = 'apr_full'"); err != nil {
			t.Fatal(err)
		}
		defer raw.Exec("UPDATE approvals SET state = 'approved' WHERE id = 'apr_full'")
		if _, err := s.Approval(ctx, "apr_full"); err == nil || !strings.Contains(err.Error(), "do not match") {
			t.Errorf("Approval = %v", err)
		}
		if _, err := s.Approvals(ctx, gateway.ApprovalFilter{States: []gateway.ApprovalState{gateway.ApprovalPending}}); err == nil {
			t.Error("Approvals read the altered row")
		}
		if _, err := s.UpdateApproval(ctx, "apr_full", func(*gateway.ApprovalItem) error { return nil }); err == nil {
			t.Error("UpdateApproval read the altered row")
		}
	})
}

func TestInsertApprovalLimit(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	s := db.Approvals()
	for i := range 3 {
		if err := s.InsertApproval(ctx, item(fmt.Sprintf("apr_a%d", i), i), 3); err != nil {
			t.Fatalf("pending item %d of 3: %v", i+1, err)
		}
	}
	t.Run("at the cap the insert is refused and stores nothing", func(t *testing.T) {
		rev := currentRev(t, s)
		it := item("apr_a3", 3)
		if err := s.InsertApproval(ctx, it, 3); !errors.Is(err, gateway.ErrApprovalLimit) {
			t.Fatalf("the 4th pending item: %v, want ErrApprovalLimit", err)
		}
		if _, err := s.Approval(ctx, "apr_a3"); !errors.Is(err, gateway.ErrApprovalNotFound) {
			t.Errorf("the refused item: %v, want ErrApprovalNotFound", err)
		}
		if it.Rev != 0 || currentRev(t, s) != rev {
			t.Errorf("the refused insert moved the revision: item %d, store %d → %d", it.Rev, rev, currentRev(t, s))
		}
	})
	t.Run("a cap of 4 takes one more and no more", func(t *testing.T) {
		if err := s.InsertApproval(ctx, item("apr_a4", 4), 4); err != nil {
			t.Fatal(err)
		}
		if err := s.InsertApproval(ctx, item("apr_a5", 5), 4); !errors.Is(err, gateway.ErrApprovalLimit) {
			t.Errorf("the 5th: %v", err)
		}
	})
	t.Run("the cap is per principal", func(t *testing.T) {
		b := item("apr_b0", 6)
		b.Principal = "bob"
		if err := s.InsertApproval(ctx, b, 1); err != nil {
			t.Errorf("bob's first: %v", err)
		}
		b = item("apr_b1", 7)
		b.Principal = "bob"
		if err := s.InsertApproval(ctx, b, 1); !errors.Is(err, gateway.ErrApprovalLimit) {
			t.Errorf("bob's second: %v", err)
		}
	})
	t.Run("no cap with 0", func(t *testing.T) {
		if err := s.InsertApproval(ctx, item("apr_a6", 8), 0); err != nil {
			t.Error(err)
		}
	})
	t.Run("items no longer pending do not count", func(t *testing.T) {
		for _, id := range []string{"apr_a0", "apr_a1"} {
			if _, err := s.UpdateApproval(ctx, id, func(it *gateway.ApprovalItem) error {
				it.State = gateway.ApprovalDenied
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		// alice has a2, a4, a6 pending: 3.
		if err := s.InsertApproval(ctx, item("apr_a7", 9), 4); err != nil {
			t.Errorf("with 3 pending under a cap of 4: %v", err)
		}
		if err := s.InsertApproval(ctx, item("apr_a8", 10), 4); !errors.Is(err, gateway.ErrApprovalLimit) {
			t.Errorf("with 4 pending under a cap of 4: %v", err)
		}
	})
	t.Run("concurrent inserts stop exactly at the cap", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok, limited := 0, 0
		for i := range 8 {
			wg.Go(func() {
				it := item(fmt.Sprintf("apr_c%d", i), 20+i)
				it.Principal = "carol"
				err := s.InsertApproval(ctx, it, 5)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, gateway.ErrApprovalLimit):
					limited++
				default:
					t.Errorf("InsertApproval: %v", err)
				}
			})
		}
		wg.Wait()
		got, err := s.Approvals(ctx, gateway.ApprovalFilter{Principal: "carol"})
		if ok != 5 || limited != 3 || err != nil || len(got) != 5 {
			t.Errorf("%d stored, %d refused, %d items (%v); want 5, 3, 5", ok, limited, len(got), err)
		}
	})
}

// voteErr is an error type of a caller's own, for errors.As.
type voteErr struct{ reviewer string }

func (e *voteErr) Error() string { return e.reviewer + " voted already" }

func TestUpdateApproval(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	s := db.Approvals()
	insert(t, s, item("apr_1", 0), item("apr_2", 1))

	t.Run("what fn leaves is stored with the next revision", func(t *testing.T) {
		updated := t0.Add(2 * time.Minute)
		got, err := s.UpdateApproval(ctx, "apr_1", func(it *gateway.ApprovalItem) error {
			if it.Rev != 1 {
				t.Errorf("fn got Rev %d, want 1", it.Rev)
			}
			it.Votes = append(it.Votes, gateway.ApprovalVote{Reviewer: "rita", Approve: true, Time: updated})
			it.State, it.Updated = gateway.ApprovalApproved, updated
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.Rev != 3 || got.State != gateway.ApprovalApproved || len(got.Votes) != 1 || !got.Updated.Equal(updated) {
			t.Errorf("UpdateApproval returned %+v", got)
		}
		if read := get(t, s, "apr_1"); !reflect.DeepEqual(read, got) {
			t.Errorf("stored\n%+v\nreturned\n%+v", read, got)
		}
		if other := get(t, s, "apr_2"); other.Rev != 2 || len(other.Votes) != 0 {
			t.Errorf("the other item changed: %+v", other)
		}
	})
	t.Run("the store does not set Updated", func(t *testing.T) {
		before := get(t, s, "apr_2").Updated
		got, err := s.UpdateApproval(ctx, "apr_2", func(it *gateway.ApprovalItem) error { it.Outcome = "x"; return nil })
		if err != nil || !got.Updated.Equal(before) {
			t.Errorf("Updated %v → %v (%v)", before, got.Updated, err)
		}
	})
	t.Run("an error from fn is returned as it is and stores nothing", func(t *testing.T) {
		rev := currentRev(t, s)
		before := get(t, s, "apr_1")
		sentinel := errors.New("no quorum")
		own := &voteErr{"rita"}
		for _, want := range []error{sentinel, own, gateway.ErrApprovalNotFound} {
			_, err := s.UpdateApproval(ctx, "apr_1", func(it *gateway.ApprovalItem) error {
				it.State = gateway.ApprovalDenied
				it.Votes = nil
				return want
			})
			if err != want {
				t.Errorf("UpdateApproval = %v, want %v itself", err, want)
			}
		}
		_, err := s.UpdateApproval(ctx, "apr_1", func(*gateway.ApprovalItem) error { return fmt.Errorf("check: %w", own) })
		var ve *voteErr
		if !errors.As(err, &ve) || ve != own {
			t.Errorf("errors.As on %v did not find the caller's error", err)
		}
		if after := get(t, s, "apr_1"); !reflect.DeepEqual(after, before) || currentRev(t, s) != rev {
			t.Errorf("a failed update stored something: %+v (revision %d → %d)", after, rev, currentRev(t, s))
		}
	})
	t.Run("an unknown id is ErrApprovalNotFound and fn is not called", func(t *testing.T) {
		_, err := s.UpdateApproval(ctx, "apr_none", func(*gateway.ApprovalItem) error {
			t.Error("fn was called")
			return nil
		})
		if !errors.Is(err, gateway.ErrApprovalNotFound) {
			t.Errorf("UpdateApproval = %v", err)
		}
	})
	t.Run("fn may not change the id", func(t *testing.T) {
		rev := currentRev(t, s)
		_, err := s.UpdateApproval(ctx, "apr_1", func(it *gateway.ApprovalItem) error { it.ID = "apr_2"; return nil })
		if err == nil || !strings.Contains(err.Error(), "id") {
			t.Errorf("UpdateApproval = %v", err)
		}
		if get(t, s, "apr_2").Outcome != "x" || currentRev(t, s) != rev {
			t.Error("changing the id stored something")
		}
	})
	t.Run("fn may not leave an unknown state", func(t *testing.T) {
		_, err := s.UpdateApproval(ctx, "apr_1", func(it *gateway.ApprovalItem) error { it.State = "done"; return nil })
		if err == nil || get(t, s, "apr_1").State != gateway.ApprovalApproved {
			t.Errorf("UpdateApproval = %v", err)
		}
	})
	t.Run("the columns follow the item", func(t *testing.T) {
		moved := binding
		moved.PolicyVersion, moved.Target = "v8", "archive_repo"
		if _, err := s.UpdateApproval(ctx, "apr_2", func(it *gateway.ApprovalItem) error {
			it.ApprovalBinding = moved
			it.State = gateway.ApprovalCancelled
			it.Expires = t0.Add(-time.Hour)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for name, f := range map[string]gateway.ApprovalFilter{
			"binding":  {Binding: &moved},
			"call":     {CallOf: &moved},
			"target":   {Target: "archive_repo"},
			"state":    {States: []gateway.ApprovalState{gateway.ApprovalCancelled}},
			"expiry":   {ExpiresBefore: t0},
			"together": {Binding: &moved, States: []gateway.ApprovalState{gateway.ApprovalCancelled}, ExpiresBefore: t0},
		} {
			got, err := s.Approvals(ctx, f)
			if err != nil || !slices.Equal(ids(got), []string{"apr_2"}) {
				t.Errorf("by %s: %v, %v; want apr_2", name, ids(got), err)
			}
		}
		if got, _ := s.Approvals(ctx, gateway.ApprovalFilter{Binding: &binding}); !slices.Equal(ids(got), []string{"apr_1"}) {
			t.Errorf("the old binding selects %v, want apr_1 only", ids(got))
		}
	})
}

func TestUpdateApprovalConcurrently(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	s := db.Approvals()
	insert(t, s, item("apr_1", 0))
	const n = 8
	var wg sync.WaitGroup
	revs := make([]int64, n)
	for i := range n {
		wg.Go(func() {
			got, err := s.UpdateApproval(ctx, "apr_1", func(it *gateway.ApprovalItem) error {
				it.Votes = append(it.Votes, gateway.ApprovalVote{Reviewer: fmt.Sprintf("r%d", i), Approve: true, Time: t0})
				return nil
			})
			if err != nil {
				t.Errorf("UpdateApproval %d: %v", i, err)
				return
			}
			revs[i] = got.Rev
		})
	}
	wg.Wait()
	got := get(t, s, "apr_1")
	var reviewers []string
	for _, v := range got.Votes {
		reviewers = append(reviewers, v.Reviewer)
	}
	slices.Sort(reviewers)
	if want := []string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7"}; !slices.Equal(reviewers, want) {
		t.Errorf("votes %v, want %v: an update was lost", reviewers, want)
	}
	slices.Sort(revs)
	if want := []int64{2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(revs, want) || got.Rev != 9 {
		t.Errorf("revisions %v and final %d, want %v and 9: each update its own", revs, got.Rev, want)
	}
}

func TestApprovalsSinceAcrossHandles(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	mine := openDB(t, path, Options{}).Approvals()
	theirs := openDB(t, path, Options{}).Approvals() // another process's view
	since := func(s gateway.ApprovalStore, rev int64) ([]string, int64) {
		t.Helper()
		items, cur, err := s.ApprovalsSince(ctx, rev)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(items); i++ {
			if items[i].Rev <= items[i-1].Rev {
				t.Errorf("ApprovalsSince is not in revision order: %d after %d", items[i].Rev, items[i-1].Rev)
			}
		}
		for _, it := range items {
			if it.Rev <= rev || it.Rev > cur {
				t.Errorf("item %s has Rev %d, outside (%d, %d]", it.ID, it.Rev, rev, cur)
			}
		}
		return ids(items), cur
	}
	if got, rev := since(mine, 0); len(got) != 0 || rev != 0 {
		t.Fatalf("a new store: %v at revision %d", got, rev)
	}
	insert(t, mine, item("apr_1", 0))
	insert(t, theirs, item("apr_2", 1))
	got, rev := since(mine, 0)
	if !slices.Equal(got, []string{"apr_1", "apr_2"}) || rev != 2 {
		t.Errorf("since 0: %v at %d, want apr_1, apr_2 at 2", got, rev)
	}
	if _, err := theirs.UpdateApproval(ctx, "apr_1", func(it *gateway.ApprovalItem) error {
		it.State = gateway.ApprovalDenied
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, rev2 := since(mine, rev)
	if !slices.Equal(got, []string{"apr_1"}) || rev2 != 3 {
		t.Errorf("since %d: %v at %d, want apr_1 at 3", rev, got, rev2)
	}
	if it := get(t, mine, "apr_1"); it.State != gateway.ApprovalDenied || it.Rev != 3 {
		t.Errorf("the other handle's change reads as %s at %d", it.State, it.Rev)
	}
	if got, rev3 := since(mine, rev2); len(got) != 0 || rev3 != rev2 {
		t.Errorf("nothing changed: %v at %d", got, rev3)
	}

	t.Run("revisions strictly increase across writers", func(t *testing.T) {
		var wg sync.WaitGroup
		for w, s := range []gateway.ApprovalStore{mine, theirs} {
			wg.Go(func() {
				for i := range 20 {
					if w == 0 {
						if err := s.InsertApproval(ctx, item(fmt.Sprintf("apr_w%d_%d", w, i), 10+i), 0); err != nil {
							t.Error(err)
						}
						continue
					}
					if _, err := s.UpdateApproval(ctx, "apr_2", func(it *gateway.ApprovalItem) error {
						it.Outcome = fmt.Sprint(i)
						return nil
					}); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		items, cur := since(theirs, 0) // checks the order
		if cur != rev2+40 || len(items) != 22 {
			t.Errorf("%d items at revision %d, want 22 at %d", len(items), cur, rev2+40)
		}
		if last := get(t, mine, "apr_2"); last.Outcome != "19" {
			t.Errorf("apr_2's last update is %q, want 19", last.Outcome)
		}
	})
}

func TestApprovalFilters(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	s := db.Approvals()
	mk := func(id string, n int, st gateway.ApprovalState, principal, backend, target string) *gateway.ApprovalItem {
		it := item(id, n)
		it.State, it.Principal, it.Backend, it.Target = st, principal, backend, target
		return it
	}
	insert(t, s,
		mk("apr_1", 1, gateway.ApprovalPending, "alice", "github", "delete_repo"),
		mk("apr_2", 2, gateway.ApprovalApproved, "bob", "github", "delete_repo"),
		mk("apr_3", 3, gateway.ApprovalPending, "alice", "files", "write_file"),
		mk("apr_4", 4, gateway.ApprovalExpired, "carol", "files", "write_file"),
		mk("apr_5", 5, gateway.ApprovalAmbiguous, "alice", "github", "delete_repo"),
		mk("apr_6b", 6, gateway.ApprovalPending, "bob", "files", "file:///etc/hosts"),
		mk("apr_6a", 6, gateway.ApprovalPending, "bob", "files", "file:///etc/hosts"), // the same created time as 6b
	)
	tests := []struct {
		name   string
		filter gateway.ApprovalFilter
		want   []string
	}{
		{"no filter selects every item, newest first and then by id", gateway.ApprovalFilter{}, []string{"apr_6a", "apr_6b", "apr_5", "apr_4", "apr_3", "apr_2", "apr_1"}},
		{"one state", gateway.ApprovalFilter{States: []gateway.ApprovalState{gateway.ApprovalPending}}, []string{"apr_6a", "apr_6b", "apr_3", "apr_1"}},
		{"several states", gateway.ApprovalFilter{States: []gateway.ApprovalState{gateway.ApprovalApproved, gateway.ApprovalExpired, gateway.ApprovalAmbiguous}}, []string{"apr_5", "apr_4", "apr_2"}},
		{"a state no item is in", gateway.ApprovalFilter{States: []gateway.ApprovalState{gateway.ApprovalExecuted}}, []string{}},
		{"principal", gateway.ApprovalFilter{Principal: "alice"}, []string{"apr_5", "apr_3", "apr_1"}},
		{"visible to a requester outside the reviewers: their own", gateway.ApprovalFilter{VisibleTo: &gateway.ApprovalVisibility{Principal: "carol", Groups: []string{"ops", "dev"}}}, []string{"apr_4"}},
		{"visible to a reviewer of the group: all of it", gateway.ApprovalFilter{VisibleTo: &gateway.ApprovalVisibility{Principal: "zed", Groups: []string{"dev", "security"}}}, []string{"apr_6a", "apr_6b", "apr_5", "apr_4", "apr_3", "apr_2", "apr_1"}},
		{"visible to nobody's group and no requester: nothing", gateway.ApprovalFilter{VisibleTo: &gateway.ApprovalVisibility{Principal: "zed"}}, []string{}},
		{"visible to an observer: all", gateway.ApprovalFilter{VisibleTo: &gateway.ApprovalVisibility{Principal: "zed", All: true}}, []string{"apr_6a", "apr_6b", "apr_5", "apr_4", "apr_3", "apr_2", "apr_1"}},
		{"visibility and a limit: the limit counts visible items", gateway.ApprovalFilter{Limit: 2, VisibleTo: &gateway.ApprovalVisibility{Principal: "alice"}}, []string{"apr_5", "apr_3"}},
		{"backend", gateway.ApprovalFilter{Backend: "files"}, []string{"apr_6a", "apr_6b", "apr_4", "apr_3"}},
		{"target", gateway.ApprovalFilter{Target: "file:///etc/hosts"}, []string{"apr_6a", "apr_6b"}},
		{"expires before: strictly before", gateway.ApprovalFilter{ExpiresBefore: t0.Add(64 * time.Minute)}, []string{"apr_3", "apr_2", "apr_1"}},
		{"limit takes the newest", gateway.ApprovalFilter{Limit: 2}, []string{"apr_6a", "apr_6b"}},
		{"a negative limit is no limit", gateway.ApprovalFilter{Principal: "carol", Limit: -1}, []string{"apr_4"}},
		{"filters combine with and", gateway.ApprovalFilter{Principal: "alice", Backend: "github", States: []gateway.ApprovalState{gateway.ApprovalPending}}, []string{"apr_1"}},
		{"call of selects the same call whatever its state", gateway.ApprovalFilter{CallOf: &binding}, []string{"apr_5", "apr_1"}},
		{"call of and a state: the earlier ambiguous items", gateway.ApprovalFilter{CallOf: &binding, States: []gateway.ApprovalState{gateway.ApprovalAmbiguous}}, []string{"apr_5"}},
		{"a value is compared exactly, not as a pattern", gateway.ApprovalFilter{Principal: "ali%"}, []string{}},
		{"a value is a parameter, not SQL", gateway.ApprovalFilter{Principal: "x' OR '1'='1"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Approvals(ctx, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), tt.want) {
				t.Errorf("got %v, want %v", ids(got), tt.want)
			}
		})
	}
}

func TestApprovalBindingFilter(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	s := db.Approvals()
	insert(t, s, item("apr_1", 0))
	if got, err := s.Approvals(ctx, gateway.ApprovalFilter{Binding: &binding}); err != nil || !slices.Equal(ids(got), []string{"apr_1"}) {
		t.Fatalf("the exact binding selects %v, %v", ids(got), err)
	}
	tests := []struct {
		name string
		edit func(b *gateway.ApprovalBinding)
		// sameCall: CallOf still selects it (the field is not part of
		// the call's key).
		sameCall bool
	}{
		{"another principal", func(b *gateway.ApprovalBinding) { b.Principal = "mallory" }, false},
		{"another backend", func(b *gateway.ApprovalBinding) { b.Backend = "gitlab" }, false},
		{"another method", func(b *gateway.ApprovalBinding) { b.Method = "prompts/get" }, false},
		{"another target", func(b *gateway.ApprovalBinding) { b.Target = "delete_repos" }, false},
		{"another definition hash", func(b *gateway.ApprovalBinding) { b.DefinitionHash = "sha256:def1" }, true},
		{"another arguments hash", func(b *gateway.ApprovalBinding) { b.ArgumentsHash = "sha256:arg1" }, false},
		{"another policy version", func(b *gateway.ApprovalBinding) { b.PolicyVersion = "v8" }, true},
		{"a field emptied", func(b *gateway.ApprovalBinding) { b.PolicyVersion = "" }, true},
		{"text moved from one field to the next", func(b *gateway.ApprovalBinding) { b.Backend, b.Method = "githubtools", "/call" }, false},
		{"text moved across two fields", func(b *gateway.ApprovalBinding) {
			b.DefinitionHash, b.ArgumentsHash = "sha256:def0sha256:arg0", ""
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name+" does not match", func(t *testing.T) {
			b := binding
			tt.edit(&b)
			got, err := s.Approvals(ctx, gateway.ApprovalFilter{Binding: &b})
			if err != nil || len(got) != 0 {
				t.Errorf("Binding selects %v, %v", ids(got), err)
			}
			got, err = s.Approvals(ctx, gateway.ApprovalFilter{CallOf: &b})
			if err != nil || (len(got) == 1) != tt.sameCall {
				t.Errorf("CallOf selects %v, %v; want the item: %v", ids(got), err, tt.sameCall)
			}
		})
	}
	if bindingKey(binding) == callKey(binding) {
		t.Error("the binding and call keys of a binding are equal")
	}
}

func TestCountApprovals(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	s := db.Approvals()
	if n, err := s.CountApprovals(ctx, ""); err != nil || len(n) != 0 {
		t.Fatalf("an empty store counts %v, %v", n, err)
	}
	states := []gateway.ApprovalState{gateway.ApprovalPending, gateway.ApprovalPending, gateway.ApprovalPending,
		gateway.ApprovalApproved, gateway.ApprovalDenied, gateway.ApprovalDenied, gateway.ApprovalAmbiguous}
	for i, st := range states {
		it := item(fmt.Sprintf("apr_%d", i), i)
		it.State = st
		if i%2 == 1 {
			it.Principal = "bob"
		}
		insert(t, s, it)
	}
	n, err := s.CountApprovals(ctx, "")
	want := map[gateway.ApprovalState]int{gateway.ApprovalPending: 3, gateway.ApprovalApproved: 1, gateway.ApprovalDenied: 2,
		gateway.ApprovalAmbiguous: 1}
	if err != nil || !reflect.DeepEqual(n, want) {
		t.Errorf("CountApprovals = %v, %v; want %v", n, err, want)
	}
	n, err = s.CountApprovals(ctx, "bob") // items 1, 3, 5
	want = map[gateway.ApprovalState]int{gateway.ApprovalPending: 1, gateway.ApprovalApproved: 1, gateway.ApprovalDenied: 1}
	if err != nil || !reflect.DeepEqual(n, want) {
		t.Errorf("CountApprovals(bob) = %v, %v; want %v", n, err, want)
	}
}

func TestApprovalsOnAClosedDatabase(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	s := db.Approvals()
	insert(t, s, item("apr_1", 0))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertApproval(ctx, item("apr_2", 1), 0); err == nil {
		t.Error("InsertApproval succeeded")
	}
	if _, err := s.UpdateApproval(ctx, "apr_1", func(*gateway.ApprovalItem) error {
		t.Error("fn was called")
		return nil
	}); err == nil || errors.Is(err, gateway.ErrApprovalNotFound) {
		t.Errorf("UpdateApproval = %v", err)
	}
	if _, err := s.Approval(ctx, "apr_1"); err == nil || errors.Is(err, gateway.ErrApprovalNotFound) {
		t.Errorf("Approval = %v", err)
	}
	if _, err := s.Approvals(ctx, gateway.ApprovalFilter{}); err == nil {
		t.Error("Approvals succeeded")
	}
	if _, _, err := s.ApprovalsSince(ctx, 0); err == nil {
		t.Error("ApprovalsSince succeeded")
	}
	if _, err := s.CountApprovals(ctx, ""); err == nil {
		t.Error("CountApprovals succeeded")
	}
}

func TestApprovalWriteWhenAnotherConnectionHoldsTheWriteLock(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	db := openDB(t, path, Options{BusyTimeout: 100 * time.Millisecond})
	s := db.Approvals()
	insert(t, s, item("apr_1", 0))
	other, err := rawDB(t, path).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	locked := func(err error) bool {
		return err != nil && (strings.Contains(err.Error(), "locked") || strings.Contains(err.Error(), "busy"))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.InsertApproval(ctx, item("apr_2", 1), 0); !locked(err) {
			t.Errorf("InsertApproval = %v, want a locked database", err)
		}
		called := false
		_, err := s.UpdateApproval(ctx, "apr_1", func(*gateway.ApprovalItem) error { called = true; return nil })
		if !locked(err) || called {
			t.Errorf("UpdateApproval = %v (fn called: %v), want a locked database", err, called)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a write under another connection's lock hangs past the busy timeout")
	}
	t.Run("reads go on meanwhile", func(t *testing.T) {
		if it := get(t, s, "apr_1"); it.Rev != 1 {
			t.Errorf("Rev %d", it.Rev)
		}
	})
	t.Run("once the lock is released writes work", func(t *testing.T) {
		if _, err := other.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		insert(t, s, item("apr_2", 1))
		if rev := currentRev(t, s); rev != 2 {
			t.Errorf("revision %d after the failed writes and one insert, want 2", rev)
		}
	})
}
