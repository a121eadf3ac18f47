package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// pendingItem stores a pending item for principal in the database at
// dbPath, as the gateway would, and returns its id.
func pendingItem(t *testing.T, dbPath, id, principal string) string {
	t.Helper()
	db, err := sqlite.Open(context.Background(), dbPath, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	it := &gateway.ApprovalItem{ID: id, State: gateway.ApprovalPending, Mode: gateway.ApprovalModeHold,
		ApprovalBinding: gateway.ApprovalBinding{Principal: principal, Backend: "demo", Method: "tools/call", Target: "delete_records",
			ArgumentsHash: gateway.ArgumentsHash([]byte(`{"customer_ids":["cus_1003"]}`)), PolicyVersion: "v1"},
		Arguments: `{"customer_ids":["cus_1003"]}`, Reason: "delete_records is destructive", Reviewers: "reviewers", Quorum: 1,
		Created: now, Expires: now.Add(time.Hour), Updated: now, Session: "s1",
		Transitions: []gateway.ApprovalTransition{{To: gateway.ApprovalPending, Actor: principal, Time: now}}}
	if err := db.Approvals().InsertApproval(context.Background(), it, 0); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestApprovalsCommand(t *testing.T) {
	cfg, dbPath := usersConfig(t)
	if r := runMain(t, "rita's long password\n", "users", "add", "-c", cfg, "rita", "--groups", "reviewers", "--password-stdin"); r.code != 0 {
		t.Fatalf("users add: %d %s", r.code, r.stderr)
	}
	if r := runMain(t, "dev's long password!\n", "users", "add", "-c", cfg, "dev", "--groups", "dev", "--password-stdin"); r.code != 0 {
		t.Fatalf("users add: %d %s", r.code, r.stderr)
	}
	id := pendingItem(t, dbPath, "apr_cli1", "alice")

	t.Run("list shows the pending item", func(t *testing.T) {
		r := runMain(t, "", "approvals", "list", "-c", cfg)
		if r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "delete_records") {
			t.Errorf("list: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("show prints the call and its arguments", func(t *testing.T) {
		r := runMain(t, "", "approvals", "show", id, "-c", cfg)
		if r.code != 0 || !strings.Contains(r.stdout, `{"customer_ids":["cus_1003"]}`) || !strings.Contains(r.stdout, "state      pending") {
			t.Errorf("show: %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("deciding without --as is a usage error", func(t *testing.T) {
		if r := runMain(t, "", "approvals", "approve", id, "-c", cfg); r.code != 2 {
			t.Errorf("approve without --as: %d %s", r.code, r.stderr)
		}
	})
	t.Run("a wrong password decides nothing", func(t *testing.T) {
		r := runMain(t, "not rita's password\n", "approvals", "approve", id, "-c", cfg, "--as", "rita")
		if r.code != 1 || !strings.Contains(r.stderr, "wrong password") {
			t.Errorf("approve with a wrong password: %d %s", r.code, r.stderr)
		}
	})
	t.Run("no password decides nothing", func(t *testing.T) {
		if r := runMain(t, "", "approvals", "approve", id, "-c", cfg, "--as", "rita"); r.code != 1 {
			t.Errorf("approve with no password: %d %s", r.code, r.stderr)
		}
	})
	t.Run("an account outside the group is refused", func(t *testing.T) {
		r := runMain(t, "dev's long password!\n", "approvals", "approve", id, "-c", cfg, "--as", "dev")
		if r.code != 1 || !strings.Contains(r.stderr, "not in group") {
			t.Errorf("approve by a non-reviewer: %d %s", r.code, r.stderr)
		}
	})
	t.Run("the reviewer's password approves, and the audit log says who", func(t *testing.T) {
		r := runMain(t, "rita's long password\n", "approvals", "approve", id, "-c", cfg, "--as", "rita", "--comment", "ticket 4211", "--format", "json")
		if r.code != 0 {
			t.Fatalf("approve: %d %s", r.code, r.stderr)
		}
		var it gateway.ApprovalItem
		if err := json.Unmarshal([]byte(r.stdout), &it); err != nil || it.State != gateway.ApprovalApproved || it.Votes[0].Reviewer != "rita" {
			t.Fatalf("approved item: %v %+v", err, it)
		}
		db, err := sqlite.Open(context.Background(), dbPath, sqlite.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var rows []gateway.AuditRecord
		db.Audit().Scan(context.Background(), gateway.AuditFilter{Approval: id}, func(r *gateway.AuditRecord) error {
			rows = append(rows, *r)
			return nil
		})
		if len(rows) != 1 || rows[0].Principal != "rita" || rows[0].Method != "sallyport/approval.approve" || rows[0].Outcome != "approved" {
			t.Errorf("audit rows of %s: %+v", id, rows)
		}
		if res, err := audit.VerifyLog(context.Background(), db.Audit(), nil, 0); err != nil || !res.OK() {
			t.Errorf("verify: %v %+v", err, res)
		}
	})
	t.Run("a second decision on a decided item is refused", func(t *testing.T) {
		r := runMain(t, "rita's long password\n", "approvals", "deny", id, "-c", cfg, "--as", "rita")
		if r.code != 1 || !strings.Contains(r.stderr, "not pending") {
			t.Errorf("deny after approve: %d %s", r.code, r.stderr)
		}
	})
}
