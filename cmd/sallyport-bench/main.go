// Command sallyport-bench is Sallyport's load harness. In one run it calls
// the same MCP backend several ways and reports each way's latency
// percentiles, throughput and errors, and the ratios between them:
//
//   - direct: mcp-go's stdio client talking straight to the backend process;
//   - sallyport: mcp-go's Streamable HTTP client → sallyport serve → the
//     backend over stdio, with the audit log at its default
//     synchronous=full and the embedded default policy, which lets the
//     anonymous benchmark client call the tool because the configuration
//     marks the backend trusted and the tool read-only;
//   - sallyport-normal: the same with audit synchronous=normal;
//   - supergateway: mcp-go's Streamable HTTP client → supergateway 4.0.0
//     (stdio → Streamable HTTP, stateful) → the backend.
//
// Sallyport always writes its audit log, so the audit's own cost is
// measured in process too (audit.go): the pipeline sallyport serve
// compiles, with and without the audit stages, over a real database; and
// `sallyport audit export` and `verify` are timed on a database filled
// with --audit-rows rows. The Sallyport paths count the audit rows their
// measured calls wrote and verify the chain after the load.
//
// The approval queue is measured too (approvals.go): the approval stage's
// cost to a call that needs no approval, in process, interleaved with the
// same pipeline without it; and, through a sallyport serve of its own
// with a policy that holds the backend's tool, the time from sending a
// held call to its item on a reviewer's WebSocket, then --approval-pending
// pending items with --approval-reviewers reviewers connected: the
// gateway's memory, a new reviewer's snapshot, and the push latency to
// every reviewer. --paths none with --audit-stage-calls 0 --audit-rows 0
// runs these alone.
//
// Each path runs a sequential workload (one session, calls one after
// another) and a concurrent one (many sessions at once). The machines this
// runs on are shared and noisy, so only ratios measured within one run mean
// anything; the goals are printed as PASS/MISS lines for
// information and never change the exit status. The exit status is 1 when
// a path could not be set up, a direct or sallyport call failed, an audit
// measurement failed (a call through the in-process pipeline, export, or
// a verify that does not find the chain intact), an approval measurement
// failed (its gateway did not start, a held call's item never reached the
// feed, a call failed, a feed was dropped, a snapshot lacked items), or
// the run was interrupted (failed supergateway calls are only reported),
// and 2 for bad flags. An in-process policy evaluation that runs past the
// stage's deadline (--policy-stage-timeout) is counted as a timeout and
// reported, not failed, unless a hundred of them outnumber the calls that
// went through (the workload then stops, and fails); any other policy
// refusal fails the run.
//
// The harness starts every server itself on 127.0.0.1 with a free port,
// and stops every process it started by pid, on errors and interrupts too.
//
// The dlp mode (dlp.go) measures the DLP scanner against gitleaks instead:
// throughput per core, recall on the labelled corpus, and the stage's
// added latency on a 1 KiB message.
//
//	go run ./cmd/sallyport-bench --backend everything --out bin/bench-results.json
//	go run ./cmd/sallyport-bench dlp --gitleaks PATH --corpus dlp/testdata/corpus --mb 64
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Isolation modes for the sallyport backend (and how direct's concurrent
// workload is run to match).
const (
	isolationShared  = "shared"
	isolationSession = "session"
)

const envNodeModules = "SALLYPORT_NODE_MODULES"

// options are the command-line flags.
type options struct {
	sallyport   string
	nodeModules string
	preload     string
	backend     string
	paths       []string
	isolation   string
	calls       int
	warmup      int
	concurrency int
	concCalls   int
	callTimeout time.Duration
	sgLogLevel  string
	out         string

	auditCalls     int    // sequential calls through the in-process pipeline (0: no stage measurements)
	auditConcCalls int    // concurrent calls through it, in total
	auditRows      int64  // rows of the export/verify database (0: no export/verify)
	dbDir          string // where the databases go ("": the run's temporary folder)

	policyTimeout time.Duration // the in-process policy stages' deadline for one evaluation

	approvalStageCalls int // interleaved pairs of calls with and without the approval stage (0: skip)
	approvalCalls      int // held calls timed to the live feed through sallyport serve (0: skip it and the pending load)
	approvalPending    int // pending items of the load measurement (0: skip it)
	approvalReviewers  int // live feeds connected during the load measurement
	approvalPushItems  int // items pushed to every reviewer with the pending items in place
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// mcp-go's transports log through slog's default logger; keep them quiet
	// unless something is wrong.
	slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	if len(args) > 0 && args[0] == "dlp" {
		return runDLP(args[1:], stdout, stderr) // dlp.go
	}
	opt, err := parseOptions(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "sallyport-bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	h := &harness{opt: opt, reaper: &reaper{}, progress: stderr}
	defer h.reaper.stopAll()
	rep, err := h.run(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "sallyport-bench:", err)
		return 1
	}
	printReport(stdout, rep)
	if err := writeJSON(opt.out, rep); err != nil {
		fmt.Fprintln(stderr, "sallyport-bench:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nresults written to %s\n", opt.out)
	if rep.failed() {
		fmt.Fprintln(stderr, "sallyport-bench: a path or a measurement failed, or direct or sallyport calls returned errors; see above")
		return 1
	}
	return 0
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	root := repoRoot()
	fs := flag.NewFlagSet("sallyport-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt options
	var paths string
	fs.StringVar(&opt.sallyport, "sallyport", filepath.Join(root, "bin", "sallyport"), "sallyport binary")
	fs.StringVar(&opt.nodeModules, "node-modules", "", "node_modules with the pinned npm packages (default $"+envNodeModules+", else the output of .ci/testdeps.sh)")
	fs.StringVar(&opt.preload, "loopback-preload", filepath.Join(root, ".ci", "loopback.cjs"), "Node preload that keeps supergateway on 127.0.0.1")
	fs.StringVar(&opt.backend, "backend", "everything", "backend: everything (server-everything echo) or demo (sallyport demo-server lookup_customer)")
	fs.StringVar(&paths, "paths", strings.Join(allPaths, ","), "comma-separated paths to measure, or "+pathNone)
	fs.StringVar(&opt.isolation, "isolation", isolationShared, "sallyport backend isolation: shared (one backend process for every session) or session (one per session)")
	fs.IntVar(&opt.calls, "calls", 1000, "measured calls of the sequential workload")
	fs.IntVar(&opt.warmup, "warmup", 100, "warm-up calls before each workload (split across the concurrent sessions)")
	fs.IntVar(&opt.concurrency, "concurrency", 32, "client sessions of the concurrent workload")
	fs.IntVar(&opt.concCalls, "conc-calls", 5000, "measured calls of the concurrent workload, in total")
	fs.DurationVar(&opt.callTimeout, "call-timeout", 30*time.Second, "bound on one call")
	fs.StringVar(&opt.sgLogLevel, "supergateway-log-level", "none", "supergateway --logLevel (none, info, debug); info logs every message")
	fs.StringVar(&opt.out, "out", "bench-results.json", "JSON results file")
	fs.IntVar(&opt.auditCalls, "audit-stage-calls", 2000, "measured sequential calls through the in-process pipeline, per variant (0: skip the in-process audit measurements)")
	fs.IntVar(&opt.auditConcCalls, "audit-stage-conc-calls", 20000, "measured concurrent calls through the in-process pipeline, per variant, in total")
	fs.Int64Var(&opt.auditRows, "audit-rows", 500000, "rows of the database export and verify are timed on (0: skip them)")
	fs.DurationVar(&opt.policyTimeout, "policy-stage-timeout", defaultPolicyStageTimeout, "deadline of one evaluation in the in-process policy stages (sallyport serve's default is 100ms); calls refused past it are counted as timeouts, not errors")
	fs.IntVar(&opt.approvalStageCalls, "approval-stage-calls", 10000, "calls through the in-process pipeline with the approval stage and as many without it, interleaved, on calls that need no approval (0: skip)")
	fs.IntVar(&opt.approvalCalls, "approval-calls", 200, "sequential calls held for approval through sallyport serve, each timed from sending to its item on a reviewer's live feed, then denied (0: skip this and --approval-pending)")
	fs.IntVar(&opt.approvalPending, "approval-pending", 1000, "pending items (retry mode) of the load measurement: memory, a new reviewer's snapshot, push latency (0: skip it)")
	fs.IntVar(&opt.approvalReviewers, "approval-reviewers", 10, "reviewers' live feeds connected during the load measurement")
	fs.IntVar(&opt.approvalPushItems, "approval-push-items", 20, "items pushed one at a time to every reviewer with the pending items in place")
	fs.StringVar(&opt.dbDir, "db-dir", "", "folder for the audit databases (default: the run's temporary folder); its file system decides what synchronous=full costs")
	if err := fs.Parse(args); err != nil {
		return opt, err
	}
	if fs.NArg() > 0 {
		return opt, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for p := range strings.SplitSeq(paths, ",") {
		p = strings.TrimSpace(p)
		switch p {
		case "", pathNone:
			continue
		case pathDirect, pathSallyport, pathSallyportNormal, pathSupergateway:
			if !slices.Contains(opt.paths, p) {
				opt.paths = append(opt.paths, p)
			}
		default:
			return opt, fmt.Errorf("--paths: unknown path %q (want %s)", p, strings.Join(allPaths, ", "))
		}
	}
	switch {
	case len(opt.paths) == 0 && paths != pathNone:
		return opt, errors.New("--paths: no path to measure (" + pathNone + " for none)")
	case opt.backend != "everything" && opt.backend != "demo":
		return opt, fmt.Errorf("--backend: %q is neither everything nor demo", opt.backend)
	case opt.isolation != isolationShared && opt.isolation != isolationSession:
		return opt, fmt.Errorf("--isolation: %q is neither shared nor session", opt.isolation)
	case opt.calls < 1, opt.concCalls < 1, opt.concurrency < 1, opt.warmup < 0:
		return opt, errors.New("--calls, --conc-calls and --concurrency must be at least 1, --warmup at least 0")
	case opt.concurrency > 1000:
		return opt, errors.New("--concurrency: at most 1000")
	case opt.callTimeout <= 0:
		return opt, errors.New("--call-timeout must be positive")
	case !slices.Contains([]string{"none", "info", "debug"}, opt.sgLogLevel):
		return opt, fmt.Errorf("--supergateway-log-level: %q is not none, info or debug", opt.sgLogLevel)
	case opt.auditCalls < 0 || opt.auditCalls > 0 && opt.auditConcCalls < 1:
		return opt, errors.New("--audit-stage-calls must be at least 0, --audit-stage-conc-calls at least 1")
	case opt.auditRows != 0 && opt.auditRows < 1000:
		return opt, errors.New("--audit-rows: 0, or at least 1000")
	case opt.policyTimeout < time.Millisecond || opt.policyTimeout > 10*time.Second:
		return opt, errors.New("--policy-stage-timeout: between 1ms and 10s, as policy.timeout")
	case opt.approvalStageCalls < 0 || opt.approvalCalls < 0 || opt.approvalPending < 0:
		return opt, errors.New("--approval-stage-calls, --approval-calls and --approval-pending must be at least 0")
	case opt.approvalPending > 0 && (opt.approvalReviewers < 1 || opt.approvalReviewers > maxApprovalReviewers || opt.approvalPushItems < 1):
		return opt, fmt.Errorf("--approval-reviewers: 1 to %d; --approval-push-items: at least 1", maxApprovalReviewers)
	case opt.approvalPending+opt.approvalPushItems > maxApprovalPending:
		return opt, fmt.Errorf("--approval-pending plus --approval-push-items: at most %d (the ceiling of approvals.max_pending_per_principal)", maxApprovalPending)
	}
	return opt, absPaths(&opt.sallyport, &opt.preload, &opt.out, &opt.dbDir)
}

// absPaths makes each non-empty path absolute.
func absPaths(ps ...*string) error {
	for _, p := range ps {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	return nil
}

// repoRoot is the nearest directory above the working directory that holds
// go.mod, or the working directory.
func repoRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		if filepath.Dir(dir) == dir {
			return wd
		}
	}
}

// locateNodeModules returns $SALLYPORT_NODE_MODULES, or runs .ci/testdeps.sh
// and returns the last line it prints.
func locateNodeModules(ctx context.Context) (string, error) {
	if dir := os.Getenv(envNodeModules); dir != "" {
		return dir, nil
	}
	script := filepath.Join(repoRoot(), ".ci", "testdeps.sh")
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s failed (set --node-modules or %s): %w", script, envNodeModules, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), nil
}

// harness holds one run's state.
type harness struct {
	opt      options
	reaper   *reaper
	progress io.Writer
	tmp      string
	dbDir    string // the audit databases' folder, removed at the end
	node     string
	spec     backendSpec
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.progress, "sallyport-bench: "+format+"\n", args...)
}

// prepare resolves the binaries and packages the run needs and picks the
// backend.
func (h *harness) prepare(ctx context.Context) error {
	needNode := h.opt.backend == "everything" || slices.Contains(h.opt.paths, pathSupergateway)
	needSallyport := h.opt.backend == "demo" || h.opt.auditRows > 0 || h.opt.approvalCalls > 0 ||
		slices.ContainsFunc(h.opt.paths, func(p string) bool { return syncOf(p) != "" })
	if needSallyport {
		if fi, err := os.Stat(h.opt.sallyport); err != nil || fi.IsDir() {
			return fmt.Errorf("no sallyport binary at %s (build it: go build -o bin/sallyport ./cmd/sallyport, or pass --sallyport)", h.opt.sallyport)
		}
	}
	if needNode {
		node, err := exec.LookPath("node")
		if err != nil {
			return errors.New("node is not on PATH")
		}
		if h.node, err = filepath.Abs(node); err != nil {
			return err
		}
		if h.opt.nodeModules == "" {
			if h.opt.nodeModules, err = locateNodeModules(ctx); err != nil {
				return err
			}
		}
		if h.opt.nodeModules, err = filepath.Abs(h.opt.nodeModules); err != nil {
			return err
		}
		for _, pkg := range []string{"@modelcontextprotocol/server-everything", "supergateway"} {
			if _, err := os.Stat(filepath.Join(h.opt.nodeModules, pkg, "package.json")); err != nil {
				return fmt.Errorf("%s has no %s (run .ci/testdeps.sh)", h.opt.nodeModules, pkg)
			}
		}
	}
	switch h.opt.backend {
	case "everything":
		h.spec = everythingBackend(h.node, h.opt.nodeModules)
	case "demo":
		sandbox := filepath.Join(h.tmp, "sandbox")
		if err := os.MkdirAll(sandbox, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(sandbox, "README.md"), []byte("# Bench sandbox\n"), 0o644); err != nil {
			return err
		}
		h.spec = demoBackend(h.opt.sallyport, sandbox, filepath.Join(h.tmp, "outbox.jsonl"))
	}
	return nil
}

// run measures every requested path, one after another, and builds the
// report. A path that fails is recorded as failed and the others still run.
func (h *harness) run(ctx context.Context) (*Report, error) {
	tmp, err := os.MkdirTemp("", "sallyport-bench-")
	if err != nil {
		return nil, err
	}
	h.tmp = tmp
	defer os.RemoveAll(tmp)
	defer h.reaper.stopAll() // before the folder their configs are in goes
	base := tmp
	if h.opt.dbDir != "" {
		base = h.opt.dbDir
	}
	if h.dbDir, err = os.MkdirTemp(base, "sallyport-bench-db-"); err != nil {
		return nil, fmt.Errorf("--db-dir: %w", err)
	}
	defer os.RemoveAll(h.dbDir)
	if err := h.prepare(ctx); err != nil {
		return nil, err
	}
	rep := newReport(h)
	for _, name := range h.opt.paths {
		if err := context.Cause(ctx); err != nil {
			return nil, fmt.Errorf("interrupted: %w", err)
		}
		res := h.measurePath(ctx, name)
		rep.Paths[name] = res
		if res.Error != "" {
			h.logf("%s: FAILED: %s", name, res.Error)
		}
	}
	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("interrupted: %w", err)
	}
	if h.opt.auditCalls > 0 || h.opt.auditRows > 0 {
		if err := h.measureAudit(ctx, rep); err != nil {
			return nil, err
		}
	}
	if h.opt.approvalStageCalls > 0 || h.opt.approvalCalls > 0 {
		if rep.Approvals = h.measureApprovals(ctx); context.Cause(ctx) != nil {
			return nil, fmt.Errorf("interrupted: %w", context.Cause(ctx))
		}
	}
	rep.compute()
	return rep, nil
}

// measureAudit runs the in-process audit stage measurements and export
// and verify.
func (h *harness) measureAudit(ctx context.Context, rep *Report) error {
	rep.Audit = &AuditReport{DBDir: h.dbDir, FileSystem: fileSystem(h.dbDir)}
	if h.opt.auditCalls > 0 {
		rep.Audit.Stage = map[string]*StageResult{}
		for _, v := range stageVariants {
			if err := context.Cause(ctx); err != nil {
				return fmt.Errorf("interrupted: %w", err)
			}
			st := h.measureStage(ctx, v)
			rep.Audit.Stage[v.name] = st
			if st.Error != "" {
				h.logf("audit stage %s: FAILED: %s", v.name, st.Error)
			}
		}
	}
	if h.opt.auditRows > 0 {
		rep.Audit.Store = h.measureStore(ctx)
	}
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	return nil
}

// rigOptions are the options of the in-process rigs.
func (h *harness) rigOptions() rigOptions {
	return rigOptions{policyTimeout: h.opt.policyTimeout}
}

// measurePath sets the path up, runs both workloads on it and tears it
// down.
func (h *harness) measurePath(ctx context.Context, name string) *PathResult {
	res := &PathResult{}
	var t *target
	var err error
	switch name {
	case pathDirect:
		t = h.directTarget()
	case pathSallyport, pathSallyportNormal:
		h.logf("%s: starting sallyport serve (audit synchronous=%s)", name, syncOf(name))
		t, err = h.sallyportTarget(ctx, name)
	case pathSupergateway:
		h.logf("%s: starting supergateway", name)
		t, err = h.supergatewayTarget(ctx)
	}
	if err != nil {
		res.Error = err.Error()
		return res
	}
	if t.teardown != nil {
		defer t.teardown()
	}
	res.Tool, res.Via = t.tool, t.description

	// Sequential: one session.
	h.logf("%s: sequential, %d calls after %d warm-up calls", name, h.opt.calls, h.opt.warmup)
	s, err := h.openSessions(ctx, t, 1)
	if err != nil {
		res.Error = fmt.Sprintf("sequential: %v", err)
		return res
	}
	seq, rows, err := runWorkload(ctx, t.db, callers(s), h.opt.warmup, h.opt.calls, h.opt.callTimeout)
	closeSessions(s)
	if err != nil {
		res.Error = fmt.Sprintf("sequential: %v", err)
		return res
	}
	res.Sequential, res.AuditSequential = &seq, rows

	// Concurrent: many sessions (or, for direct with shared isolation, many
	// workers on one session).
	n := h.opt.concurrency
	h.logf("%s: concurrent, %d workers, %d calls in all after %d warm-up calls", name, n, h.opt.concCalls, h.opt.warmup)
	var workers []caller
	if t.shareConc {
		s, err = h.openSessions(ctx, t, 1)
		if err == nil {
			for range n {
				workers = append(workers, s[0].call)
			}
		}
		res.ConcurrentSessions = 1
	} else {
		s, err = h.openSessions(ctx, t, n)
		workers = callers(s)
		res.ConcurrentSessions = n
	}
	if err != nil {
		res.Error = fmt.Sprintf("concurrent: %v", err)
		return res
	}
	res.ConcurrentWorkers = n
	warmEach := (h.opt.warmup + n - 1) / n
	conc, rows, err := runWorkload(ctx, t.db, workers, warmEach, h.opt.concCalls, h.opt.callTimeout)
	if t.gateway != nil {
		// Read while the sessions (and their backends) are still open.
		res.Memory = readMemory(t.gateway.pid())
	}
	closeSessions(s)
	if err != nil {
		res.Error = fmt.Sprintf("concurrent: %v", err)
		return res
	}
	res.Concurrent, res.AuditConcurrent = &conc, rows
	if t.db != "" {
		// The chain the load left, with the gateway stopped.
		t.teardown()
		res.AuditVerify = h.verifyGatewayLog(ctx, t.db)
	}
	return res
}

// openSessions opens n sessions on t, a few at a time (each may start a
// backend process). On error it closes the ones it opened.
func (h *harness) openSessions(ctx context.Context, t *target, n int) ([]*session, error) {
	const parallel = 4
	out := make([]*session, n)
	errs := make([]error, n)
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			octx, cancel := context.WithTimeout(ctx, readyWait)
			defer cancel()
			out[i], errs[i] = t.open(octx)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeSessions(out)
		return nil, fmt.Errorf("open session: %w", err)
	}
	return out, nil
}

func callers(ss []*session) []caller {
	out := make([]caller, len(ss))
	for i, s := range ss {
		out[i] = s.call
	}
	return out
}

// closeSessions closes the sessions, in parallel (closing an HTTP session
// sends DELETE; closing a direct one stops its process).
func closeSessions(ss []*session) {
	var wg sync.WaitGroup
	for _, s := range ss {
		if s != nil {
			wg.Go(s.stop)
		}
	}
	wg.Wait()
}

// readMemory reads the gateway's peak and current resident set size, and
// the number and summed resident size of the processes it has started.
func readMemory(pid int) *Memory {
	m := &Memory{GatewayPID: pid}
	m.GatewayVmHWMKB, _ = statusKB(pid, "VmHWM")
	m.GatewayVmRSSKB, _ = statusKB(pid, "VmRSS")
	for _, q := range descendants(pid) {
		if q.State == 'Z' {
			continue
		}
		rss, err := statusKB(q.PID, "VmRSS")
		if err != nil {
			continue
		}
		m.ChildProcesses++
		m.ChildRSSKB += rss
	}
	return m
}

// hostInfo describes the machine, for the report.
func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH, Go: runtime.Version()}
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		h.Node = strings.TrimSpace(string(out))
	}
	return h
}
