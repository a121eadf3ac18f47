package main

// The audit measurements, besides the Sallyport paths' own:
//
//   - the audit stage in process: the gateway's pipeline as sallyport
//     serve compiles it, with the auditor's stages over a real database in
//     the run's folder (synchronous full and normal) and without them, on a
//     delivery that does nothing, sequential and concurrent. Sallyport
//     cannot run without its audit log, so the variant without the audit
//     stages is the pass-through baseline the stage's own cost is measured
//     against;
//   - `sallyport audit export` (JSONL, CSV) and `sallyport audit verify`,
//     as subprocesses, on a database filled with rows the auditor built.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/mattn/go-sqlite3" // the "sqlite3" driver, for counting rows read-only

	"github.com/sallyport/sallyport/dlp"
	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/sqlite"
	"github.com/sallyport/sallyport/policy"
)

// Stage variants: the pipeline without the auditor's stages, and with them
// at each synchronous setting.
const (
	stageNone   = "none"
	stageFull   = "audit-full"
	stageNormal = "audit-normal"
	// The policy stage alone, with the embedded default policy and with
	// examples/policies.
	stagePolicyDefault  = "policy-default"
	stagePolicyExamples = "policy-examples"
	// The DLP stage alone, with the configuration defaults and the demo's
	// rule (config.Demo).
	stageDLP = "dlp"
)

// stageVariant is one configuration of the in-process pipeline. Each runs
// the same calls (stageRig.call) on a rig of its own; the report lists
// them in the order of stageVariants and compares each with none. To
// measure another stage, add a name, a builder and an entry there; its
// added p50 and goal are a line each in computeAudit.
type stageVariant struct {
	name string
	// sync is the audit database's synchronous setting; "" for the
	// variants without the audit stages (and without a database).
	sync  string
	build func(ctx context.Context, dir string, o rigOptions) (*stageRig, error)
}

// rigOptions are the flags that shape the in-process rigs.
type rigOptions struct {
	// policyTimeout is the policy stage's deadline for one evaluation.
	policyTimeout time.Duration
}

// defaultPolicyStageTimeout is the in-process policy stages' deadline: the
// largest policy.timeout the configuration accepts. sallyport serve's
// default (config.DefaultPolicyTimeout, 100ms) bounds one evaluation on a
// gateway whose goroutines mostly wait for I/O; the concurrent workload's
// goroutines never wait, and with many more of them than cores an
// evaluation sits in the scheduler's run queue for longer than that, so
// the default deadline would measure the queue, not the policy.
const defaultPolicyStageTimeout = 10 * time.Second

var stageVariants = []stageVariant{
	{name: stageNone, build: func(ctx context.Context, _ string, _ rigOptions) (*stageRig, error) {
		return newStageRig(ctx, "", "")
	}},
	{name: stageFull, sync: sqlite.SyncFull, build: func(ctx context.Context, dir string, _ rigOptions) (*stageRig, error) {
		return newStageRig(ctx, dir, sqlite.SyncFull)
	}},
	{name: stageNormal, sync: sqlite.SyncNormal, build: func(ctx context.Context, dir string, _ rigOptions) (*stageRig, error) {
		return newStageRig(ctx, dir, sqlite.SyncNormal)
	}},
	{name: stagePolicyDefault, build: func(ctx context.Context, _ string, o rigOptions) (*stageRig, error) {
		return newPolicyRig(ctx, policy.Source{}, o.policyTimeout)
	}},
	{name: stagePolicyExamples, build: func(ctx context.Context, _ string, o rigOptions) (*stageRig, error) {
		return newPolicyRig(ctx, policy.Source{Paths: []string{filepath.Join(repoRoot(), "examples", "policies")}}, o.policyTimeout)
	}},
	{name: stageDLP, build: func(ctx context.Context, _ string, _ rigOptions) (*stageRig, error) {
		return newDLPRig(ctx)
	}},
}

// benchAuditKey keys the checkpoints of the export/verify database, so
// that verify checks the MACs as it would in production.
const (
	benchAuditKey    = "sallyport-bench-audit-key-0123456789abcdef"
	envBenchAuditKey = "SALLYPORT_BENCH_AUDIT_KEY"
)

// What the in-process calls carry: the everything backend's echo call, as
// the gateway sees it after routing.
var (
	stageArgs   = json.RawMessage(`{"message":"sallyport-bench"}`)
	stageParams = json.RawMessage(`{"name":"everything__echo","arguments":{"message":"sallyport-bench"}}`)
	stageResult = json.RawMessage(`{"content":[{"type":"text","text":"Echo: sallyport-bench"}]}`)
	stageDef    = json.RawMessage(`{"name":"echo","description":"Echoes back the input","inputSchema":{"type":"object","properties":{"message":{"type":"string","description":"Message to echo"}},"required":["message"]},"annotations":{"readOnlyHint":true}}`)
)

// stageRig is the gateway's pipeline in process, with the stages
// sallyport serve compiles (cmd/sallyport: the auditor's Outer, the
// LogStage at warn level, the auditor's Gate) or, without audit, the
// LogStage alone; delivery does nothing. Each call sends one tools/call
// request and its result through the chain, as the gateway does, and so
// writes two audit rows.
type stageRig struct {
	chain     gateway.Handler
	db        *sqlite.DB // nil without audit
	path      string     // the database file; "" without audit
	principal *gateway.Principal
	sessions  []*gateway.SessionInfo
	ids       atomic.Int64
}

// newStageRig builds the rig; synchronous "" leaves the audit out, else
// the database is created in dir with that setting and the other audit
// settings at their defaults (arguments full, every notification).
func newStageRig(ctx context.Context, dir, synchronous string) (*stageRig, error) {
	r := &stageRig{principal: &gateway.Principal{ID: "bench", Groups: []string{"dev"}, TokenID: "tok_bench"}}
	for i := range 32 {
		r.sessions = append(r.sessions, &gateway.SessionInfo{
			ID: fmt.Sprintf("bench-session-%02d-0123456789abcdef", i), Transport: "http",
			ProtocolVersion: "2025-03-26", ClientName: "sallyport-bench", ClientVersion: "1.0.0",
		})
	}
	logStage := gateway.LogStage{Logger: slog.New(slog.DiscardHandler)}
	if synchronous == "" {
		r.chain = gateway.Chain(logStage)
		return r, nil
	}
	r.path = filepath.Join(dir, "stage-"+synchronous+".db")
	db, err := sqlite.Open(ctx, r.path, sqlite.Options{Synchronous: synchronous})
	if err != nil {
		return nil, err
	}
	r.db = db
	a := audit.New(audit.Options{Log: db.Audit(), Arguments: audit.ArgumentsFull})
	r.chain = gateway.Chain(a.Outer(), logStage, a.Gate())
	return r, nil
}

// newPolicyRig builds a rig whose chain is the LogStage and the policy
// stage with the policy src names and the deadline timeout, without audit.
// The backend is configured as a deployment would configure it for the
// default policy: trusted, its echo tool declared read-only.
func newPolicyRig(ctx context.Context, src policy.Source, timeout time.Duration) (*stageRig, error) {
	r, err := newStageRig(ctx, "", "")
	if err != nil {
		return nil, err
	}
	p, err := newBenchPolicy(ctx, src, timeout)
	if err != nil {
		return nil, err
	}
	r.chain = gateway.Chain(gateway.LogStage{Logger: slog.New(slog.DiscardHandler)}, p)
	return r, nil
}

// newBenchPolicy is the policy stage of the policy rigs: the policy src
// names, the deadline timeout, and the backend configured as newPolicyRig
// says.
func newBenchPolicy(ctx context.Context, src policy.Source, timeout time.Duration) (*policy.Stage, error) {
	return policy.NewStage(ctx, policy.Options{Source: src, Timeout: timeout, Backends: []config.Backend{
		{ID: "everything", Transport: config.TransportStdio, Trusted: true, ReadOnlyTools: []string{"echo"}},
	}})
}

// newDLPRig builds a rig whose chain is the LogStage and the DLP stage
// with the configuration defaults and the demo's rule, without audit.
func newDLPRig(ctx context.Context) (*stageRig, error) {
	r, err := newStageRig(ctx, "", "")
	if err != nil {
		return nil, err
	}
	d, err := dlp.NewStage(config.Demo("sallyport", os.TempDir()).DLP, nil)
	if err != nil {
		return nil, err
	}
	r.chain = gateway.Chain(gateway.LogStage{Logger: slog.New(slog.DiscardHandler)}, d)
	return r, nil
}

func deliverNothing(context.Context, *gateway.Exchange) error { return nil }

// call sends one tools/call request and then its result through the chain.
func (r *stageRig) call(ctx context.Context) error {
	id := r.ids.Add(1)
	sess := r.sessions[id%int64(len(r.sessions))]
	msg := &jsonrpc.Message{ID: json.RawMessage(strconv.FormatInt(id, 10)), Method: "tools/call", Params: stageParams}
	x := gateway.NewExchange(deliverNothing)
	x.Direction, x.Kind, x.Method, x.Message = gateway.ClientToBackend, gateway.KindRequest, msg.Method, msg
	x.Principal, x.Session = r.principal, sess
	x.Backend, x.Target, x.Arguments, x.Definition = "everything", "echo", stageArgs, stageDef
	if err := r.chain.Handle(ctx, x); err != nil {
		return fmt.Errorf("request: %w", policyDeadline(x, err))
	}
	rx := gateway.NewExchange(deliverNothing)
	rx.Direction, rx.Kind, rx.Method = gateway.BackendToClient, gateway.KindResult, msg.Method
	rx.Message = &jsonrpc.Message{ID: msg.ID, Result: stageResult}
	rx.Principal, rx.Session = r.principal, sess
	rx.Backend, rx.Target, rx.Request = x.Backend, x.Target, x
	if err := r.chain.Handle(ctx, rx); err != nil {
		return fmt.Errorf("result: %w", policyDeadline(rx, err))
	}
	return nil
}

// errPolicyDeadline marks a call the policy stage refused because its
// evaluation ran past the stage's deadline. The workloads count such calls
// as timeouts, apart from errors: the deadline is the stage failing closed
// on a slow evaluation, not the policy denying the call.
var errPolicyDeadline = errors.New("policy evaluation ran past its deadline")

// policyDeadlineReason is the reason the policy package gives a denial
// whose evaluation ran past its deadline (policy.Set.Eval);
// TestPolicyDeadline checks that it still does.
const policyDeadlineReason = "policy evaluation exceeded its deadline"

// policyDeadline wraps err, the chain's error for x, with
// errPolicyDeadline when the policy stage refused x because its
// evaluation ran past the deadline. Any other error, policy errors
// included, is returned as it is.
func policyDeadline(x *gateway.Exchange, err error) error {
	d := x.Decision
	if d == nil || d.Allow || !slices.Contains(d.Rules, policy.RuleError) || !slices.Contains(d.Reasons, policyDeadlineReason) {
		return err
	}
	return fmt.Errorf("%w: %w", errPolicyDeadline, err)
}

func (r *stageRig) close() error {
	if r.db == nil {
		return nil
	}
	return r.db.Close()
}

// countRows returns the highest seq in the audit log of the database at
// path, read through a read-only connection of its own (the writer may be
// another process). The log is never pruned here, so this is the number
// of rows ever written.
func countRows(ctx context.Context, path string) (int64, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return 0, fmt.Errorf("count audit rows: %w", err)
	}
	defer db.Close()
	var n sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT max(seq) FROM audit").Scan(&n); err != nil {
		return 0, fmt.Errorf("count audit rows in %s: %w", path, err)
	}
	return n.Int64, nil
}

// rowsDuring returns the AuditRows of a measured workload that took s and
// wrote rows rows.
func rowsDuring(rows int64, s Summary) *AuditRows {
	a := &AuditRows{Rows: rows}
	if s.WallSeconds > 0 {
		a.RowsPerSec = round(float64(rows)/s.WallSeconds, 1)
	}
	if s.Calls > 0 {
		a.RowsPerCall = round(float64(rows)/float64(s.Calls), 2)
	}
	return a
}

// measureStage measures one stage variant: the sequential and the
// concurrent workload on a rig of its own.
func (h *harness) measureStage(ctx context.Context, v stageVariant) *StageResult {
	variant := v.name
	res := &StageResult{Variant: variant, Synchronous: v.sync}
	rig, err := v.build(ctx, h.dbDir, h.rigOptions())
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer rig.close()
	h.logf("audit stage %s: sequential, %d calls after %d warm-up calls", variant, h.opt.auditCalls, h.opt.warmup)
	seq, rows, err := runWorkload(ctx, rig.path, []caller{rig.call}, h.opt.warmup, h.opt.auditCalls, h.opt.callTimeout)
	if err != nil {
		res.Error = fmt.Sprintf("sequential: %v", err)
		return res
	}
	res.Sequential, res.RowsSequential = &seq, rows

	n := h.opt.concurrency
	workers := make([]caller, n)
	for i := range workers {
		workers[i] = rig.call
	}
	h.logf("audit stage %s: concurrent, %d goroutines, %d calls in all", variant, n, h.opt.auditConcCalls)
	conc, rows, err := runWorkload(ctx, rig.path, workers, (h.opt.warmup+n-1)/n, h.opt.auditConcCalls, h.opt.callTimeout)
	if err != nil {
		res.Error = fmt.Sprintf("concurrent: %v", err)
		return res
	}
	res.Workers = n
	res.Concurrent, res.RowsConcurrent = &conc, rows
	return res
}

// collector is a gateway.AuditLog that keeps what it is given, numbering
// it as an empty log would: it lets the real Auditor build the rows of the
// export/verify database, which are then written in large batches.
type collector struct {
	seq  int64
	recs []*gateway.AuditRecord
}

func (c *collector) Append(_ context.Context, recs ...*gateway.AuditRecord) error {
	for _, r := range recs {
		c.seq++
		r.Seq = c.seq
		c.recs = append(c.recs, r)
	}
	return nil
}

// Enqueue numbers and keeps recs as Append does.
func (c *collector) Enqueue(recs ...*gateway.AuditRecord) error {
	return c.Append(context.Background(), recs...)
}

// Flush has nothing to wait for.
func (c *collector) Flush(context.Context) error { return nil }

var errCollector = errors.New("collector: not supported")

func (c *collector) Scan(context.Context, gateway.AuditFilter, func(*gateway.AuditRecord) error) error {
	return errCollector
}
func (c *collector) Head(context.Context) (int64, string, error) { return 0, "", errCollector }
func (c *collector) Anchor(context.Context) (gateway.AuditAnchor, error) {
	return gateway.AuditAnchor{}, errCollector
}
func (c *collector) Prune(context.Context, time.Time) (int64, error) { return 0, errCollector }

var _ gateway.AuditLog = (*collector)(nil)

// fillBatch is how many rows one Append of fillAuditLog writes.
const fillBatch = 10000

// fillAuditLog creates the database at path holding rows audit rows (an
// even number: a call writes two), as the auditor builds them for echo
// calls, written in batches of fillBatch with checkpoint MACs under key.
// It returns how long the writing took.
func fillAuditLog(ctx context.Context, path string, rows int64, key []byte) (time.Duration, error) {
	db, err := sqlite.Open(ctx, path, sqlite.Options{Synchronous: sqlite.SyncNormal, AuditKey: key})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	rig, err := newStageRig(ctx, "", "") // no database: the calls only
	if err != nil {
		return 0, err
	}
	c := &collector{}
	a := audit.New(audit.Options{Log: c, Arguments: audit.ArgumentsFull})
	rig.chain = gateway.Chain(a.Outer(), a.Gate())
	var spent time.Duration
	for c.seq < rows {
		if err := rig.call(ctx); err != nil {
			return spent, err
		}
		if len(c.recs) >= fillBatch || c.seq >= rows {
			t0 := time.Now()
			if err := db.Audit().Append(ctx, c.recs...); err != nil {
				return spent, err
			}
			spent += time.Since(t0)
			clear(c.recs)
			c.recs = c.recs[:0]
		}
	}
	return spent, db.Close()
}

var (
	exportedRE = regexp.MustCompile(`exported (\d+) rows`)
	verifiedRE = regexp.MustCompile(`(?m)^OK .*: (\d+) rows, \d+ to \d+, chain intact`)
)

// runAuditCommand runs `sallyport audit <args...>` to completion and times
// it, from the start of the process to its exit. It checks that the
// command handled want rows: by the "exported N rows" line of export, by
// the "OK …: N rows" line of verify.
func (h *harness) runAuditCommand(ctx context.Context, name string, want int64, args ...string) *CommandResult {
	res := &CommandResult{Command: "sallyport audit " + joinArgs(args)}
	cmd := exec.CommandContext(ctx, h.opt.sallyport, append([]string{"audit"}, args...)...)
	cmd.Env = append(os.Environ(), envBenchAuditKey+"="+benchAuditKey)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	h.logf("audit %s: %s", name, res.Command)
	t0 := time.Now()
	err := cmd.Run()
	wall := time.Since(t0)
	out := stdout.String() + stderr.String()
	if err != nil {
		res.Error = fmt.Sprintf("%v: %s", err, firstLine(out))
		return res
	}
	re := exportedRE
	if args[0] == "verify" {
		re = verifiedRE
	}
	m := re.FindStringSubmatch(out)
	if m == nil {
		res.Error = fmt.Sprintf("unexpected output: %.300s", out)
		return res
	}
	if got, _ := strconv.ParseInt(m[1], 10, 64); got != want {
		res.Error = fmt.Sprintf("handled %d rows, want %d: %.300s", got, want, out)
		return res
	}
	res.Rows = want
	res.Seconds = round(wall.Seconds(), 3)
	res.RowsPerSec = round(float64(want)/wall.Seconds(), 0)
	return res
}

func joinArgs(args []string) string {
	var b bytes.Buffer
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a)
	}
	return b.String()
}

// measureStore fills a database with opt.auditRows rows and times export
// (JSONL, CSV) and verify on it.
func (h *harness) measureStore(ctx context.Context) *StoreResult {
	res := &StoreResult{}
	path := filepath.Join(h.dbDir, "store.db")
	rows := h.opt.auditRows &^ 1 // calls write two rows each
	h.logf("audit store: filling %s with %d rows", path, rows)
	spent, err := fillAuditLog(ctx, path, rows, []byte(benchAuditKey))
	if err != nil {
		res.Error = fmt.Sprintf("fill: %v", err)
		return res
	}
	n, err := countRows(ctx, path)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Rows = n
	res.FillSeconds = round(spent.Seconds(), 3)
	res.FillRowsPerSec = round(float64(n)/spent.Seconds(), 0)
	if fi, err := os.Stat(path); err == nil {
		res.DBBytes = fi.Size()
	}
	export := func(format string) *CommandResult {
		out := filepath.Join(h.dbDir, "export."+format)
		c := h.runAuditCommand(ctx, "export "+format, n, "export", "--db", path, "--format", format, "--out", out)
		if fi, err := os.Stat(out); err == nil {
			c.OutputBytes = fi.Size()
		}
		os.Remove(out)
		return c
	}
	res.ExportJSONL = export(audit.FormatJSONL)
	res.ExportCSV = export(audit.FormatCSV)
	res.Verify = h.runAuditCommand(ctx, "verify", n, "verify", "--db", path, "--key-env", envBenchAuditKey)
	return res
}

// verifyGatewayLog runs `sallyport audit verify` on a gateway's database
// after the gateway stopped, to check the chain the load left is intact.
func (h *harness) verifyGatewayLog(ctx context.Context, db string) *CommandResult {
	n, err := countRows(ctx, db)
	if err != nil {
		return &CommandResult{Error: err.Error()}
	}
	return h.runAuditCommand(ctx, "verify", n, "verify", "--db", db)
}

// fileSystem names the file system dir is on, for the report: what
// synchronous=full costs depends on it (tmpfs makes fsync free).
func fileSystem(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return "unknown"
	}
	names := map[int64]string{
		0xEF53: "ext2/3/4", 0x01021994: "tmpfs", 0x58465342: "xfs", 0x9123683E: "btrfs",
		0x794C7630: "overlayfs", 0x2FC12FC1: "zfs", 0x6969: "nfs", 0x65735546: "fuse", 0xF2F52010: "f2fs",
	}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("type 0x%x", st.Type)
}
