package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// These tests hold the approval queue to its promises through the real
// binary, a real SQLite file, the TypeScript SDK client and the demo
// backend: a held call runs only after reviewers approve it, exactly once,
// with the backend's own answer; denied, expired and cancelled calls get
// their own errors and never reach the backend (the demo's store and
// outbox, and the test backend's notes file, say so); progress keeps a
// waiting client alive; retry mode survives a client's timeout and a
// restart, and never replays a used grant; a quorum needs distinct
// reviewers; a requester cannot approve their own call; a principal's
// pending items are capped; a changed tool definition voids an item; a
// crash during an approved delivery leaves the item ambiguous; the live
// feed reaches reviewers only; and the audit log verifies and tells each
// item's story.

// approvalsConfig is the approvals section; empty fields keep their
// defaults.
type approvalsConfig struct {
	Timeout                string `json:"timeout,omitempty"`
	Mode                   string `json:"mode,omitempty"`
	Reviewers              string `json:"reviewers,omitempty"`
	MaxPendingPerPrincipal int    `json:"max_pending_per_principal,omitempty"`
	AllowSelfApproval      bool   `json:"allow_self_approval,omitempty"`
	ProgressInterval       string `json:"progress_interval,omitempty"`
}

// JSON-RPC codes of the approval outcomes (gateway/errors.go), and the
// TypeScript SDK's own request timeout.
const (
	codeApprovalDenied      = -32010
	codeApprovalExpired     = -32011
	codeApprovalCancelled   = -32012
	codeApprovalUnavailable = -32013
	codeSDKTimeout          = -32001 // ErrorCode.RequestTimeout
)

// approvalItem is an item as GET /api/approvals/{id} returns it.
type approvalItem struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Mode      string `json:"mode"`
	Principal string `json:"principal"`
	Backend   string `json:"backend"`
	Method    string `json:"method"`
	Target    string `json:"target"`
	Arguments string `json:"arguments"`
	Reason    string `json:"reason"`
	Reviewers string `json:"reviewers"`
	Quorum    int    `json:"quorum"`
	Votes     []struct {
		Reviewer string `json:"reviewer"`
		Approve  bool   `json:"approve"`
		Comment  string `json:"comment"`
	} `json:"votes"`
	Claimed     *string `json:"claimed"`
	Outcome     string  `json:"outcome"`
	AuditSeq    int64   `json:"audit_seq"`
	Transitions []struct {
		From     string `json:"from"`
		To       string `json:"to"`
		Actor    string `json:"actor"`
		AuditSeq int64  `json:"audit_seq"`
	} `json:"transitions"`
}

func (it approvalItem) String() string {
	return fmt.Sprintf("%s %s %s/%s by %s %s (%s)", it.ID, it.State, it.Backend, it.Target, it.Principal, it.Arguments, it.Outcome)
}

// path is the item's states in order, as its transitions record them
// ("pending" twice for a vote short of the quorum).
func (it approvalItem) path() []string {
	var p []string
	for _, tr := range it.Transitions {
		p = append(p, tr.To)
	}
	return p
}

// ---------------------------------------------------------------------------
// The approvals API

func apiURL(g *gateway, path string) string { return strings.TrimSuffix(g.URL, "/mcp") + path }

// apiDo sends one API request with token and returns the status and body.
func apiDo(t testing.TB, g *gateway, token, method, path, body string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, apiURL(g, path), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, data
}

// listApprovals returns the items GET /api/approvals?QUERY shows token.
func listApprovals(t testing.TB, g *gateway, token, query string) []approvalItem {
	t.Helper()
	status, data := apiDo(t, g, token, http.MethodGet, "/api/approvals?"+query, "")
	if status != http.StatusOK {
		t.Fatalf("GET /api/approvals?%s: HTTP %d: %s", query, status, data)
	}
	var body struct {
		Items []approvalItem `json:"items"`
	}
	if err := json.Unmarshal(data, &body); err != nil {
		t.Fatalf("GET /api/approvals?%s: %v: %s", query, err, data)
	}
	return body.Items
}

// getApproval returns item id as token sees it.
func getApproval(t testing.TB, g *gateway, token, id string) approvalItem {
	t.Helper()
	status, data := apiDo(t, g, token, http.MethodGet, "/api/approvals/"+id, "")
	if status != http.StatusOK {
		t.Fatalf("GET /api/approvals/%s: HTTP %d: %s", id, status, data)
	}
	var it approvalItem
	if err := json.Unmarshal(data, &it); err != nil {
		t.Fatalf("GET /api/approvals/%s: %v: %s", id, err, data)
	}
	return it
}

// decideApproval posts an approval or a denial and returns the status and
// body.
func decideApproval(t testing.TB, g *gateway, token, id string, approve bool, comment string) (int, string) {
	t.Helper()
	verb := "deny"
	if approve {
		verb = "approve"
	}
	body, _ := json.Marshal(map[string]string{"comment": comment})
	status, data := apiDo(t, g, token, http.MethodPost, "/api/approvals/"+id+"/"+verb, string(body))
	return status, string(data)
}

// mustDecide is decideApproval that fails the test unless it succeeds.
func mustDecide(t testing.TB, g *gateway, token, id string, approve bool, comment string) approvalItem {
	t.Helper()
	status, body := decideApproval(t, g, token, id, approve, comment)
	if status != http.StatusOK {
		t.Fatalf("deciding %s (approve %v): HTTP %d: %s", id, approve, status, body)
	}
	var it approvalItem
	if err := json.Unmarshal([]byte(body), &it); err != nil {
		t.Fatalf("deciding %s: %v: %s", id, err, body)
	}
	return it
}

// wantRefusal checks that a decision was refused with status and a message
// containing msg.
func wantRefusal(t testing.TB, what string, status int, body string, wantStatus int, msg string) {
	t.Helper()
	if status != wantStatus || !strings.Contains(body, msg) {
		t.Errorf("%s: HTTP %d: %s; want %d saying %q", what, status, body, wantStatus, msg)
	}
}

// waitNewApproval waits until token sees a pending item of tool whose
// arguments contain marker, and returns it. Exactly one must match.
func waitNewApproval(t testing.TB, g *gateway, token, tool, marker string) approvalItem {
	t.Helper()
	return waitNewApprovalOf(t, g, token, "tool="+tool, marker)
}

// waitNewApprovalOf is waitNewApproval for the items the list query
// selects (besides state=pending).
func waitNewApprovalOf(t testing.TB, g *gateway, token, query, marker string) approvalItem {
	t.Helper()
	var found []approvalItem
	ok := waitFor(callWait, func() bool {
		found = nil
		for _, it := range listApprovals(t, g, token, "state=pending&"+query) {
			if strings.Contains(it.Arguments, marker) {
				found = append(found, it)
			}
		}
		return len(found) > 0
	})
	if !ok {
		t.Fatalf("no pending approval (%s) with %q within %v", query, marker, callWait)
	}
	if len(found) != 1 {
		t.Fatalf("%d pending approvals (%s) with %q, want 1: %v", len(found), query, marker, found)
	}
	return found[0]
}

// waitApprovalState waits until item id is in state.
func waitApprovalState(t testing.TB, g *gateway, token, id, state string) approvalItem {
	t.Helper()
	var it approvalItem
	if !waitFor(callWait, func() bool { it = getApproval(t, g, token, id); return it.State == state }) {
		t.Fatalf("approval %s is %s after %v, want %s: %v", id, it.State, callWait, state, it)
	}
	return it
}

// ---------------------------------------------------------------------------
// The TypeScript SDK client, run in the background

// tsRun is a tsclient.mjs process a test waits on later.
type tsRun struct {
	p    *proc
	args []string
}

// tsCallLine is one output line of tsclient.mjs with its error's data.
type tsCallLine struct {
	tsLine
	ErrorData json.RawMessage
}

// startTS starts tsclient.mjs with args.
func startTS(t testing.TB, args ...string) *tsRun {
	t.Helper()
	needNode(t)
	cmd := exec.Command(nodeBin, append([]string{tsclientJS()}, args...)...)
	cmd.Env = append(os.Environ(), envNodeModules+"="+nodeModules)
	return &tsRun{p: startProc(t, "tsclient", "", cmd), args: args}
}

// tsHTTP returns the arguments that run tsclient.mjs against g with token:
// options (such as --timeout) first, then actions.
func tsHTTP(g *gateway, token string, rest ...string) []string {
	return append([]string{"--http", g.URL, "--token", token}, rest...)
}

// callArgs returns the action that calls tool with args.
func callArgs(t testing.TB, tool string, args any) []string {
	return []string{"call", tool, mustJSON(t, args)}
}

// wait waits for the client to exit and returns its action lines (the
// connect line left out).
func (r *tsRun) wait(t testing.TB) []tsCallLine {
	t.Helper()
	select {
	case <-r.p.done:
	case <-time.After(2 * callWait):
		t.Fatalf("tsclient %v still running after %v", r.args, 2*callWait)
	}
	if r.p.err != nil {
		t.Fatalf("tsclient %v: %v\nstdout:\n%s\nstderr:\n%s", r.args, r.p.err, r.p.stdout.String(), r.p.stderr.tail(16<<10))
	}
	var lines []tsCallLine
	sc := bufio.NewScanner(strings.NewReader(r.p.stdout.String()))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var l tsCallLine
		var e struct {
			Error *struct {
				Data json.RawMessage `json:"data"`
			} `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &l.tsLine) != nil || json.Unmarshal(sc.Bytes(), &e) != nil {
			t.Fatalf("tsclient printed a line that is not JSON: %q", sc.Text())
		}
		if e.Error != nil {
			l.ErrorData = e.Error.Data
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 || lines[0].Action != "connect" || !lines[0].OK {
		t.Fatalf("tsclient %v: no successful connect line\nstdout:\n%s\nstderr:\n%s", r.args, r.p.stdout.String(), r.p.stderr.tail(16<<10))
	}
	return lines[1:]
}

// running reports whether the client has not exited yet.
func (r *tsRun) running() bool { return !r.p.exited() }

// tsCall runs one call to completion and returns its line.
func tsCall(t testing.TB, g *gateway, token, tool string, args any, opts ...string) tsCallLine {
	t.Helper()
	return startTS(t, tsHTTP(g, token, append(opts, callArgs(t, tool, args)...)...)...).wait(t)[0]
}

// wantCallError checks that l is a failed call with code whose message
// contains each of msgs.
func wantCallError(t testing.TB, what string, l tsCallLine, code int, msgs ...string) {
	t.Helper()
	if l.OK || l.Error == nil || l.Error.Code == nil || *l.Error.Code != code {
		t.Errorf("%s: %+v (error %+v); want error %d", what, l.tsLine, l.Error, code)
		return
	}
	for _, m := range msgs {
		if !strings.Contains(l.Error.Message, m) {
			t.Errorf("%s: error %d %q does not say %q", what, code, l.Error.Message, m)
		}
	}
}

// wantCallOK checks that l is a successful call without isError and
// returns its text.
func wantCallOK(t testing.TB, what string, l tsCallLine) string {
	t.Helper()
	if !l.OK {
		t.Fatalf("%s: the call failed: %+v", what, l.Error)
	}
	text, isError := tsText(t, l.tsLine)
	if isError {
		t.Fatalf("%s: the result is an error: %s", what, text)
	}
	return text
}

// ---------------------------------------------------------------------------
// The live feed

// feedEvent is one message of /api/approvals/ws.
type feedEvent struct {
	Type  string         `json:"type"`
	Item  *approvalItem  `json:"item"`
	Items []approvalItem `json:"items"`
}

// dialFeed opens the live feed as token, with an Origin header when origin
// is not empty.
func dialFeed(g *gateway, token, origin string) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	if origin != "" {
		h.Set("Origin", origin)
	}
	d := websocket.Dialer{HandshakeTimeout: callWait}
	return d.Dial("ws"+strings.TrimPrefix(apiURL(g, "/api/approvals/ws"), "http"), h)
}

// mustDialFeed opens the live feed as token and returns it with its
// snapshot.
func mustDialFeed(t testing.TB, g *gateway, token string) (*websocket.Conn, []approvalItem) {
	t.Helper()
	conn, resp, err := dialFeed(g, token, "")
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("live feed: %v (HTTP %d)", err, status)
	}
	t.Cleanup(func() { conn.Close() })
	ev := nextEvent(t, conn)
	if ev.Type != "snapshot" {
		t.Fatalf("the feed's first message is %q, want a snapshot", ev.Type)
	}
	return conn, ev.Items
}

// nextEvent reads the feed's next message.
func nextEvent(t testing.TB, conn *websocket.Conn) feedEvent {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(callWait))
	var ev feedEvent
	if err := conn.ReadJSON(&ev); err != nil {
		t.Fatalf("live feed: %v", err)
	}
	return ev
}

// nextItemEvent reads the feed until an item event and returns its item.
func nextItemEvent(t testing.TB, conn *websocket.Conn) approvalItem {
	t.Helper()
	for {
		ev := nextEvent(t, conn)
		if ev.Type == "item" && ev.Item != nil {
			return *ev.Item
		}
		if ev.Type != "item" {
			t.Fatalf("live feed: unexpected %q message after the snapshot", ev.Type)
		}
	}
}

// ---------------------------------------------------------------------------
// The audit trail of an item

// approvalRows exports the audit rows of item id.
func approvalRows(t testing.TB, g *gateway, id string) []auditRow {
	t.Helper()
	rows := exportRows(t, "-c", g.cfgPath, "--approval", id)
	for _, r := range rows {
		if r.Approval != id {
			t.Errorf("export --approval %s returned row %s of approval %q", id, r, r.Approval)
		}
	}
	return rows
}

// describeRows lists rows one a line, for failure messages.
func describeRows(rows []auditRow) string {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "  %s principal=%s decision=%s error=%q\n", r, r.Principal, r.Decision, r.Error)
	}
	return b.String()
}

// checkDeliveredTrail checks that rows tell the story of a call held
// (held times, by principal: each attempt of a retry-mode call has its own
// held row, and each attempt the client gave up on a cancelled result),
// approved by approvers, delivered once and answered, in that order.
func checkDeliveredTrail(t testing.TB, rows []auditRow, principal string, held int, approvers ...string) {
	t.Helper()
	var heldRows, abandoned, delivered, results, executed, approved []auditRow
	for _, r := range rows {
		switch {
		case r.Kind == "request" && r.Method == "tools/call" && r.Outcome == "held" && r.Principal == principal:
			heldRows = append(heldRows, r)
		case r.Kind == "request" && r.Method == "tools/call" && r.Outcome == "":
			delivered = append(delivered, r)
		case r.Kind == "result" && r.Method == "tools/call" && r.Outcome == "ok":
			results = append(results, r)
		case r.Kind == "result" && r.Method == "tools/call" && r.Outcome == "cancelled":
			abandoned = append(abandoned, r)
		case r.Kind == "approval" && r.Method == "sallyport/approval.executed" && r.Outcome == "executed":
			executed = append(executed, r)
		case r.Kind == "approval" && r.Method == "sallyport/approval.approve":
			approved = append(approved, r)
		}
	}
	if len(heldRows) != held || len(abandoned) != held-1 || len(delivered) != 1 || len(results) != 1 || len(executed) != 1 || len(approved) != len(approvers) {
		t.Errorf("the item's rows: %d held requests (want %d), %d cancelled attempts (want %d), %d delivered calls, %d results, "+
			"%d executed transitions (want 1 each), %d approvals (want %d):\n%s",
			len(heldRows), held, len(abandoned), held-1, len(delivered), len(results), len(executed), len(approved), len(approvers), describeRows(rows))
		return
	}
	for i, a := range approvers {
		if approved[i].Principal != a || approved[i].Ref != heldRows[0].Seq {
			t.Errorf("approval row %s is by %s, refers to row %d; want by %s, referring to the first held row %d",
				approved[i], approved[i].Principal, approved[i].Ref, a, heldRows[0].Seq)
		}
	}
	last := approved[len(approved)-1]
	if d, r := delivered[0], results[0]; !(heldRows[0].Seq < last.Seq && last.Seq < d.Seq && d.Seq < r.Seq && r.Ref == d.Seq) {
		t.Errorf("the rows are out of order: held %d, approved %d, delivered %d, result %d (referring to %d):\n%s",
			heldRows[0].Seq, last.Seq, d.Seq, r.Seq, r.Ref, describeRows(rows))
	}
}

// waitAbandoned waits until the gateway has recorded n attempts of item id
// that their clients gave up on (their cancelled results).
func waitAbandoned(t testing.TB, g *gateway, id string, n int) {
	t.Helper()
	var rows []auditRow
	if !waitFor(callWait, func() bool {
		rows = approvalRows(t, g, id)
		got := 0
		for _, r := range rows {
			if r.Kind == "result" && r.Outcome == "cancelled" {
				got++
			}
		}
		return got == n
	}) {
		t.Fatalf("the gateway did not record %d abandoned attempts of %s:\n%s", n, id, describeRows(rows))
	}
}

// ---------------------------------------------------------------------------
// The demo backend's evidence

// demoCustomerExists looks cus up through the gateway (the demo backend is
// shared, so any session sees its store) and reports whether it is there.
func demoCustomerExists(t testing.TB, g *gateway, token, id string) bool {
	t.Helper()
	l := tsCall(t, g, token, "demo__lookup_customer", map[string]any{"customer_id": id})
	if !l.OK {
		t.Fatalf("lookup_customer %s: %+v", id, l.Error)
	}
	text, isError := tsText(t, l.tsLine)
	if isError {
		if !strings.Contains(text, "no customer with id") {
			t.Fatalf("lookup_customer %s: unexpected error result %q", id, text)
		}
		return false
	}
	if !strings.Contains(text, id) {
		t.Fatalf("lookup_customer %s: the record does not name it: %s", id, text)
	}
	return true
}

// deleteArgs are delete_records' arguments for one customer.
func deleteArgs(id string) map[string]any { return map[string]any{"customer_ids": []string{id}} }

// emailArgs are send_email's arguments with subject.
func emailArgs(subject string) map[string]any {
	return map[string]any{"to": []string{"ana.ruiz@example.com"}, "subject": subject, "body": "approvals e2e"}
}

// countSubject counts the outbox's messages with subject.
func countSubject(t testing.TB, outbox, subject string) int {
	t.Helper()
	n := 0
	for _, s := range outboxSubjects(t, outbox) {
		if s == subject {
			n++
		}
	}
	return n
}

// notes returns the lines of the test backend's notes file.
func notes(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// ---------------------------------------------------------------------------
// Hold mode under the default policy

// TestApprovalsHoldMode runs the default policy, which holds the tools the
// configuration marks destructive for group "reviewers" in hold mode: the
// demo's delete_records and the test backend's mutable.
func TestApprovalsHoldMode(t *testing.T) {
	t.Parallel()
	needNode(t)
	demo := demoStdio("demo", t.TempDir(), "shared")
	demo.Args = append(demo.Args, "--outbox", filepath.Join(t.TempDir(), "outbox.jsonl"))
	demo.DestructiveTools = []string{"delete_records"}
	notesFile := filepath.Join(t.TempDir(), "notes.txt")
	tb := testBackendStdio("tb", buildTestBackend(t), "shared", "-mutable", notesFile)
	tb.DestructiveTools = []string{"mutable"}
	cfg := baseConfig(demo, tb)
	cfg.Approvals = &approvalsConfig{ProgressInterval: "1s", MaxPendingPerPrincipal: 1}
	g := newGateway(t, cfg)
	alice, carol := g.token("alice", "dev"), g.token("carol", "dev")
	rita, ray := g.token("rita", "reviewers", "dev"), g.token("ray", "reviewers")
	g.serve()

	var approvedID string
	t.Run("an approved call completes with the backend's own result and the item ends executed", func(t *testing.T) {
		// The same call straight to a fresh demo backend: the answer to
		// expect, byte for byte once canonical.
		direct := runTSClient(t, nil, "--stdio", sallyportBin, "demo-server", "--sandbox", t.TempDir(),
			"--outbox", filepath.Join(t.TempDir(), "outbox.jsonl"), "--",
			"call", "delete_records", mustJSON(t, deleteArgs("cus_1001")))
		if len(direct) != 2 || !direct[1].OK {
			t.Fatalf("delete_records straight to the demo backend: %+v", direct)
		}

		run := startTS(t, tsHTTP(g, alice, callArgs(t, "demo__delete_records", deleteArgs("cus_1001"))...)...)
		it := waitNewApproval(t, g, rita, "delete_records", "cus_1001")
		approvedID = it.ID
		if it.Principal != "alice" || it.Backend != "demo" || it.Method != "tools/call" || it.Mode != "hold" ||
			it.Reviewers != "reviewers" || it.Quorum != 1 || it.Arguments != `{"customer_ids":["cus_1001"]}` {
			t.Errorf("the held item: %+v", it)
		}
		if !demoCustomerExists(t, g, carol, "cus_1001") {
			t.Fatalf("cus_1001 is gone while its deletion waits for approval")
		}
		mustDecide(t, g, ray, it.ID, true, "ticket OPS-1")
		l := run.wait(t)[0]
		wantCallOK(t, "the approved call", l)
		if got, want := canonicalJSON(t, l.Result), canonicalJSON(t, direct[1].Result); got != want {
			t.Errorf("the approved call's result differs from the backend's own:\n got %s\nwant %s", got, want)
		}
		done := waitApprovalState(t, g, rita, it.ID, "executed")
		if !slices.Equal(done.path(), []string{"pending", "approved", "executed"}) || done.Claimed == nil {
			t.Errorf("the executed item's transitions %v (claimed %v); want pending, approved, executed", done.path(), done.Claimed)
		}
		if demoCustomerExists(t, g, carol, "cus_1001") {
			t.Errorf("cus_1001 is still there after its approved deletion")
		}
		// A grant is single-use: deciding again changes nothing.
		status, body := decideApproval(t, g, rita, it.ID, true, "again")
		wantRefusal(t, "approving an executed item", status, body, http.StatusConflict, "not pending")
	})

	t.Run("a denied call gets -32010 naming the reviewer and its comment, and the backend never runs", func(t *testing.T) {
		// The lookup runs in the same client after the denied call.
		run := startTS(t, tsHTTP(g, alice, append(callArgs(t, "demo__delete_records", deleteArgs("cus_1002")),
			callArgs(t, "demo__lookup_customer", map[string]any{"customer_id": "cus_1002"})...)...)...)
		it := waitNewApproval(t, g, rita, "delete_records", "cus_1002")
		mustDecide(t, g, rita, it.ID, false, "not during the audit")
		lines := run.wait(t)
		wantCallError(t, "the denied call", lines[0], codeApprovalDenied, "approval denied", "rita", "not during the audit", it.ID)
		var data struct {
			Approval, State, Reviewer, Comment string
		}
		if err := json.Unmarshal(lines[0].ErrorData, &data); err != nil || data.Approval != it.ID || data.State != "denied" ||
			data.Reviewer != "rita" || data.Comment != "not during the audit" {
			t.Errorf("the denial's data %s; want the approval, state denied, reviewer rita and the comment", lines[0].ErrorData)
		}
		if text := wantCallOK(t, "the lookup after the denial", lines[1]); !strings.Contains(text, "cus_1002") {
			t.Errorf("cus_1002 is gone after its deletion was denied: %s", text)
		}
		if got := getApproval(t, g, alice, it.ID); got.State != "denied" || !slices.Equal(got.path(), []string{"pending", "denied"}) {
			t.Errorf("the denied item: %v, transitions %v", got, got.path())
		}
	})

	t.Run("a client that gives up on a held call cancels its item, and the backend never runs", func(t *testing.T) {
		// The SDK's own default: progress does not reset the timeout.
		run := startTS(t, tsHTTP(g, alice, append([]string{"--timeout", "2", "--no-reset-timeout-on-progress"},
			callArgs(t, "demo__delete_records", deleteArgs("cus_1003"))...)...)...)
		it := waitNewApproval(t, g, rita, "delete_records", "cus_1003")
		wantCallError(t, "the call the client gave up on", run.wait(t)[0], codeSDKTimeout)
		got := waitApprovalState(t, g, rita, it.ID, "cancelled")
		if !strings.Contains(got.Outcome, "client went away") {
			t.Errorf("the cancelled item's outcome %q does not say the client went away", got.Outcome)
		}
		status, body := decideApproval(t, g, ray, it.ID, true, "too late")
		wantRefusal(t, "approving a cancelled item", status, body, http.StatusConflict, "cancelled, not pending")
		if !demoCustomerExists(t, g, carol, "cus_1003") {
			t.Errorf("cus_1003 is gone after its held deletion was cancelled")
		}
	})

	t.Run("progress keeps the TypeScript client waiting past its request timeout until the approval", func(t *testing.T) {
		// A 3 s timeout, reset by each progress notification (1 s apart);
		// the approval comes after twice the timeout.
		run := startTS(t, tsHTTP(g, alice, append([]string{"--timeout", "3"},
			callArgs(t, "demo__delete_records", deleteArgs("cus_1004"))...)...)...)
		it := waitNewApproval(t, g, rita, "delete_records", "cus_1004")
		time.Sleep(6 * time.Second)
		if !run.running() {
			t.Fatalf("the client stopped waiting before the approval: %+v", run.wait(t))
		}
		mustDecide(t, g, ray, it.ID, true, "")
		l := run.wait(t)[0]
		if text := wantCallOK(t, "the call approved after 6 s", l); !strings.Contains(text, "cus_1004") {
			t.Errorf("the result does not name cus_1004: %s", text)
		}
		// Surviving 6 s with a 3 s timeout takes at least two resets.
		var waiting int
		for _, raw := range l.Progress {
			var p struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(raw, &p) == nil && strings.Contains(p.Message, "waiting for approval "+it.ID) {
				waiting++
			}
		}
		if waiting < 2 {
			t.Errorf("%d progress notifications name the approval; want at least 2: %s", waiting, l.Progress)
		}
		waitApprovalState(t, g, rita, it.ID, "executed")
	})

	t.Run("a requester in the reviewers group cannot approve their own call", func(t *testing.T) {
		run := startTS(t, tsHTTP(g, rita, callArgs(t, "demo__delete_records", deleteArgs("cus_1005"))...)...)
		it := waitNewApproval(t, g, ray, "delete_records", "cus_1005")
		status, body := decideApproval(t, g, rita, it.ID, true, "mine, fine")
		wantRefusal(t, "rita approving her own call", status, body, http.StatusForbidden, "separation of duties")
		// Neither may someone outside the group (who cannot even see it).
		status, body = decideApproval(t, g, carol, it.ID, true, "")
		wantRefusal(t, "carol (dev) approving rita's call", status, body, http.StatusNotFound, "no such approval")
		if got := getApproval(t, g, ray, it.ID); got.State != "pending" || len(got.Votes) != 0 {
			t.Errorf("after the refused decisions the item is %v with votes %+v; want pending, no votes", got, got.Votes)
		}
		if !run.running() {
			t.Fatalf("the held call ended after a refused self-approval: %+v", run.wait(t))
		}
		mustDecide(t, g, ray, it.ID, true, "")
		wantCallOK(t, "rita's call approved by ray", run.wait(t)[0])
	})

	t.Run("a changed tool definition cancels the held call with -32012, and the tool never runs", func(t *testing.T) {
		run := startTS(t, tsHTTP(g, alice, callArgs(t, "tb__mutable", map[string]any{"note": "held-before-change"})...)...)
		it := waitNewApproval(t, g, rita, "mutable", "held-before-change")
		if text := wantCallOK(t, "redefine", tsCall(t, g, carol, "tb__redefine", map[string]any{})); !strings.Contains(text, "version 2") {
			t.Fatalf("redefine: %s", text)
		}
		wantCallError(t, "the call held under the old definition", run.wait(t)[0], codeApprovalCancelled,
			"approval cancelled", "tool definition changed", it.ID)
		got := getApproval(t, g, rita, it.ID)
		if got.State != "cancelled" {
			t.Errorf("the item is %v; want cancelled", got)
		}
		status, body := decideApproval(t, g, ray, it.ID, true, "")
		wantRefusal(t, "approving the voided item", status, body, http.StatusConflict, "not pending")
		if n := notes(t, notesFile); len(n) != 0 {
			t.Errorf("the test backend ran mutable: its notes are %q", n)
		}
		// The same call against the new definition is a new item, and runs
		// once approved: the notes file does record runs.
		run = startTS(t, tsHTTP(g, alice, callArgs(t, "tb__mutable", map[string]any{"note": "held-after-change"})...)...)
		again := waitNewApproval(t, g, rita, "mutable", "held-after-change")
		mustDecide(t, g, ray, again.ID, true, "")
		wantCallOK(t, "mutable under the new definition", run.wait(t)[0])
		if n := notes(t, notesFile); !slices.Equal(n, []string{"held-after-change"}) {
			t.Errorf("the test backend's notes are %q; want [held-after-change]", n)
		}
	})

	t.Run("the live feed pushes a new item to each connected reviewer and not to anyone else", func(t *testing.T) {
		ritaFeed, _ := mustDialFeed(t, g, rita)
		rayFeed, _ := mustDialFeed(t, g, ray)
		carolFeed, carolSnap := mustDialFeed(t, g, carol)
		if len(carolSnap) != 0 {
			t.Errorf("carol (dev) sees pending items of others in her snapshot: %v", carolSnap)
		}
		run := startTS(t, tsHTTP(g, alice, callArgs(t, "demo__delete_records", deleteArgs("cus_1006"))...)...)
		var id string
		for name, feed := range map[string]*websocket.Conn{"rita": ritaFeed, "ray": rayFeed} {
			it := nextItemEvent(t, feed)
			if it.State != "pending" || it.Principal != "alice" || !strings.Contains(it.Arguments, "cus_1006") {
				t.Errorf("%s's first pushed item: %v; want alice's pending deletion of cus_1006", name, it)
			}
			if id == "" {
				id = it.ID
			} else if it.ID != id {
				t.Errorf("the reviewers were pushed different items: %s and %s", id, it.ID)
			}
		}
		mustDecide(t, g, ray, id, false, "")
		wantCallError(t, "alice's denied call", run.wait(t)[0], codeApprovalDenied)
		// Events reach each feed in order: had alice's item reached carol,
		// it would come before her own.
		run = startTS(t, tsHTTP(g, carol, callArgs(t, "demo__delete_records", deleteArgs("cus_1007"))...)...)
		if it := nextItemEvent(t, carolFeed); it.Principal != "carol" || !strings.Contains(it.Arguments, "cus_1007") {
			t.Errorf("carol's feed was pushed %v; want only her own item", it)
		} else {
			mustDecide(t, g, rita, it.ID, false, "")
		}
		wantCallError(t, "carol's denied call", run.wait(t)[0], codeApprovalDenied)

		if _, resp, err := dialFeed(g, rita, "http://evil.example"); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Errorf("a feed from a foreign Origin: err %v, HTTP %d; want refused with 403", err, status)
		}
		if _, resp, err := dialFeed(g, "", ""); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a feed without a token: err %v; want refused with 401", err)
		}
		conn, _, err := dialFeed(g, rita, "http://localhost:6274")
		if err != nil {
			t.Errorf("a feed from the allow-listed Origin: %v", err)
		} else {
			conn.Close()
		}
	})

	t.Run("past max_pending_per_principal a call that needs approval gets -32013, and the backend never runs", func(t *testing.T) {
		run := startTS(t, tsHTTP(g, alice, callArgs(t, "demo__delete_records", deleteArgs("cus_1008"))...)...)
		it := waitNewApproval(t, g, rita, "delete_records", "cus_1008")
		wantCallError(t, "alice's second held call", tsCall(t, g, alice, "demo__delete_records", deleteArgs("cus_1009")),
			codeApprovalUnavailable, "alice already has 1 calls waiting for approval")
		if items := listApprovals(t, g, rita, "state=pending&tool=delete_records"); len(items) != 1 || items[0].ID != it.ID {
			t.Errorf("pending items after the refusal: %v; want only %s", items, it.ID)
		}
		if !demoCustomerExists(t, g, carol, "cus_1009") {
			t.Errorf("cus_1009 is gone after its deletion was refused")
		}
		mustDecide(t, g, ray, it.ID, false, "")
		wantCallError(t, "alice's first held call", run.wait(t)[0], codeApprovalDenied)
	})

	t.Run("reviewers and the requester see an item; other principals do not", func(t *testing.T) {
		if items := listApprovals(t, g, carol, "state=executed"); slices.ContainsFunc(items, func(it approvalItem) bool { return it.ID == approvedID }) {
			t.Errorf("carol (dev) lists alice's item %s", approvedID)
		}
		if status, _ := apiDo(t, g, carol, http.MethodGet, "/api/approvals/"+approvedID, ""); status != http.StatusNotFound {
			t.Errorf("carol (dev) reading alice's item: HTTP %d; want 404", status)
		}
		getApproval(t, g, alice, approvedID)
		getApproval(t, g, ray, approvedID)
	})

	g.proc.stop(t)
	t.Run("the audit log verifies, and the export of an item holds its held request, transitions, delivered call and result", func(t *testing.T) {
		if approvedID == "" {
			t.Skip("no approved item")
		}
		verifyOK(t, "-c", g.cfgPath)
		rows := approvalRows(t, g, approvedID)
		checkDeliveredTrail(t, rows, "alice", 1, "ray")
		if t.Failed() {
			return
		}
		t.Logf("export --approval %s:\n%s", approvedID, describeRows(rows))
	})
}

// ---------------------------------------------------------------------------
// Quorum, expiry and retry mode under a policy of their own

// approvalsPolicy holds every send_email for group "reviewers"; its
// subject picks how.
const approvalsPolicy = `package sallyport

subject := object.get(input.arguments, "subject", "")

approval_request := {"reason": "two reviewers must agree", "quorum": 2} if {
	startswith(subject, "quorum:")
} else := {"reason": "a client may come back for it", "mode": "retry"} if {
	startswith(subject, "retry:")
} else := {"reason": "nobody will decide in time", "timeout": "3s"} if {
	startswith(subject, "expire:")
} else := {"reason": "every email needs a reviewer"}

decision := {"allow": true, "rules": ["e2e/email-needs-approval"], "require_approval": approval_request} if {
	input.kind == "request"
	input.method == "tools/call"
	input.tool.backend_name == "send_email"
} else := {"allow": true, "rules": ["e2e/allow"]}
`

func TestApprovalsQuorumExpiryRetry(t *testing.T) {
	t.Parallel()
	needNode(t)
	outbox := filepath.Join(t.TempDir(), "outbox.jsonl")
	demo := demoStdio("demo", t.TempDir(), "shared")
	demo.Args = append(demo.Args, "--outbox", outbox)
	policyDir := filepath.Join(t.TempDir(), "policy")
	writePolicy(t, policyDir, "approvals.rego", approvalsPolicy)
	cfg := baseConfig(demo)
	cfg.Policy = &policyConfig{Paths: []string{policyDir}, Timeout: e2ePolicyTimeout}
	cfg.Approvals = &approvalsConfig{ProgressInterval: "1s"}
	g := newGateway(t, cfg)
	alice, carol := g.token("alice", "dev"), g.token("carol", "dev")
	rita, ray := g.token("rita", "reviewers"), g.token("ray", "reviewers")
	g.serve()

	t.Run("an expired call gets -32011 saying nobody decided, never a denial, and the email is never sent", func(t *testing.T) {
		const subject = "expire: nobody looks"
		run := startTS(t, tsHTTP(g, alice, callArgs(t, "demo__send_email", emailArgs(subject))...)...)
		it := waitNewApproval(t, g, rita, "send_email", subject)
		l := run.wait(t)[0]
		wantCallError(t, "the expired call", l, codeApprovalExpired, "no reviewer decided within 3s", it.ID)
		if l.Error != nil && strings.Contains(strings.ToLower(l.Error.Message), "denied") {
			t.Errorf("the expiry says %q: an expiry is not a denial", l.Error.Message)
		}
		if strings.Contains(strings.ToLower(string(l.ErrorData)), "denied") || !strings.Contains(string(l.ErrorData), `"expired"`) {
			t.Errorf("the expiry's data %s; want state expired and no denial", l.ErrorData)
		}
		got := getApproval(t, g, rita, it.ID)
		if got.State != "expired" || !strings.Contains(got.Outcome, "no reviewer decided within") {
			t.Errorf("the expired item: %v", got)
		}
		status, body := decideApproval(t, g, ray, it.ID, true, "late")
		wantRefusal(t, "approving an expired item", status, body, http.StatusGone, "expired")
		if n := countSubject(t, outbox, subject); n != 0 {
			t.Errorf("the expired email is in the outbox %d times", n)
		}
	})

	t.Run("with quorum 2 one approval leaves the call waiting and a second reviewer's delivers it", func(t *testing.T) {
		const subject = "quorum: wire transfer"
		run := startTS(t, tsHTTP(g, alice, callArgs(t, "demo__send_email", emailArgs(subject))...)...)
		it := waitNewApproval(t, g, rita, "send_email", subject)
		if it.Quorum != 2 {
			t.Errorf("the item's quorum is %d, want 2", it.Quorum)
		}
		after := mustDecide(t, g, rita, it.ID, true, "one")
		if after.State != "pending" || len(after.Votes) != 1 {
			t.Errorf("after one of two approvals the item is %v with %d votes; want pending with 1", after, len(after.Votes))
		}
		status, body := decideApproval(t, g, rita, it.ID, true, "one again")
		wantRefusal(t, "rita approving twice", status, body, http.StatusConflict, "already decided")
		if n := countSubject(t, outbox, subject); n != 0 || !run.running() {
			t.Fatalf("after one of two approvals: the email is in the outbox %d times, client running %v", n, run.running())
		}
		mustDecide(t, g, ray, it.ID, true, "two")
		wantCallOK(t, "the call after the second approval", run.wait(t)[0])
		if n := countSubject(t, outbox, subject); n != 1 {
			t.Errorf("the email is in the outbox %d times, want once", n)
		}
		got := waitApprovalState(t, g, rita, it.ID, "executed")
		if !slices.Equal(got.path(), []string{"pending", "pending", "approved", "executed"}) {
			t.Errorf("the transitions %v; want pending, the first vote, approved, executed", got.path())
		}
	})

	// The client of retry mode gives up after 2 s: progress does not
	// reset its timeout.
	giveUp := []string{"--timeout", "2", "--no-reset-timeout-on-progress"}
	t.Run("in retry mode the identical retry after the approval is delivered once, and a third call needs a new approval", func(t *testing.T) {
		const subject = "retry: quarterly numbers"
		first := startTS(t, tsHTTP(g, alice, append(giveUp, callArgs(t, "demo__send_email", emailArgs(subject))...)...)...)
		it := waitNewApproval(t, g, rita, "send_email", subject)
		if it.Mode != "retry" {
			t.Errorf("the item's mode is %q, want retry", it.Mode)
		}
		wantCallError(t, "the first call", first.wait(t)[0], codeSDKTimeout)
		waitAbandoned(t, g, it.ID, 1)
		if got := getApproval(t, g, rita, it.ID); got.State != "pending" {
			t.Fatalf("after the client gave up the item is %v; want it still pending", got)
		}
		// The same call by another principal is not the same call: it
		// waits on an item of its own.
		other := startTS(t, tsHTTP(g, carol, append(giveUp, callArgs(t, "demo__send_email", emailArgs(subject))...)...)...)
		carols := waitNewApprovalOf(t, g, rita, "tool=send_email&principal=carol", subject)
		wantCallError(t, "carol's identical call", other.wait(t)[0], codeSDKTimeout)

		mustDecide(t, g, ray, it.ID, true, "")
		if n := countSubject(t, outbox, subject); n != 0 {
			t.Fatalf("the approved email was sent %d times before the client came back for it", n)
		}
		// carol's retry does not ride on alice's grant.
		wantCallError(t, "carol's retry", tsCall(t, g, carol, "demo__send_email", emailArgs(subject), giveUp...), codeSDKTimeout)
		if n := countSubject(t, outbox, subject); n != 0 {
			t.Fatalf("carol's retry was delivered under alice's approval")
		}
		wantCallOK(t, "the identical retry", tsCall(t, g, alice, "demo__send_email", emailArgs(subject)))
		if n := countSubject(t, outbox, subject); n != 1 {
			t.Errorf("after the retry the email is in the outbox %d times, want once", n)
		}
		if got := getApproval(t, g, rita, carols.ID); got.State != "pending" {
			t.Errorf("carol's item after alice's delivery: %v; want still pending", got)
		}
		mustDecide(t, g, rita, carols.ID, false, "")
		done := waitApprovalState(t, g, rita, it.ID, "executed")
		if !slices.Equal(done.path(), []string{"pending", "approved", "executed"}) {
			t.Errorf("the transitions %v; want pending, approved, executed", done.path())
		}

		// The grant is used up: a third identical call is held anew.
		third := startTS(t, tsHTTP(g, alice, append(giveUp, callArgs(t, "demo__send_email", emailArgs(subject))...)...)...)
		again := waitNewApproval(t, g, rita, "send_email", subject)
		if again.ID == it.ID {
			t.Fatalf("the third call waits on the used item %s", it.ID)
		}
		wantCallError(t, "the third call", third.wait(t)[0], codeSDKTimeout)
		if n := countSubject(t, outbox, subject); n != 1 {
			t.Errorf("after the third call the email is in the outbox %d times, want once: the approval was replayed", n)
		}
		mustDecide(t, g, rita, again.ID, false, "once is enough")

		g.proc.stop(t)
		verifyOK(t, "-c", g.cfgPath)
		checkDeliveredTrail(t, approvalRows(t, g, it.ID), "alice", 2, "ray")
		g.serve()
	})

	t.Run("an item pending across a restart is still pending, and an identical retry attaches to it and completes after approval", func(t *testing.T) {
		const subject = "retry: across a restart"
		first := startTS(t, tsHTTP(g, alice, append(giveUp, callArgs(t, "demo__send_email", emailArgs(subject))...)...)...)
		it := waitNewApproval(t, g, rita, "send_email", subject)
		wantCallError(t, "the call before the restart", first.wait(t)[0], codeSDKTimeout)
		waitAbandoned(t, g, it.ID, 1)

		g.proc.stop(t)
		g.serve()
		if got := getApproval(t, g, rita, it.ID); got.State != "pending" {
			t.Fatalf("after the restart the item is %v; want pending", got)
		}
		if items := listApprovals(t, g, alice, "state=pending&tool=send_email"); !slices.ContainsFunc(items, func(x approvalItem) bool { return x.ID == it.ID }) {
			t.Errorf("after the restart alice's pending list %v lacks %s", items, it.ID)
		}

		retry := startTS(t, tsHTTP(g, alice, callArgs(t, "demo__send_email", emailArgs(subject))...)...)
		// The retry has attached once its held row names the item.
		if !waitFor(callWait, func() bool {
			held := 0
			for _, r := range approvalRows(t, g, it.ID) {
				if r.Kind == "request" && r.Outcome == "held" {
					held++
				}
			}
			return held == 2
		}) {
			t.Fatalf("the retry did not attach to %s:\n%s", it.ID, describeRows(approvalRows(t, g, it.ID)))
		}
		if items := listApprovals(t, g, rita, "state=pending&tool=send_email"); len(items) != 1 || items[0].ID != it.ID {
			t.Errorf("pending items while the retry waits: %v; want only %s", items, it.ID)
		}
		mustDecide(t, g, ray, it.ID, true, "after the restart")
		wantCallOK(t, "the retry after the restart", retry.wait(t)[0])
		if n := countSubject(t, outbox, subject); n != 1 {
			t.Errorf("the email is in the outbox %d times, want once", n)
		}
		waitApprovalState(t, g, rita, it.ID, "executed")

		g.proc.stop(t)
		verifyOK(t, "-c", g.cfgPath)
		checkDeliveredTrail(t, approvalRows(t, g, it.ID), "alice", 2, "ray")
	})
}

// ---------------------------------------------------------------------------
// A crash during an approved delivery

// crashPolicy holds the demo's slow generate_report in retry mode, with a
// short expiry.
const crashPolicy = `package sallyport

decision := {"allow": true, "rules": ["e2e/report-needs-approval"], "require_approval": {
	"reason": "reports are held", "mode": "retry", "timeout": "60s",
}} if {
	input.kind == "request"
	input.method == "tools/call"
	input.tool.backend_name == "generate_report"
} else := {"allow": true, "rules": ["e2e/allow"]}
`

// TestApprovalCrashDuringDelivery kills the gateway while it delivers an
// approved call. Nobody knows whether that call took effect: once the
// gateway is back the item must say so (ambiguous: delivered, and no
// answer came), never stay approved, and an identical retry must not be
// delivered under it again; its new item names the ambiguous one, so that
// the reviewer knows the effect may have happened already.
func TestApprovalCrashDuringDelivery(t *testing.T) {
	t.Parallel()
	needNode(t)
	policyDir := filepath.Join(t.TempDir(), "policy")
	writePolicy(t, policyDir, "crash.rego", crashPolicy)
	cfg := baseConfig(demoStdio("demo", t.TempDir(), "shared"))
	cfg.Policy = &policyConfig{Paths: []string{policyDir}, Timeout: e2ePolicyTimeout}
	cfg.Approvals = &approvalsConfig{ProgressInterval: "1s"}
	g := newGateway(t, cfg)
	alice, rita := g.token("alice", "dev"), g.token("rita", "reviewers")
	g.serve()

	report := map[string]any{"seconds": 30, "steps": 30}
	startTS(t, tsHTTP(g, alice, callArgs(t, "demo__generate_report", report)...)...)
	it := waitNewApproval(t, g, rita, "generate_report", `"seconds":30`)
	mustDecide(t, g, rita, it.ID, true, "")
	// Delivered: the grant is claimed and the call's own row is written
	// (no audit row, no forward).
	if !waitFor(callWait, func() bool {
		for _, r := range approvalRows(t, g, it.ID) {
			if r.Kind == "request" && r.Outcome == "" {
				return getApproval(t, g, rita, it.ID).Claimed != nil
			}
		}
		return false
	}) {
		t.Fatalf("the approved report was not delivered: %v", getApproval(t, g, rita, it.ID))
	}

	if err := syscall.Kill(g.pid(), syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 the gateway: %v", err)
	}
	select {
	case <-g.proc.done:
	case <-time.After(stopWait):
		t.Fatalf("the gateway (pid %d) is still running %v after SIGKILL", g.pid(), stopWait)
	}
	if !waitFor(leftoverWait, func() bool { return len(markedLive(g.marker)) == 0 }) {
		killAll(markedLive(g.marker))
		waitFor(leftoverWait, func() bool { return len(markedLive(g.marker)) == 0 })
	}
	g.serve()

	// The delivering process is gone: the restarted gateway settles the
	// item at start-up. (Its expiry is far enough away for a loaded
	// machine: the retry's item below must still be pending at the end.)
	var got approvalItem
	if !waitFor(20*time.Second, func() bool { got = getApproval(t, g, rita, it.ID); return got.State == "ambiguous" }) {
		t.Errorf("after the crash the item is %s (claimed %v, outcome %q); want ambiguous: a claimed grant must end executed, failed or ambiguous",
			got.State, got.Claimed != nil, got.Outcome)
	}

	// The identical retry is held anew, never delivered under the used grant.
	giveUp := []string{"--timeout", "2", "--no-reset-timeout-on-progress"}
	retry := startTS(t, tsHTTP(g, alice, append(giveUp, callArgs(t, "demo__generate_report", report)...)...)...)
	again := waitNewApproval(t, g, rita, "generate_report", `"seconds":30`)
	if again.ID == it.ID {
		t.Fatalf("the retry waits on the used item %s", it.ID)
	}
	wantCallError(t, "the retry after the crash", retry.wait(t)[0], codeSDKTimeout)
	delivered := 0
	for _, r := range approvalRows(t, g, it.ID) {
		if r.Kind == "request" && r.Outcome == "" {
			delivered++
		}
	}
	if delivered != 1 {
		t.Errorf("the crashed item has %d delivered calls, want 1", delivered)
	}
	var related struct {
		Related []string `json:"related"`
	}
	_, data := apiDo(t, g, rita, http.MethodGet, "/api/approvals/"+again.ID, "")
	if json.Unmarshal(data, &related) != nil || !slices.Contains(related.Related, it.ID) {
		t.Errorf("the retry's item names related items %v; want the ambiguous %s, whose effect may have happened", related.Related, it.ID)
	}
	mustDecide(t, g, rita, again.ID, false, "")
	g.proc.stop(t)
	verifyOK(t, "-c", g.cfgPath)
}
