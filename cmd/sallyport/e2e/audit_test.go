package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers "sqlite3": the tests open the gateway's database behind its back

	sallyport "github.com/sallyport/sallyport/gateway" // the domain types, to forge rows as an attacker could
)

// These tests hold the audit log to its promises from the outside: every
// message of a real session has its row, `sallyport audit verify` finds a
// row altered, deleted or inserted with the real sqlite3 CLI, what a client
// saw succeed survives kill -9, a message whose row cannot be written is not
// forwarded, and the export, the HTTP API, token revocation and retention
// pruning work against a running gateway.

// auditColumns are the export's columns, in order, as documented.
var auditColumns = []string{"seq", "time", "session", "transport", "protocol_version", "client_name", "client_version",
	"principal", "token_id", "direction", "kind", "method", "message_id", "ref", "backend", "target", "arguments",
	"decision", "reasons", "rules", "policy_version", "outcome", "error_code", "error", "latency_us", "bytes",
	"skipped", "prev_hash", "hash", "mac", "policy_input", "findings", "approval"}

// auditRow is one line of `sallyport audit export --format jsonl`.
type auditRow struct {
	Seq             int64    `json:"seq"`
	Time            string   `json:"time"`
	Session         string   `json:"session"`
	Transport       string   `json:"transport"`
	ProtocolVersion string   `json:"protocol_version"`
	ClientName      string   `json:"client_name"`
	ClientVersion   string   `json:"client_version"`
	Principal       string   `json:"principal"`
	TokenID         string   `json:"token_id"`
	Direction       string   `json:"direction"`
	Kind            string   `json:"kind"`
	Method          string   `json:"method"`
	MessageID       string   `json:"message_id"`
	Ref             int64    `json:"ref"`
	Backend         string   `json:"backend"`
	Target          string   `json:"target"`
	Arguments       string   `json:"arguments"`
	Decision        string   `json:"decision"`
	Reasons         []string `json:"reasons"`
	Rules           []string `json:"rules"`
	PolicyVersion   string   `json:"policy_version"`
	Outcome         string   `json:"outcome"`
	ErrorCode       int64    `json:"error_code"`
	Error           string   `json:"error"`
	LatencyMicros   int64    `json:"latency_us"`
	Bytes           int64    `json:"bytes"`
	Skipped         int64    `json:"skipped"`
	PrevHash        string   `json:"prev_hash"`
	Hash            string   `json:"hash"`
	MAC             string   `json:"mac"`
	PolicyInput     string   `json:"policy_input"`
	Findings        string   `json:"findings"`
	Approval        string   `json:"approval"`
}

func (r auditRow) String() string {
	return fmt.Sprintf("#%d %s %s %s id=%s ref=%d backend=%s target=%s outcome=%s", r.Seq, r.Direction, r.Kind, r.Method,
		r.MessageID, r.Ref, r.Backend, r.Target, r.Outcome)
}

// record returns the row as the gateway's domain type, to rehash it.
func (r auditRow) record(t testing.TB) *sallyport.AuditRecord {
	t.Helper()
	ts, err := time.Parse(sallyport.AuditTimeLayout, r.Time)
	if err != nil {
		t.Fatalf("row %d: time %q: %v", r.Seq, r.Time, err)
	}
	return &sallyport.AuditRecord{Seq: r.Seq, Time: ts, Session: r.Session, Transport: r.Transport,
		ProtocolVersion: r.ProtocolVersion, ClientName: r.ClientName, ClientVersion: r.ClientVersion,
		Principal: r.Principal, TokenID: r.TokenID, Direction: r.Direction, Kind: r.Kind, Method: r.Method,
		MessageID: r.MessageID, Ref: r.Ref, Backend: r.Backend, Target: r.Target, Arguments: r.Arguments,
		Decision: r.Decision, Reasons: r.Reasons, Rules: r.Rules, PolicyVersion: r.PolicyVersion, Outcome: r.Outcome,
		ErrorCode: r.ErrorCode, Error: r.Error, LatencyMicros: r.LatencyMicros, Bytes: r.Bytes, Skipped: r.Skipped,
		PrevHash: r.PrevHash, Hash: r.Hash, MAC: r.MAC, PolicyInput: r.PolicyInput, Findings: r.Findings, Approval: r.Approval}
}

const (
	c2b = "client_to_backend"
	b2c = "backend_to_client"
)

// auditKey is a key for the audit checkpoints: at least 32 characters.
const auditKey = "e2e-audit-key-0123456789abcdef-0123456789"

// ---------------------------------------------------------------------------
// The sallyport CLI

// runSallyport runs the sallyport binary and returns its exit status and
// output; it fails the test only if the binary could not run or hung.
func runSallyport(t testing.TB, extraEnv []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, sallyportBin, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("sallyport %s: timed out\n%s", strings.Join(args, " "), errOut.String())
	case err == nil:
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errOut.String()
	default:
		t.Fatalf("sallyport %s: %v", strings.Join(args, " "), err)
	}
	return 0, out.String(), errOut.String()
}

// mustSallyport runs sallyport and fails the test unless it exits 0; it
// returns its standard output.
func mustSallyport(t testing.TB, args ...string) string {
	t.Helper()
	code, out, errOut := runSallyport(t, nil, args...)
	if code != 0 {
		t.Fatalf("sallyport %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// verifyOK runs `sallyport audit verify ARGS` and fails the test unless it
// reports an intact chain; it returns the report.
func verifyOK(t testing.TB, args ...string) string {
	t.Helper()
	code, out, errOut := runSallyport(t, nil, append([]string{"audit", "verify"}, args...)...)
	if code != 0 || !strings.HasPrefix(out, "OK ") {
		t.Fatalf("sallyport audit verify %s: exit %d, want 0 and OK\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// verifyFails runs `sallyport audit verify ARGS` and fails the test unless
// it exits 1 with a FAIL report that names row seq.
func verifyFails(t testing.TB, seq int64, extraEnv []string, args ...string) string {
	t.Helper()
	code, out, errOut := runSallyport(t, extraEnv, append([]string{"audit", "verify"}, args...)...)
	if code != 1 || !strings.HasPrefix(out, "FAIL ") {
		t.Fatalf("sallyport audit verify %s: exit %d, want 1 and FAIL\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errOut)
	}
	if !regexp.MustCompile(`\brow ` + strconv.FormatInt(seq, 10) + `\b`).MatchString(out) {
		t.Errorf("sallyport audit verify %s: the report does not name row %d:\n%s", strings.Join(args, " "), seq, out)
	}
	return out
}

// exportRows runs `sallyport audit export --format jsonl ARGS` and parses
// its output.
func exportRows(t testing.TB, args ...string) []auditRow {
	t.Helper()
	out := mustSallyport(t, append([]string{"audit", "export", "--format", "jsonl"}, args...)...)
	return parseAuditJSONL(t, []byte(out))
}

// parseAuditJSONL parses a JSONL export; every line must hold exactly the
// documented columns.
func parseAuditJSONL(t testing.TB, data []byte) []auditRow {
	t.Helper()
	var rows []auditRow
	for i, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(line, &keys); err != nil {
			t.Fatalf("export line %d is not a JSON object: %v\n%s", i+1, err, line)
		}
		if len(keys) != len(auditColumns) {
			t.Fatalf("export line %d has %d keys, want the %d columns %v:\n%s", i+1, len(keys), len(auditColumns), auditColumns, line)
		}
		for _, c := range auditColumns {
			if _, ok := keys[c]; !ok {
				t.Fatalf("export line %d has no %q:\n%s", i+1, c, line)
			}
		}
		var r auditRow
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("export line %d: %v\n%s", i+1, err, line)
		}
		rows = append(rows, r)
	}
	return rows
}

// dbPath is the gateway's database when the config leaves the default.
func (g *gateway) dbPath() string { return filepath.Join(g.dir, "sallyport.db") }

// tokenIDs runs `sallyport tokens list` and returns principal → token ids
// and revoked token ids, failing the test if the listing shows any of
// secrets.
func tokenIDs(t testing.TB, cfgPath string, secrets ...string) (ids map[string][]string, revoked map[string]bool) {
	t.Helper()
	out := mustSallyport(t, "tokens", "list", "-c", cfgPath)
	for _, s := range secrets {
		if strings.Contains(out, s) {
			t.Errorf("sallyport tokens list shows a token:\n%s", out)
		}
	}
	ids, revoked = map[string][]string{}, map[string]bool{}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "ID") {
		t.Fatalf("sallyport tokens list: no header line:\n%s", out)
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		// ID PRINCIPAL GROUPS CREATED [REVOKED]; GROUPS may be empty.
		if len(f) < 3 || !strings.HasPrefix(f[0], "tok_") {
			t.Fatalf("sallyport tokens list: unexpected line %q", l)
		}
		ids[f[1]] = append(ids[f[1]], f[0])
		if n := len(f); n >= 4 && looksLikeTime(f[n-1]) && looksLikeTime(f[n-2]) {
			revoked[f[0]] = true
		}
	}
	return ids, revoked
}

func looksLikeTime(s string) bool {
	_, err := time.Parse(time.RFC3339, s)
	return err == nil
}

// ---------------------------------------------------------------------------
// Raw calls

// mustRawCall sends tools/call on s and fails the test unless it succeeds
// without isError.
func mustRawCall(t testing.TB, s *rawSession, id int, tool string, args map[string]any) rpcMessage {
	t.Helper()
	r := s.call(t, id, tool, args)
	m, ok := r.response()
	if r.Status != http.StatusOK || !ok || m.Error != nil {
		t.Fatalf("tools/call %s (id %d): HTTP %d: %s", tool, id, r.Status, r.Body)
	}
	var res struct {
		IsError bool `json:"isError"`
	}
	if err := json.Unmarshal(m.Result, &res); err != nil || res.IsError {
		t.Fatalf("tools/call %s (id %d): not a successful result: %s", tool, id, m.Result)
	}
	return m
}

// postRaw is tryRaw with a client of its own, for use off the test's
// goroutine.
func postRaw(c *http.Client, s *rawSession, body []byte) (rawResponse, error) {
	req, err := http.NewRequest(http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return rawResponse{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Mcp-Session-Id", s.id)
	req.Header.Set("MCP-Protocol-Version", s.version)
	resp, err := c.Do(req)
	if err != nil {
		return rawResponse{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return rawResponse{}, err
	}
	return rawResponse{Status: resp.StatusCode, Header: resp.Header, Body: data, Messages: decodeMessages(resp.Header.Get("Content-Type"), data)}, nil
}

// copyDB copies a database with its -wal and -shm files into a new folder.
func copyDB(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	for _, suffix := range []string{"", "-wal", "-shm"} {
		data, err := os.ReadFile(src + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// ---------------------------------------------------------------------------
// 1. Every message of a real session

func TestAuditRecordsEveryMessageOfASession(t *testing.T) {
	t.Parallel()
	needNode(t)
	g := newGateway(t, baseConfig(everythingStdio("everything", "session")))
	token := g.token("alice", "dev")
	g.serve()

	const docURI = "demo://resource/static/document/architecture.md"
	lines := runTSClient(t, nil, "--http", g.URL, "--token", token,
		"list-tools", "ping", "list-resources", "read", docURI, "list-prompts",
		"get-prompt", "everything__args-prompt", `{"state":"Texas","city":"Austin"}`,
		"call", "everything__get-sum", `{"b":2,"a":1}`,
		"call", "everything__echo", `{"message":"audit me"}`,
		"call", "everything__trigger-long-running-operation", `{"steps":2,"duration":0.4}`)
	for _, l := range lines {
		if !l.OK {
			t.Fatalf("tsclient %s %s failed: %+v", l.Action, l.Tool, l.Error)
		}
	}
	progressSeen := len(lines[len(lines)-1].Progress)

	// The token, read raw from the files while the gateway runs (the WAL
	// holds the fresh rows) and again after it stopped and checkpointed.
	secretPart := strings.TrimPrefix(token, "spt_")
	noToken := func(when string) {
		t.Helper()
		for _, suffix := range []string{"", "-wal", "-shm"} {
			data, err := os.ReadFile(g.dbPath() + suffix)
			if errors.Is(err, os.ErrNotExist) && suffix != "" {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(data, []byte(token)) || bytes.Contains(data, []byte(secretPart)) {
				t.Errorf("%s: the bearer token is in %s", when, filepath.Base(g.dbPath()+suffix))
			}
		}
	}
	noToken("gateway running")
	g.proc.stop(t)
	noToken("gateway stopped")
	if strings.Contains(g.proc.stderr.String(), secretPart) {
		t.Errorf("the bearer token is in the gateway's log")
	}

	out := mustSallyport(t, "audit", "export", "-c", g.cfgPath, "--format", "jsonl")
	if strings.Contains(out, secretPart) {
		t.Errorf("the bearer token is in the export")
	}
	rows := parseAuditJSONL(t, []byte(out))
	if len(rows) == 0 {
		t.Fatal("the export has no rows")
	}
	dump := func() {
		t.Helper()
		if t.Failed() {
			var b strings.Builder
			for _, r := range rows {
				b.WriteString("  " + r.String() + "\n")
			}
			t.Logf("rows:\n%s", b.String())
		}
	}
	defer dump()

	ids, _ := tokenIDs(t, g.cfgPath, token)
	if len(ids["alice"]) != 1 {
		t.Fatalf("tokens list: alice has tokens %v, want one", ids["alice"])
	}
	tokenID := ids["alice"][0]

	session := rows[0].Session
	if session == "" {
		t.Errorf("row %d has no session", rows[0].Seq)
	}
	bySeq := map[int64]auditRow{}
	for i, r := range rows {
		bySeq[r.Seq] = r
		if r.Seq != int64(i+1) {
			t.Errorf("row %d is at position %d: want seq 1, 2, 3, ... without gaps", r.Seq, i+1)
		}
		if r.Session != session || r.Principal != "alice" || r.TokenID != tokenID || r.Transport != "http" {
			t.Errorf("row %s: session %q principal %q token_id %q transport %q; want %q, alice, %s, http",
				r, r.Session, r.Principal, r.TokenID, r.Transport, session, tokenID)
		}
		if r.Decision != "allow" {
			t.Errorf("row %s: decision %q, want allow", r, r.Decision)
		}
		if r.Hash == "" || r.PrevHash == "" {
			t.Errorf("row %s: no hash or prev_hash", r)
		}
		// The initialize request comes before the session knows its
		// client; its row may leave the name out, but must not get it wrong.
		lenient := r.Kind == "request" && r.Method == "initialize" && r.ClientName == ""
		if !lenient && r.ClientName != "sallyport-e2e-tsclient" {
			t.Errorf("row %s: client_name %q, want sallyport-e2e-tsclient", r, r.ClientName)
		}
	}

	// Each client request has its request row and exactly one result row
	// pointing back at it; every result row answers a request row.
	requests := map[string][]auditRow{} // by method
	for _, r := range rows {
		switch {
		case r.Direction == c2b && r.Kind == "request":
			requests[r.Method] = append(requests[r.Method], r)
			var results []auditRow
			for _, s := range rows {
				if s.Kind == "result" && s.Ref == r.Seq {
					results = append(results, s)
				}
			}
			if len(results) != 1 {
				t.Errorf("request row %s has %d result rows, want 1", r, len(results))
				continue
			}
			res := results[0]
			if res.Direction != b2c || res.Method != r.Method || res.MessageID != r.MessageID || res.Outcome != "ok" || res.Seq < r.Seq {
				t.Errorf("request row %s has result row %s; want backend_to_client, same method and id, outcome ok", r, res)
			}
			if res.Backend != r.Backend || res.Target != r.Target {
				t.Errorf("result row %s: backend/target %q/%q, its request's %q/%q", res, res.Backend, res.Target, r.Backend, r.Target)
			}
		case r.Kind == "result":
			if req, ok := bySeq[r.Ref]; !ok || req.Kind != "request" || req.Direction != c2b {
				t.Errorf("result row %s: ref %d is not a client request row", r, r.Ref)
			}
		}
	}
	var methods []string
	for m := range requests {
		methods = append(methods, m)
	}
	slices.Sort(methods)
	want := []string{"initialize", "ping", "prompts/get", "prompts/list", "resources/list", "resources/read", "tools/call", "tools/list"}
	if !slices.Equal(methods, want) {
		t.Errorf("client requests recorded: %v, want %v", methods, want)
	}
	for m, n := range map[string]int{"initialize": 1, "ping": 1, "prompts/get": 1, "resources/read": 1, "tools/call": 3} {
		if len(requests[m]) != n {
			t.Errorf("%d %s request rows, want %d", len(requests[m]), m, n)
		}
	}

	// Targets and canonical arguments (keys sorted, whatever order the
	// client sent them in).
	calls := map[string]auditRow{}
	for _, r := range requests["tools/call"] {
		calls[r.Target] = r
		if r.Backend != "everything" {
			t.Errorf("tools/call row %s: backend %q, want everything", r, r.Backend)
		}
	}
	for target, args := range map[string]string{
		"get-sum":                        `{"a":1,"b":2}`,
		"echo":                           `{"message":"audit me"}`,
		"trigger-long-running-operation": `{"duration":0.4,"steps":2}`,
	} {
		r, ok := calls[target]
		switch {
		case !ok:
			t.Errorf("no tools/call row with target %q (the tool name without its prefix)", target)
		case r.Arguments != args:
			t.Errorf("tools/call %s: arguments %s, want the canonical %s", target, r.Arguments, args)
		}
	}
	if p := requests["prompts/get"]; len(p) == 1 && (p[0].Backend != "everything" || p[0].Target != "args-prompt" || p[0].Arguments != `{"city":"Austin","state":"Texas"}`) {
		t.Errorf("prompts/get row %s: arguments %s; want backend everything, target args-prompt, arguments {\"city\":\"Austin\",\"state\":\"Texas\"}", p[0], p[0].Arguments)
	}
	if r := requests["resources/read"]; len(r) == 1 && (r[0].Backend != "everything" || r[0].Target != docURI) {
		t.Errorf("resources/read row %s: want backend everything and target %s", r[0], docURI)
	}

	// Notifications, both ways.
	var initialized, progress int
	longOp := calls["trigger-long-running-operation"]
	for _, r := range rows {
		if r.Kind != "notification" {
			continue
		}
		switch {
		case r.Method == "notifications/initialized" && r.Direction == c2b:
			initialized++
		case r.Method == "notifications/progress" && r.Direction == b2c:
			progress++
			if r.Ref != longOp.Seq {
				t.Errorf("progress row %s: ref %d, want the long operation's request row %d", r, r.Ref, longOp.Seq)
			}
		}
	}
	if initialized != 1 {
		t.Errorf("%d notifications/initialized rows, want 1", initialized)
	}
	if progress == 0 || progress < progressSeen {
		t.Errorf("%d notifications/progress rows; the client saw %d progress notifications", progress, progressSeen)
	}

	verifyOK(t, "-c", g.cfgPath)
}

// ---------------------------------------------------------------------------
// 2. Tampering is found

// tamperDB changes a copy of the database with SQL statements, through the
// sqlite3 CLI or database/sql.
type tamperDB func(t *testing.T, db string, stmts ...string)

func tamperCLI(t *testing.T, db string, stmts ...string) {
	t.Helper()
	cli, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Skip("SKIPPED: no sqlite3 CLI on PATH")
	}
	cmd := exec.Command(cli, db)
	cmd.Stdin = strings.NewReader(strings.Join(stmts, ";\n") + ";\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sqlite3 %s: %v\n%s", db, err, out)
	}
}

func tamperGo(t *testing.T, db string, stmts ...string) {
	t.Helper()
	h, err := sql.Open("sqlite3", "file:"+db)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, s := range stmts {
		if _, err := h.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestAuditVerifyFindsTampering(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(demoStdio("demo", t.TempDir(), "shared"))
	cfg.Audit = &auditConfig{Key: auditKey, CheckpointEvery: 4}
	g := newGateway(t, cfg)
	token := g.token("alice", "dev")
	g.serve()
	s := openRawSession(t, g.URL, token)
	for i, id := range []string{"cus_1001", "cus_1002", "cus_1003"} {
		mustRawCall(t, s, 2+i, "demo__lookup_customer", map[string]any{"customer_id": id})
		if i == 1 { // something else between the calls, for the filtered export below
			if r := doRaw(t, s.newRawRequest(t, []byte(`{"jsonrpc":"2.0","id":100,"method":"ping"}`))); r.rpcErr() != nil {
				t.Fatalf("ping: %s", r.Body)
			}
		}
	}
	// Cells a spreadsheet would take for a formula, and bare CRs, which
	// CSV cannot carry as they are: the exports must still verify. The
	// arguments are canonical JSON (a CR in them is escaped), but a
	// client's name is kept as it came.
	s.call(t, 5, "demo__lookup_customer", map[string]any{"email": "=HYPERLINK(\"x\")+1@example.com"})
	odd := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"=cmd|' /C calc'!A0\r\nx\ry\r","version":"@1\r"}}}`
	if r := doRaw(t, (&rawSession{url: g.URL, token: token}).newRawRequest(t, []byte(odd))); r.rpcErr() != nil || r.Status != http.StatusOK {
		t.Fatalf("initialize with an odd client name: HTTP %d: %s", r.Status, r.Body)
	}
	g.proc.stop(t)

	rows := exportRows(t, "-c", g.cfgPath)
	// The row to tamper with: the tools/call request for cus_1002, in the
	// middle of the chain.
	var k int64
	for _, r := range rows {
		if r.Method == "tools/call" && r.Kind == "request" && strings.Contains(r.Arguments, "cus_1002") {
			k = r.Seq
		}
	}
	if k == 0 || k >= rows[len(rows)-1].Seq {
		t.Fatalf("no tools/call request row for cus_1002 before the last row in %d rows", len(rows))
	}

	report := verifyOK(t, "-c", g.cfgPath)
	if !strings.Contains(report, "checkpoint MACs valid") {
		t.Errorf("verify with the key checked no checkpoint MAC:\n%s", report)
	}
	t.Run("verify with another key fails at the first checkpoint", func(t *testing.T) {
		verifyFails(t, 4, []string{"E2E_OTHER_AUDIT_KEY=" + strings.Repeat("x", 40)}, "-c", g.cfgPath, "--key-env", "E2E_OTHER_AUDIT_KEY")
	})

	ks := strconv.FormatInt(k, 10)
	lastSeq := rows[len(rows)-1].Seq
	cases := []struct {
		name  string
		row   int64 // the row the report must name
		stmts []string
	}{
		{"an updated row's arguments", k, []string{
			`UPDATE audit SET arguments = '{"customer_id":"cus_1009"}' WHERE seq = ` + ks,
		}},
		{"a deleted row", k, []string{
			`DELETE FROM audit WHERE seq = ` + ks,
		}},
		{"a row inserted in the middle", k, []string{
			// Make room at k, then put in a row that chains onto k-1.
			`UPDATE audit SET seq = -seq - 1 WHERE seq >= ` + ks,
			`UPDATE audit SET seq = -seq WHERE seq < 0`,
			`INSERT INTO audit (seq, ts, session, principal, direction, kind, method, backend, target, arguments, decision, prev_hash, hash)
			 SELECT ` + ks + `, ts + 1, session, principal, 'client_to_backend', 'request', 'tools/call', 'demo', 'send_email',
			 '{"to":["x@example.com"]}', 'allow', hash, hash FROM audit WHERE seq = ` + strconv.FormatInt(k-1, 10),
		}},
		{"a row appended after the last", lastSeq + 1, []string{
			`INSERT INTO audit (seq, ts, session, principal, direction, kind, method, decision, prev_hash, hash)
			 SELECT seq + 1, ts + 1, session, principal, 'client_to_backend', 'request', 'tools/list', 'allow', hash, prev_hash FROM audit WHERE seq = ` + strconv.FormatInt(lastSeq, 10),
		}},
	}
	for _, tool := range []struct {
		name   string
		tamper tamperDB
	}{{"sqlite3 CLI", tamperCLI}, {"database/sql", tamperGo}} {
		for _, c := range cases {
			t.Run("verify names "+c.name+" / "+tool.name, func(t *testing.T) {
				t.Parallel()
				db := copyDB(t, g.dbPath())
				verifyOK(t, "-c", g.cfgPath, "--db", db)
				tool.tamper(t, db, c.stmts...)
				verifyFails(t, c.row, nil, "-c", g.cfgPath, "--db", db)
			})
		}
	}

	// What a forger without the key can do: alter row k and rehash it and
	// every row after it. The checkpoint MACs cannot be redone; they can
	// be left as they are, or blanked.
	checkpoint := (k + 3) / 4 * 4 // the first row at or after k that carries a MAC
	if checkpoint > lastSeq {
		t.Fatalf("no checkpoint row at or after row %d (last row %d)", k, lastSeq)
	}
	forge := func(t *testing.T, blankMACs bool) string {
		t.Helper()
		db := copyDB(t, g.dbPath())
		h, err := sql.Open("sqlite3", "file:"+db)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		prev := ""
		for _, r := range rows {
			if r.Seq < k {
				continue
			}
			rec := r.record(t)
			if r.Seq == k {
				rec.Arguments = strings.Replace(rec.Arguments, "cus_1002", "cus_1009", 1)
			}
			if prev != "" {
				rec.PrevHash = prev
			}
			rec.Hash = rec.ComputeHash()
			prev = rec.Hash
			if blankMACs {
				rec.MAC = ""
			}
			if _, err := h.Exec("UPDATE audit SET arguments = ?, prev_hash = ?, hash = ?, mac = ? WHERE seq = ?",
				rec.Arguments, rec.PrevHash, rec.Hash, rec.MAC, rec.Seq); err != nil {
				t.Fatal(err)
			}
		}
		verifyOK(t, "--db", db) // without the key the forgery fits: the chain alone cannot tell
		return db
	}
	t.Run("a chain rewritten from a row on fails with the key at the next checkpoint", func(t *testing.T) {
		t.Parallel()
		verifyFails(t, checkpoint, nil, "-c", g.cfgPath, "--db", forge(t, false))
	})
	t.Run("a chain rewritten from a row on with its MACs blanked fails with the key at the next checkpoint", func(t *testing.T) {
		t.Parallel()
		verifyFails(t, checkpoint, nil, "-c", g.cfgPath, "--db", forge(t, true))
	})

	t.Run("exports verify, and an edited cell is named", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		csvPath, jsonlPath := filepath.Join(dir, "audit.csv"), filepath.Join(dir, "audit.jsonl")
		mustSallyport(t, "audit", "export", "-c", g.cfgPath, "--format", "csv", "--out", csvPath)
		mustSallyport(t, "audit", "export", "-c", g.cfgPath, "--format", "jsonl", "--out", jsonlPath)
		verifyOK(t, "-c", g.cfgPath, "--file", csvPath)
		verifyOK(t, "-c", g.cfgPath, "--file", jsonlPath)

		// A filtered export holds only what the filter selects and still
		// verifies, across its gaps.
		filtered := filepath.Join(dir, "filtered.csv")
		mustSallyport(t, "audit", "export", "-c", g.cfgPath, "--format", "csv", "--out", filtered,
			"--principal", "alice", "--backend", "demo", "--tool", "lookup_customer", "--method", "tools/call")
		if report := verifyOK(t, "-c", g.cfgPath, "--file", filtered, "--filtered"); !strings.Contains(report, "gaps") {
			t.Errorf("verify of a filtered export does not mention its gaps:\n%s", report)
		}
		// Without --filtered, a gap is a deleted row.
		if code, out, _ := runSallyport(t, nil, "audit", "verify", "-c", g.cfgPath, "--file", filtered); code != 1 || !strings.Contains(out, "missing") {
			t.Errorf("verify of a filtered export without --filtered: exit %d\n%s\nwant 1, naming missing rows", code, out)
		}
		sel := exportRows(t, "-c", g.cfgPath, "--principal", "alice", "--tool", "lookup_customer", "--method", "tools/call")
		if len(sel) != 8 {
			t.Errorf("export --tool lookup_customer --method tools/call: %d rows, want 8 (4 requests, 4 results): %v", len(sel), sel)
		}
		for _, r := range sel {
			if r.Method != "tools/call" || r.Target != "lookup_customer" || r.Backend != "demo" {
				t.Errorf("a filtered export holds row %s", r)
			}
		}
		if sel := exportRows(t, "-c", g.cfgPath, "--principal", "mallory"); len(sel) != 0 {
			t.Errorf("export --principal mallory: %d rows, want none", len(sel))
		}

		data, err := os.ReadFile(csvPath)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		if err != nil {
			t.Fatalf("the CSV export does not parse: %v", err)
		}
		if len(recs) != len(rows)+1 || !slices.Equal(recs[0], auditColumns) {
			t.Fatalf("the CSV export has %d records and header %v; want %d rows under %v", len(recs), recs[0], len(rows), auditColumns)
		}
		argCol := slices.Index(auditColumns, "arguments")
		edited := false
		for _, rec := range recs[1:] {
			if rec[0] == ks {
				rec[argCol] = strings.Replace(rec[argCol], "cus_1002", "cus_1009", 1)
				edited = true
			}
		}
		if !edited {
			t.Fatalf("no CSV record for row %d", k)
		}
		var buf bytes.Buffer
		w := csv.NewWriter(&buf)
		w.UseCRLF = true
		if err := w.WriteAll(recs); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(csvPath, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		verifyFails(t, k, nil, "-c", g.cfgPath, "--file", csvPath)

		data, err = os.ReadFile(jsonlPath)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitAfter(string(data), "\n")
		prefix := `{"seq":` + ks + `,`
		edited = false
		for i, l := range lines {
			if strings.HasPrefix(l, prefix) {
				lines[i] = strings.Replace(l, "cus_1002", "cus_1009", 1)
				edited = lines[i] != l
			}
		}
		if !edited {
			t.Fatalf("no JSONL line for row %d holding cus_1002", k)
		}
		if err := os.WriteFile(jsonlPath, []byte(strings.Join(lines, "")), 0o600); err != nil {
			t.Fatal(err)
		}
		verifyFails(t, k, nil, "-c", g.cfgPath, "--file", jsonlPath)
	})
}

// ---------------------------------------------------------------------------
// 3. kill -9 under load

// crashClients is how many clients call concurrently when the gateway is
// killed.
const crashClients = 16

func TestAuditSurvivesKill9(t *testing.T) {
	t.Parallel()
	for _, synchronous := range []string{"", "normal"} {
		name := "synchronous " + synchronous
		if synchronous == "" {
			name = "synchronous full (the default)"
		}
		t.Run("every call a client saw succeed has its rows / "+name, func(t *testing.T) {
			t.Parallel()
			testKill9(t, synchronous)
		})
	}
}

func testKill9(t *testing.T, synchronous string) {
	cfg := baseConfig(demoStdio("demo", t.TempDir(), "shared"))
	cfg.Database = filepath.Join(t.TempDir(), "audit.db") // shared with the gateway started after the crash
	if synchronous != "" {
		cfg.Audit = &auditConfig{Synchronous: synchronous}
	}
	g := newGateway(t, cfg)
	token := g.token("alice", "dev")
	g.serve()

	sessions := make([]*rawSession, crashClients)
	for i := range sessions {
		sessions[i] = openRawSession(t, g.URL, token)
	}
	hc := &http.Client{Timeout: callWait, Transport: &http.Transport{MaxIdleConnsPerHost: crashClients * 2}}
	defer hc.CloseIdleConnections()

	var killed atomic.Bool
	var total atomic.Int64
	succeeded := make([][]int, crashClients) // per client, the ids of calls it saw succeed
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() {
			for id := 2; ; id++ {
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"demo__lookup_customer","arguments":{"customer_id":"cus_100%d"}}}`, id, 1+id%9)
				r, err := postRaw(hc, s, []byte(body))
				if killed.Load() {
					if err == nil && r.Status == http.StatusOK {
						if m, ok := r.response(); ok && m.Error == nil && string(m.ID) == strconv.Itoa(id) {
							succeeded[i] = append(succeeded[i], id)
						}
					}
					if err != nil || r.Status != http.StatusOK {
						return
					}
					continue
				}
				if err != nil {
					t.Errorf("client %d, call %d, before the kill: %v", i, id, err)
					return
				}
				m, ok := r.response()
				if r.Status != http.StatusOK || !ok || m.Error != nil || string(m.ID) != strconv.Itoa(id) {
					t.Errorf("client %d, call %d, before the kill: HTTP %d: %s", i, id, r.Status, r.Body)
					return
				}
				succeeded[i] = append(succeeded[i], id)
				total.Add(1)
			}
		})
	}
	// Mid-load: once every client has had a few calls through, and at
	// least a second in.
	start := time.Now()
	if !waitFor(callWait, func() bool { return total.Load() >= 4*crashClients || t.Failed() }) {
		t.Errorf("only %d calls succeeded within %v", total.Load(), callWait)
	}
	if d := time.Second - time.Since(start); d > 0 {
		time.Sleep(d)
	}
	killed.Store(true)
	if err := syscall.Kill(g.pid(), syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 the gateway: %v", err)
	}
	select {
	case <-g.proc.done:
	case <-time.After(stopWait):
		t.Fatalf("the gateway (pid %d) is still running %v after SIGKILL", g.pid(), stopWait)
	}
	wg.Wait()
	// Its backends are orphans now (Pdeathsig should have killed them):
	// make sure they are gone before anything else touches the database.
	if !waitFor(leftoverWait, func() bool { return len(markedLive(g.marker)) == 0 }) {
		left := markedLive(g.marker)
		t.Logf("killing %d backend(s) the killed gateway left:\n%s", len(left), formatProcs(left))
		killAll(left)
		waitFor(leftoverWait, func() bool { return len(markedLive(g.marker)) == 0 })
	}
	n := 0
	for _, ids := range succeeded {
		n += len(ids)
	}
	t.Logf("%d clients saw %d calls succeed before the kill, %v after the load started", crashClients, n, time.Since(start).Round(time.Millisecond))

	if fi, err := os.Stat(cfg.Database + "-wal"); err == nil {
		t.Logf("the killed gateway left a %d-byte WAL for verify to recover", fi.Size())
	}
	verifyOK(t, "-c", g.cfgPath)
	rows := exportRows(t, "-c", g.cfgPath)
	type key struct{ session, id string }
	reqs := map[key]auditRow{}
	results := map[int64]auditRow{} // by ref
	for _, r := range rows {
		if r.Method != "tools/call" {
			continue
		}
		switch {
		case r.Direction == c2b && r.Kind == "request":
			reqs[key{r.Session, r.MessageID}] = r
		case r.Direction == b2c && r.Kind == "result":
			results[r.Ref] = r
		}
	}
	missing := 0
	for i, s := range sessions {
		for _, id := range succeeded[i] {
			req, ok := reqs[key{s.id, strconv.Itoa(id)}]
			if !ok {
				missing++
				if missing <= 10 {
					t.Errorf("client %d (session %s): call %d succeeded but has no request row", i, s.id, id)
				}
				continue
			}
			// A result's row is queued, not waited for, and the group
			// commit is first in, first out: the client's next request
			// is committed only with it. So only a client's last call
			// may have lost its result row to the kill.
			res, ok := results[req.Seq]
			if ok && (res.Outcome != "ok" || res.MessageID != req.MessageID) {
				t.Errorf("client %d: call %d has result row %d with outcome %q, id %s", i, id, res.Seq, res.Outcome, res.MessageID)
			}
			if !ok && id != succeeded[i][len(succeeded[i])-1] {
				missing++
				if missing <= 10 {
					t.Errorf("client %d (session %s): call %d succeeded and was not its last, its request is row %d, but it has no result row", i, s.id, id, req.Seq)
				}
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d calls the clients saw succeed are missing rows after kill -9", missing)
	}
	last := rows[len(rows)-1]

	// A new gateway on the same database carries the chain on.
	g2 := newGateway(t, cfg)
	g2.serve()
	s := openRawSession(t, g2.URL, token)
	mustRawCall(t, s, 2, "demo__lookup_customer", map[string]any{"customer_id": "cus_1001"})
	g2.proc.stop(t)
	verifyOK(t, "-c", g2.cfgPath)
	after := exportRows(t, "-c", g2.cfgPath, "--since", last.Time)
	var next *auditRow
	for i := range after {
		if after[i].Seq == last.Seq+1 {
			next = &after[i]
		}
	}
	switch {
	case next == nil:
		t.Errorf("no row %d after the restart", last.Seq+1)
	case next.PrevHash != last.Hash:
		t.Errorf("row %d after the restart has prev_hash %s; the last row before it, %d, has hash %s", next.Seq, next.PrevHash, last.Seq, last.Hash)
	}
	var sawCall bool
	for _, r := range after {
		sawCall = sawCall || (r.Session == s.id && r.Method == "tools/call" && r.Kind == "result" && r.Outcome == "ok")
	}
	if !sawCall {
		t.Errorf("no tools/call result row of the session after the restart")
	}
}

// ---------------------------------------------------------------------------
// 4. No audit row, no forward

// outboxSubjects returns the subjects in the demo backend's outbox.
func outboxSubjects(t testing.TB, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l == "" {
			continue
		}
		var m struct {
			Subject string `json:"subject"`
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("outbox line %q: %v", l, err)
		}
		subjects = append(subjects, m.Subject)
	}
	return subjects
}

func TestAuditStoreDownRefusesToForward(t *testing.T) {
	t.Parallel()
	outbox := filepath.Join(t.TempDir(), "outbox.jsonl")
	demo := demoStdio("demo", t.TempDir(), "shared")
	demo.Args = append(demo.Args, "--outbox", outbox)
	cfg := baseConfig(demo)
	cfg.Audit = &auditConfig{BusyTimeout: "200ms"}
	g := newGateway(t, cfg)
	token := g.token("alice", "dev")
	g.serve()
	s := openRawSession(t, g.URL, token)
	email := func(subject string) map[string]any {
		return map[string]any{"to": []string{"ana.ruiz@example.com"}, "subject": subject, "body": "audit e2e"}
	}
	mustRawCall(t, s, 2, "demo__send_email", email("before"))

	// Another process holds the database's write lock.
	h, err := sql.Open("sqlite3", "file:"+g.dbPath()+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), callWait)
	defer cancel()
	conn, err := h.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("BEGIN IMMEDIATE: %v", err)
	}
	locked := true
	defer func() {
		if locked {
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
		}
	}()

	r := s.call(t, 3, "demo__send_email", email("during"))
	e := r.rpcErr()
	if r.Status != http.StatusOK || e == nil || e.Code != -32004 {
		t.Errorf("tools/call while the audit log is locked: HTTP %d: %s; want a JSON-RPC error with code -32004", r.Status, r.Body)
	} else if !strings.Contains(e.Message, "audit log unavailable") {
		t.Errorf("error -32004 says %q; want it to say the audit log is unavailable", e.Message)
	}
	if got := outboxSubjects(t, outbox); !slices.Equal(got, []string{"before"}) {
		t.Errorf("outbox after the refused call: %q; want only [before]: the call reached the backend without its audit row", got)
	}

	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatalf("ROLLBACK: %v", err)
	}
	locked = false
	mustRawCall(t, s, 4, "demo__send_email", email("after"))
	if got := outboxSubjects(t, outbox); !slices.Equal(got, []string{"before", "after"}) {
		t.Errorf("outbox: %q; want [before after]", got)
	}

	// A result that comes back while the log is locked (and no write has
	// failed yet) is delivered: its row is queued, and kept until the
	// store can be written again.
	type outcome struct {
		r   rawResponse
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		r, err := postRaw(rawHTTP, s, []byte(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"demo__generate_report","arguments":{"seconds":1,"steps":2}}}`))
		done <- outcome{r, err}
	}()
	if !waitFor(callWait, func() bool {
		var n int
		err := h.QueryRowContext(ctx, "SELECT count(*) FROM audit WHERE session = ? AND message_id = '5' AND kind = 'request'", s.id).Scan(&n)
		return err == nil && n == 1
	}) {
		t.Fatalf("the generate_report request has no row after %v", callWait)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("BEGIN IMMEDIATE: %v", err)
	}
	locked = true
	select {
	case o := <-done:
		switch {
		case o.err != nil:
			t.Errorf("generate_report while the log is locked: %v", o.err)
		case o.r.rpcErr() != nil:
			t.Errorf("generate_report whose result came while the log was locked: HTTP %d: %s; want its result", o.r.Status, o.r.Body)
		}
	case <-time.After(callWait):
		t.Fatalf("generate_report hangs while the log is locked")
	}
	// Its row could not be written (the lock): the next request meets the
	// failure and is refused, and the store is known to be failing.
	r = s.call(t, 7, "demo__send_email", email("during-2"))
	if e := r.rpcErr(); e == nil || e.Code != -32004 {
		t.Errorf("a call after a failed write, while the log is locked: HTTP %d: %s; want -32004", r.Status, r.Body)
	}
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		t.Fatalf("ROLLBACK: %v", err)
	}
	locked = false
	mustRawCall(t, s, 6, "demo__lookup_customer", map[string]any{"customer_id": "cus_1001"})

	g.proc.stop(t)
	verifyOK(t, "-c", g.cfgPath)
	rows := exportRows(t, "-c", g.cfgPath)
	byID := map[string][]auditRow{}
	for _, r := range rows {
		if r.Method == "tools/call" && r.Session == s.id {
			byID[r.MessageID] = append(byID[r.MessageID], r)
		}
	}
	for _, id := range []string{"2", "4", "5", "6"} {
		if len(byID[id]) != 2 {
			t.Errorf("call %s has rows %v; want its request and its result", id, byID[id])
		}
	}
	// The refused call has no row to expect: the store was down. Note
	// what there is.
	if len(byID["3"]) != 0 || len(byID["7"]) != 0 {
		t.Errorf("the refused calls have rows %v %v; the store was down, want none", byID["3"], byID["7"])
	}
	for _, r := range rows {
		if strings.Contains(r.Arguments, "during") && r.Decision == "allow" {
			t.Errorf("row %s records the refused call as allowed", r)
		}
	}
}

// ---------------------------------------------------------------------------
// 5. GET /api/audit

func TestAuditHTTPAPI(t *testing.T) {
	t.Parallel()
	g := newGateway(t, baseConfig(demoStdio("demo", t.TempDir(), "shared")))
	alice := g.token("alice", "dev")
	carol := g.token("carol", "auditor")
	dave := g.token("dave", "admin")
	g.serve()
	mustRawCall(t, openRawSession(t, g.URL, alice), 2, "demo__lookup_customer", map[string]any{"customer_id": "cus_1001"})
	mustRawCall(t, openRawSession(t, g.URL, carol), 2, "demo__lookup_customer", map[string]any{"customer_id": "cus_1002"})

	api := strings.TrimSuffix(g.URL, "/mcp") + "/api/audit"
	get := func(token, query string) (int, http.Header, []byte) {
		t.Helper()
		u := api
		if query != "" {
			u += "?" + query
		}
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := rawHTTP.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		return resp.StatusCode, resp.Header, body
	}
	principals := func(rows []auditRow) []string {
		var ps []string
		for _, r := range rows {
			if !slices.Contains(ps, r.Principal) {
				ps = append(ps, r.Principal)
			}
		}
		slices.Sort(ps)
		return ps
	}

	t.Run("without a token it is 401", func(t *testing.T) {
		if code, _, body := get("", ""); code != http.StatusUnauthorized {
			t.Errorf("HTTP %d, want 401: %s", code, body)
		}
		if code, _, body := get("spt_"+strings.Repeat("A", 43), ""); code != http.StatusUnauthorized {
			t.Errorf("an unknown token: HTTP %d, want 401: %s", code, body)
		}
	})
	t.Run("group dev is 403", func(t *testing.T) {
		code, _, body := get(alice, "")
		if code != http.StatusForbidden {
			t.Errorf("HTTP %d, want 403: %s", code, body)
		}
		if bytes.Contains(body, []byte(`"seq"`)) {
			t.Errorf("the 403 carries rows: %s", body)
		}
	})
	var all []auditRow
	t.Run("group auditor reads JSONL", func(t *testing.T) {
		code, h, body := get(carol, "format=jsonl")
		if code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200: %s", code, body)
		}
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/jsonl") {
			t.Errorf("Content-Type %q, want application/jsonl", ct)
		}
		all = parseAuditJSONL(t, body)
		if got := principals(all); !slices.Equal(got, []string{"alice", "carol"}) {
			t.Errorf("rows of principals %v, want [alice carol]", got)
		}
	})
	t.Run("group admin reads CSV", func(t *testing.T) {
		code, h, body := get(dave, "format=csv")
		if code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200: %s", code, body)
		}
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
			t.Errorf("Content-Type %q, want text/csv", ct)
		}
		recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatalf("the CSV does not parse: %v\n%s", err, body)
		}
		if len(recs) < 2 || !slices.Equal(recs[0], auditColumns) {
			t.Fatalf("CSV with %d records and header %v; want rows under %v", len(recs), recs[0], auditColumns)
		}
		// Every export is recorded before it is read: this one's row is
		// the one more than the JSONL export had.
		if all != nil && len(recs)-1 != len(all)+1 {
			t.Errorf("the CSV has %d rows, the JSONL %d; want one more, the record of the JSONL export", len(recs)-1, len(all))
		}
		if last := recs[len(recs)-1]; !slices.Contains(last, "sallyport/audit.export") || !slices.Contains(last, "dave") {
			t.Errorf("the last row %v is not the record of dave's export", last)
		}
	})
	t.Run("the principal filter selects one principal's rows", func(t *testing.T) {
		code, _, body := get(dave, "principal=alice")
		if code != http.StatusOK {
			t.Fatalf("HTTP %d, want 200: %s", code, body)
		}
		rows := parseAuditJSONL(t, body)
		if len(rows) == 0 || !slices.Equal(principals(rows), []string{"alice"}) {
			t.Errorf("principal=alice gave %d rows of principals %v", len(rows), principals(rows))
		}
		code, _, body = get(carol, "principal=alice&method=tools/call")
		if rows := parseAuditJSONL(t, body); code != http.StatusOK || len(rows) != 2 {
			t.Errorf("principal=alice&method=tools/call: HTTP %d, %d rows; want alice's request and result", code, len(rows))
		}
		code, _, body = get(carol, "principal=nobody")
		if rows := parseAuditJSONL(t, body); code != http.StatusOK || len(rows) != 0 {
			t.Errorf("principal=nobody: HTTP %d, %d rows; want 200 and none", code, len(rows))
		}
		if code, _, body := get(carol, "color=blue"); code != http.StatusBadRequest {
			t.Errorf("an unknown parameter: HTTP %d, want 400: %s", code, body)
		}
	})
}

// ---------------------------------------------------------------------------
// 6. Tokens in the database

func TestAuditTokensListAndRevoke(t *testing.T) {
	t.Parallel()
	g := newGateway(t, baseConfig(demoStdio("demo", t.TempDir(), "shared")))
	erin := g.token("erin", "dev")
	frank := g.token("frank", "dev", "ops")
	g.serve()
	ids, revoked := tokenIDs(t, g.cfgPath, erin, frank)
	if len(ids["erin"]) != 1 || len(ids["frank"]) != 1 || len(revoked) != 0 {
		t.Fatalf("tokens list: %v, revoked %v; want one token each for erin and frank, none revoked", ids, revoked)
	}
	erinID := ids["erin"][0]

	s := openRawSession(t, g.URL, erin)
	mustRawCall(t, s, 2, "demo__lookup_customer", map[string]any{"customer_id": "cus_1001"})

	// A token created while the gateway runs works without a restart.
	gina := g.token("gina", "dev")
	var ok bool
	waitFor(5*time.Second, func() bool {
		r := doRaw(t, (&rawSession{url: g.URL, token: gina}).newRawRequest(t, []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)))
		ok = r.Status != http.StatusUnauthorized
		return ok
	})
	if !ok {
		t.Errorf("a token created while the gateway runs is still refused after 5 s")
	}

	if out := mustSallyport(t, "tokens", "revoke", "-c", g.cfgPath, erinID); !strings.Contains(out, erinID) {
		t.Errorf("tokens revoke printed %q", out)
	}
	revokedAt := time.Now()
	id := 3
	refused := waitFor(3*time.Second, func() bool {
		r := s.call(t, id, "demo__lookup_customer", map[string]any{"customer_id": "cus_1002"})
		id++
		return r.Status == http.StatusUnauthorized
	})
	if !refused {
		t.Fatalf("erin's session still works 3 s after her token was revoked")
	}
	t.Logf("the revoked token was refused after %v", time.Since(revokedAt).Round(10*time.Millisecond))
	r := doRaw(t, (&rawSession{url: g.URL, token: erin}).newRawRequest(t, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)))
	if r.Status != http.StatusUnauthorized {
		t.Errorf("a new session with the revoked token: HTTP %d, want 401", r.Status)
	}
	mustRawCall(t, openRawSession(t, g.URL, frank), 2, "demo__lookup_customer", map[string]any{"customer_id": "cus_1003"})

	_, revoked = tokenIDs(t, g.cfgPath, erin, frank, gina)
	if !revoked[erinID] || len(revoked) != 1 {
		t.Errorf("tokens list shows revoked %v; want only %s", revoked, erinID)
	}
}

// ---------------------------------------------------------------------------
// 7. Retention

func TestAuditPruneKeepsTheChainVerifiable(t *testing.T) {
	t.Parallel()
	cfg := baseConfig(demoStdio("demo", t.TempDir(), "shared"))
	cfg.Audit = &auditConfig{Key: auditKey, CheckpointEvery: 3}
	g := newGateway(t, cfg)
	token := g.token("alice", "dev")
	g.serve()
	s := openRawSession(t, g.URL, token)
	mustRawCall(t, s, 2, "demo__lookup_customer", map[string]any{"customer_id": "cus_1001"})
	mustRawCall(t, s, 3, "demo__lookup_customer", map[string]any{"customer_id": "cus_1002"})
	before := exportRows(t, "-c", g.cfgPath)
	last := before[len(before)-1]

	time.Sleep(1100 * time.Millisecond)
	// While the gateway runs: two processes write to one file.
	out := mustSallyport(t, "audit", "prune", "-c", g.cfgPath, "--older-than", "1s")
	if want := fmt.Sprintf("pruned %d rows", len(before)-1); !strings.Contains(out, want) {
		t.Errorf("audit prune printed %q, want %q", out, want)
	}
	rows := exportRows(t, "-c", g.cfgPath)
	if len(rows) != 1 || rows[0].Seq != last.Seq || rows[0].Hash != last.Hash {
		t.Fatalf("after pruning everything older than 1 s: rows %v; want only the last row, %d", rows, last.Seq)
	}
	verifyOK(t, "-c", g.cfgPath)

	// The gateway chains on from the row pruning kept.
	mustRawCall(t, s, 4, "demo__lookup_customer", map[string]any{"customer_id": "cus_1003"})
	g.proc.stop(t)
	report := verifyOK(t, "-c", g.cfgPath)
	rows = exportRows(t, "-c", g.cfgPath)
	if len(rows) < 3 || rows[0].Seq != last.Seq || rows[1].Seq != last.Seq+1 || rows[1].PrevHash != last.Hash {
		t.Errorf("after another call: rows %v; want %d, then %d chained onto it", rows, last.Seq, last.Seq+1)
	}
	if !strings.Contains(report, fmt.Sprintf("%d rows, %d to", len(rows), last.Seq)) {
		t.Errorf("verify report %q does not cover rows from %d", report, last.Seq)
	}

	// Against another key, the anchor pruning left does not verify.
	code, out, _ := runSallyport(t, []string{"E2E_OTHER_AUDIT_KEY=" + strings.Repeat("y", 40)}, "audit", "verify", "-c", g.cfgPath, "--key-env", "E2E_OTHER_AUDIT_KEY")
	if code != 1 || !strings.Contains(out, "anchor") {
		t.Errorf("verify with another key after pruning: exit %d, %q; want a failure naming the anchor", code, out)
	}
}
