package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Goals from the issues. They are informational: a MISS never fails a run.
const (
	goalAddedLatencyUS  = 300.0 // sallyport p50 at most 0.3 ms above direct
	goalThroughputRatio = 2.0   // sallyport calls/s at least 2× supergateway's

	goalAuditRowsPerSec  = 20000.0  // audit rows/s, durable, group commit, 32 concurrent
	goalAuditAddedP50US  = 50.0     // p50 the audit stage adds to a call
	goalPolicyAddedP50US = 40.0     // p50 the policy stage adds to a call
	goalDLPStageAddedUS  = 20.0     // p50 the DLP stage adds to a call (request and result)
	goalExportRowsPerSec = 200000.0 // sallyport audit export
	goalVerifyRowsPerSec = 500000.0 // sallyport audit verify
	unitRowsPerSec       = "rows/s"
	unitMicros           = "µs"
	unitRatio            = "×"
)

// Report is everything one run measured; it is what --out holds.
type Report struct {
	Tool    string                 `json:"tool"`
	Started time.Time              `json:"started"`
	Note    string                 `json:"note"`
	Host    Host                   `json:"host"`
	Config  RunConfig              `json:"config"`
	Paths   map[string]*PathResult `json:"paths"`
	Ratios  Ratios                 `json:"ratios"`
	Goals   []Goal                 `json:"goals"`
	Audit   *AuditReport           `json:"audit,omitempty"`
	// Approvals are the approval queue's measurements.
	Approvals *ApprovalReport `json:"approvals,omitempty"`

	order []string // the paths in the order they ran
}

// Host describes the machine the run was on.
type Host struct {
	CPUs   int    `json:"cpus"`
	GOOS   string `json:"goos"`
	GOARCH string `json:"goarch"`
	Go     string `json:"go"`
	Node   string `json:"node,omitempty"`
}

// RunConfig records the flags that shape the figures.
type RunConfig struct {
	Backend     string   `json:"backend"`
	Tool        string   `json:"tool"`
	Paths       []string `json:"paths"`
	Isolation   string   `json:"isolation"`
	Calls       int      `json:"sequential_calls"`
	Warmup      int      `json:"warmup_calls"`
	Concurrency int      `json:"concurrency"`
	ConcCalls   int      `json:"concurrent_calls"`
	AuditCalls  int      `json:"audit_stage_sequential_calls"`
	AuditConc   int      `json:"audit_stage_concurrent_calls"`
	AuditRows   int64    `json:"audit_store_rows"`
	// PolicyStageTimeoutMS is the in-process policy stages' deadline for
	// one evaluation.
	PolicyStageTimeoutMS float64 `json:"policy_stage_timeout_ms"`
	ApprovalStageCalls   int     `json:"approval_stage_calls"`
	ApprovalCalls        int     `json:"approval_calls"`
	ApprovalPending      int     `json:"approval_pending"`
	ApprovalReviewers    int     `json:"approval_reviewers"`
	ApprovalPushItems    int     `json:"approval_push_items"`
	Sallyport            string  `json:"sallyport_binary,omitempty"`
	NodeModules          string  `json:"node_modules,omitempty"`
}

// PathResult is one path's figures.
type PathResult struct {
	Tool               string   `json:"tool,omitempty"` // the tool name the client called
	Via                string   `json:"via,omitempty"`
	Sequential         *Summary `json:"sequential,omitempty"`
	Concurrent         *Summary `json:"concurrent,omitempty"`
	ConcurrentSessions int      `json:"concurrent_sessions,omitempty"` // MCP sessions the concurrent workload used
	ConcurrentWorkers  int      `json:"concurrent_workers,omitempty"`  // goroutines calling at once
	Memory             *Memory  `json:"memory,omitempty"`              // gateways only, read at the end of the concurrent run
	// Sallyport paths only: the audit rows each measured workload wrote,
	// and `sallyport audit verify` of the database after the gateway
	// stopped.
	AuditSequential *AuditRows     `json:"audit_rows_sequential,omitempty"`
	AuditConcurrent *AuditRows     `json:"audit_rows_concurrent,omitempty"`
	AuditVerify     *CommandResult `json:"audit_verify,omitempty"`
	Error           string         `json:"error,omitempty"`
}

// AuditRows counts the audit rows a measured workload wrote (max(seq) of
// the log before and after it).
type AuditRows struct {
	Rows        int64   `json:"rows"`
	RowsPerSec  float64 `json:"rows_per_sec"`
	RowsPerCall float64 `json:"rows_per_call"`
}

// AuditReport holds the audit measurements besides the Sallyport paths':
// the audit stage in process, and export and verify.
type AuditReport struct {
	DBDir      string                  `json:"db_dir"`
	FileSystem string                  `json:"file_system"`
	Stage      map[string]*StageResult `json:"stage,omitempty"`
	Store      *StoreResult            `json:"store,omitempty"`
	Ratios     AuditRatios             `json:"ratios"`
	Goals      []Goal                  `json:"goals"`
}

// StageResult is one variant of the in-process pipeline: without the
// audit stages, or with them at one synchronous setting. A call is a
// tools/call request and its result, two audit rows.
type StageResult struct {
	Variant        string     `json:"variant"`
	Synchronous    string     `json:"synchronous,omitempty"`
	Sequential     *Summary   `json:"sequential,omitempty"`
	Concurrent     *Summary   `json:"concurrent,omitempty"`
	Workers        int        `json:"concurrent_goroutines,omitempty"`
	RowsSequential *AuditRows `json:"rows_sequential,omitempty"`
	RowsConcurrent *AuditRows `json:"rows_concurrent,omitempty"`
	Error          string     `json:"error,omitempty"`
}

// StoreResult is export and verify on a database filled for them.
type StoreResult struct {
	Rows           int64          `json:"rows"`
	DBBytes        int64          `json:"db_bytes"`
	FillSeconds    float64        `json:"fill_seconds"`
	FillRowsPerSec float64        `json:"fill_rows_per_sec"` // Append in batches of fillBatch rows
	ExportJSONL    *CommandResult `json:"export_jsonl,omitempty"`
	ExportCSV      *CommandResult `json:"export_csv,omitempty"`
	Verify         *CommandResult `json:"verify,omitempty"`
	Error          string         `json:"error,omitempty"`
}

// CommandResult is one run of a `sallyport audit` command, timed from the
// start of its process to its exit.
type CommandResult struct {
	Command     string  `json:"command"`
	Rows        int64   `json:"rows"`
	Seconds     float64 `json:"seconds"`
	RowsPerSec  float64 `json:"rows_per_sec"`
	OutputBytes int64   `json:"output_bytes,omitempty"`
	Error       string  `json:"error,omitempty"`
}

// AuditRatios compare the audit measurements with the pass-through ones of
// the same run: end to end against direct (there is no Sallyport without
// its audit log), in process against the pipeline without the audit
// stages.
type AuditRatios struct {
	FullMinusDirectP50SeqUS    *float64 `json:"sallyport_full_minus_direct_p50_us_sequential"`
	FullMinusDirectP50ConcUS   *float64 `json:"sallyport_full_minus_direct_p50_us_concurrent"`
	NormalMinusDirectP50SeqUS  *float64 `json:"sallyport_normal_minus_direct_p50_us_sequential"`
	NormalMinusDirectP50ConcUS *float64 `json:"sallyport_normal_minus_direct_p50_us_concurrent"`
	FullMinusNormalP50SeqUS    *float64 `json:"sallyport_full_minus_normal_p50_us_sequential"`
	FullMinusNormalP50ConcUS   *float64 `json:"sallyport_full_minus_normal_p50_us_concurrent"`
	FullOverDirectRateConc     *float64 `json:"sallyport_full_over_direct_calls_per_sec_concurrent"`
	NormalOverDirectRateConc   *float64 `json:"sallyport_normal_over_direct_calls_per_sec_concurrent"`
	FullOverNormalRateConc     *float64 `json:"sallyport_full_over_normal_calls_per_sec_concurrent"`
	GatewayFullRowsPerSec      *float64 `json:"sallyport_full_rows_per_sec_concurrent"`
	GatewayNormalRowsPerSec    *float64 `json:"sallyport_normal_rows_per_sec_concurrent"`

	StageFullAddedP50US     *float64 `json:"stage_full_minus_none_p50_us_sequential"`
	StageNormalAddedP50US   *float64 `json:"stage_normal_minus_none_p50_us_sequential"`
	StageFullOverNoneRate   *float64 `json:"stage_full_over_none_calls_per_sec_concurrent"`
	StageNormalOverNoneRate *float64 `json:"stage_normal_over_none_calls_per_sec_concurrent"`
	StageFullRowsPerSec     *float64 `json:"stage_full_rows_per_sec_concurrent"`
	StageNormalRowsPerSec   *float64 `json:"stage_normal_rows_per_sec_concurrent"`
	// The policy stage (request and result evaluated) over none.
	PolicyDefaultAddedP50US  *float64 `json:"policy_default_minus_none_p50_us_sequential"`
	PolicyExamplesAddedP50US *float64 `json:"policy_examples_minus_none_p50_us_sequential"`
	// The DLP stage (request and result scanned) over none.
	DLPAddedP50US         *float64 `json:"dlp_minus_none_p50_us_sequential"`
	ExportJSONLRowsPerSec *float64 `json:"export_jsonl_rows_per_sec"`
	ExportCSVRowsPerSec   *float64 `json:"export_csv_rows_per_sec"`
	VerifyRowsPerSec      *float64 `json:"verify_rows_per_sec"`
}

// Memory is a gateway's memory use, from /proc/<pid>/status.
type Memory struct {
	GatewayPID     int   `json:"gateway_pid"`
	GatewayVmHWMKB int64 `json:"gateway_vmhwm_kb"` // peak resident set size of the gateway process alone
	GatewayVmRSSKB int64 `json:"gateway_vmrss_kb"`
	ChildProcesses int   `json:"child_processes"` // the gateway's live descendants: backend processes (and shells)
	ChildRSSKB     int64 `json:"child_rss_kb"`    // their summed VmRSS
}

// Ratios compare paths measured in the same run. A ratio that could not be
// measured is null.
type Ratios struct {
	AddedP50SeqUS      *float64 `json:"sallyport_minus_direct_p50_us_sequential"`
	AddedP50ConcUS     *float64 `json:"sallyport_minus_direct_p50_us_concurrent"`
	P50OverDirectSeq   *float64 `json:"sallyport_over_direct_p50_sequential"`
	P50OverDirectConc  *float64 `json:"sallyport_over_direct_p50_concurrent"`
	RateOverSGSeq      *float64 `json:"sallyport_over_supergateway_calls_per_sec_sequential"`
	RateOverSGConc     *float64 `json:"sallyport_over_supergateway_calls_per_sec_concurrent"`
	SGAddedP50SeqUS    *float64 `json:"supergateway_minus_direct_p50_us_sequential"`
	RateOverDirectSeq  *float64 `json:"sallyport_over_direct_calls_per_sec_sequential"`
	RateOverDirectConc *float64 `json:"sallyport_over_direct_calls_per_sec_concurrent"`
}

// Goal is one of the targets and whether this run met it.
type Goal struct {
	Goal     string   `json:"goal"`
	Workload string   `json:"workload"`
	Value    *float64 `json:"value"`
	Unit     string   `json:"unit"`
	Status   string   `json:"status"` // PASS, MISS, or N/A when it could not be measured
}

func newReport(h *harness) *Report {
	tool := h.spec.Tool
	return &Report{
		Tool:    "sallyport-bench",
		Started: time.Now().UTC().Truncate(time.Second),
		Note:    "one run on a possibly shared, noisy machine: compare the ratios within this run, not absolute figures across runs",
		Host:    hostInfo(),
		Config: RunConfig{
			Backend:              h.opt.backend,
			Tool:                 tool,
			Paths:                h.opt.paths,
			Isolation:            h.opt.isolation,
			Calls:                h.opt.calls,
			Warmup:               h.opt.warmup,
			Concurrency:          h.opt.concurrency,
			ConcCalls:            h.opt.concCalls,
			AuditCalls:           h.opt.auditCalls,
			AuditConc:            h.opt.auditConcCalls,
			AuditRows:            h.opt.auditRows,
			PolicyStageTimeoutMS: float64(h.opt.policyTimeout) / float64(time.Millisecond),
			ApprovalStageCalls:   h.opt.approvalStageCalls,
			ApprovalCalls:        h.opt.approvalCalls,
			ApprovalPending:      h.opt.approvalPending,
			ApprovalReviewers:    h.opt.approvalReviewers,
			ApprovalPushItems:    h.opt.approvalPushItems,
			Sallyport:            h.opt.sallyport,
			NodeModules:          h.opt.nodeModules,
		},
		Paths: map[string]*PathResult{},
		order: h.opt.paths,
	}
}

// summary returns the path's workload summary, or nil.
func (r *Report) summary(path string, concurrent bool) *Summary {
	p := r.Paths[path]
	if p == nil {
		return nil
	}
	if concurrent {
		return p.Concurrent
	}
	return p.Sequential
}

// compute fills in the ratios and the goals.
func (r *Report) compute() {
	p50 := func(path string, conc bool) float64 {
		if s := r.summary(path, conc); s != nil && s.Calls > 0 {
			return s.P50US
		}
		return 0
	}
	rate := func(path string, conc bool) float64 {
		if s := r.summary(path, conc); s != nil && s.Calls > 0 {
			return s.CallsPerSec
		}
		return 0
	}
	r.Ratios = Ratios{
		AddedP50SeqUS:      diff(p50(pathSallyport, false), p50(pathDirect, false)),
		AddedP50ConcUS:     diff(p50(pathSallyport, true), p50(pathDirect, true)),
		P50OverDirectSeq:   ratio(p50(pathSallyport, false), p50(pathDirect, false)),
		P50OverDirectConc:  ratio(p50(pathSallyport, true), p50(pathDirect, true)),
		RateOverSGSeq:      ratio(rate(pathSallyport, false), rate(pathSupergateway, false)),
		RateOverSGConc:     ratio(rate(pathSallyport, true), rate(pathSupergateway, true)),
		SGAddedP50SeqUS:    diff(p50(pathSupergateway, false), p50(pathDirect, false)),
		RateOverDirectSeq:  ratio(rate(pathSallyport, false), rate(pathDirect, false)),
		RateOverDirectConc: ratio(rate(pathSallyport, true), rate(pathDirect, true)),
	}
	r.Goals = []Goal{
		goal("sallyport p50 at most 0.3 ms above direct", "sequential", r.Ratios.AddedP50SeqUS, "µs", func(v float64) bool { return v <= goalAddedLatencyUS }),
		goal("sallyport calls/s at least 2× supergateway's", "sequential", r.Ratios.RateOverSGSeq, "×", func(v float64) bool { return v >= goalThroughputRatio }),
		goal("sallyport calls/s at least 2× supergateway's", "concurrent", r.Ratios.RateOverSGConc, "×", func(v float64) bool { return v >= goalThroughputRatio }),
	}
	if r.Audit != nil {
		r.computeAudit(p50, rate)
	}
	if r.Approvals != nil {
		r.Approvals.compute()
	}
}

// diff returns a−b, or nil when either is missing.
func diff(a, b float64) *float64 {
	if a == 0 || b == 0 {
		return nil
	}
	d := round(a-b, 1)
	return &d
}

// value returns v, or nil when it is missing (zero).
func value(v float64) *float64 {
	if v == 0 {
		return nil
	}
	return &v
}

// computeAudit fills in the audit ratios and goals.
func (r *Report) computeAudit(p50, rate func(path string, conc bool) float64) {
	a := r.Audit
	gatewayRows := func(path string) float64 {
		if p := r.Paths[path]; p != nil && p.AuditConcurrent != nil && p.Concurrent != nil && p.Concurrent.Errors == 0 {
			return p.AuditConcurrent.RowsPerSec
		}
		return 0
	}
	stage := func(variant string, conc bool) (p50, rate, rows float64) {
		st := a.Stage[variant]
		if st == nil {
			return 0, 0, 0
		}
		s, rw := st.Sequential, st.RowsSequential
		if conc {
			s, rw = st.Concurrent, st.RowsConcurrent
		}
		if s == nil || s.Calls == 0 || s.Errors > 0 {
			return 0, 0, 0
		}
		if rw != nil {
			rows = rw.RowsPerSec
		}
		return s.P50US, s.CallsPerSec, rows
	}
	command := func(c *CommandResult) float64 {
		if c == nil || c.Error != "" {
			return 0
		}
		return c.RowsPerSec
	}
	noneP50, _, _ := stage(stageNone, false)
	fullP50, _, _ := stage(stageFull, false)
	normalP50, _, _ := stage(stageNormal, false)
	polDefP50, _, _ := stage(stagePolicyDefault, false)
	polExP50, _, _ := stage(stagePolicyExamples, false)
	dlpP50, _, _ := stage(stageDLP, false)
	_, noneRate, _ := stage(stageNone, true)
	_, fullRate, fullRows := stage(stageFull, true)
	_, normalRate, normalRows := stage(stageNormal, true)
	x := AuditRatios{
		FullMinusDirectP50SeqUS:    diff(p50(pathSallyport, false), p50(pathDirect, false)),
		FullMinusDirectP50ConcUS:   diff(p50(pathSallyport, true), p50(pathDirect, true)),
		NormalMinusDirectP50SeqUS:  diff(p50(pathSallyportNormal, false), p50(pathDirect, false)),
		NormalMinusDirectP50ConcUS: diff(p50(pathSallyportNormal, true), p50(pathDirect, true)),
		FullMinusNormalP50SeqUS:    diff(p50(pathSallyport, false), p50(pathSallyportNormal, false)),
		FullMinusNormalP50ConcUS:   diff(p50(pathSallyport, true), p50(pathSallyportNormal, true)),
		FullOverDirectRateConc:     ratio(rate(pathSallyport, true), rate(pathDirect, true)),
		NormalOverDirectRateConc:   ratio(rate(pathSallyportNormal, true), rate(pathDirect, true)),
		FullOverNormalRateConc:     ratio(rate(pathSallyport, true), rate(pathSallyportNormal, true)),
		GatewayFullRowsPerSec:      value(gatewayRows(pathSallyport)),
		GatewayNormalRowsPerSec:    value(gatewayRows(pathSallyportNormal)),
		StageFullAddedP50US:        diff(fullP50, noneP50),
		StageNormalAddedP50US:      diff(normalP50, noneP50),
		StageFullOverNoneRate:      ratio(fullRate, noneRate),
		StageNormalOverNoneRate:    ratio(normalRate, noneRate),
		StageFullRowsPerSec:        value(fullRows),
		StageNormalRowsPerSec:      value(normalRows),
		PolicyDefaultAddedP50US:    diff(polDefP50, noneP50),
		PolicyExamplesAddedP50US:   diff(polExP50, noneP50),
		DLPAddedP50US:              diff(dlpP50, noneP50),
	}
	if st := a.Store; st != nil {
		x.ExportJSONLRowsPerSec = value(command(st.ExportJSONL))
		x.ExportCSVRowsPerSec = value(command(st.ExportCSV))
		x.VerifyRowsPerSec = value(command(st.Verify))
	}
	a.Ratios = x
	atLeast := func(min float64) func(float64) bool { return func(v float64) bool { return v >= min } }
	atMost := func(max float64) func(float64) bool { return func(v float64) bool { return v <= max } }
	rowsGoal := fmt.Sprintf("audit rows/s, durable, group commit, %d concurrent, at least %.0f", r.Config.Concurrency, goalAuditRowsPerSec)
	addedGoal := fmt.Sprintf("p50 the audit stage adds to a call at most %.0f µs", goalAuditAddedP50US)
	a.Goals = []Goal{
		goal(rowsGoal, "in process, synchronous=full", x.StageFullRowsPerSec, unitRowsPerSec, atLeast(goalAuditRowsPerSec)),
		goal(rowsGoal, "in process, synchronous=normal", x.StageNormalRowsPerSec, unitRowsPerSec, atLeast(goalAuditRowsPerSec)),
		goal(rowsGoal, "through sallyport, synchronous=full", x.GatewayFullRowsPerSec, unitRowsPerSec, atLeast(goalAuditRowsPerSec)),
		goal(rowsGoal, "through sallyport, synchronous=normal", x.GatewayNormalRowsPerSec, unitRowsPerSec, atLeast(goalAuditRowsPerSec)),
		goal(addedGoal, "in process, sequential, synchronous=full", x.StageFullAddedP50US, unitMicros, atMost(goalAuditAddedP50US)),
		goal(addedGoal, "in process, sequential, synchronous=normal", x.StageNormalAddedP50US, unitMicros, atMost(goalAuditAddedP50US)),
		goal(fmt.Sprintf("p50 the policy stage adds to a call at most %.0f µs", goalPolicyAddedP50US), "in process, sequential, default policy", x.PolicyDefaultAddedP50US, unitMicros, atMost(goalPolicyAddedP50US)),
		goal(fmt.Sprintf("p50 the policy stage adds to a call at most %.0f µs", goalPolicyAddedP50US), "in process, sequential, examples/policies", x.PolicyExamplesAddedP50US, unitMicros, atMost(goalPolicyAddedP50US)),
		goal(fmt.Sprintf("p50 the DLP stage adds to a call at most %.0f µs", goalDLPStageAddedUS), "in process, sequential, echo request and result, demo rule", x.DLPAddedP50US, unitMicros, atMost(goalDLPStageAddedUS)),
		goal(fmt.Sprintf("audit export at least %.0f rows/s", goalExportRowsPerSec), "jsonl", x.ExportJSONLRowsPerSec, unitRowsPerSec, atLeast(goalExportRowsPerSec)),
		goal(fmt.Sprintf("audit export at least %.0f rows/s", goalExportRowsPerSec), "csv", x.ExportCSVRowsPerSec, unitRowsPerSec, atLeast(goalExportRowsPerSec)),
		goal(fmt.Sprintf("audit verify at least %.0f rows/s", goalVerifyRowsPerSec), "database, with the key", x.VerifyRowsPerSec, unitRowsPerSec, atLeast(goalVerifyRowsPerSec)),
	}
}

func goal(name, workload string, v *float64, unit string, met func(float64) bool) Goal {
	g := Goal{Goal: name, Workload: workload, Value: v, Unit: unit, Status: "N/A"}
	if v != nil {
		g.Status = "MISS"
		if met(*v) {
			g.Status = "PASS"
		}
	}
	return g
}

// failed reports whether a path could not be set up or warmed up, or a
// direct or sallyport call failed. Failed supergateway calls are reported
// but are the peer's finding, not a failure of the run.
func (r *Report) failed() bool {
	if r.Audit != nil && r.Audit.failed() {
		return true
	}
	if r.Approvals != nil && r.Approvals.failed() {
		return true
	}
	for name, p := range r.Paths {
		if p.Error != "" || p.AuditVerify != nil && p.AuditVerify.Error != "" {
			return true
		}
		if name == pathSupergateway {
			continue
		}
		for _, s := range []*Summary{p.Sequential, p.Concurrent} {
			if s.failed() {
				return true
			}
		}
	}
	return false
}

// failed reports whether a workload that ran had failed calls, stopped
// early, or measured no call at all. Timeouts alone are not a failure.
func (s *Summary) failed() bool {
	return s != nil && (s.Errors > 0 || s.Aborted || s.Calls == 0)
}

// failed reports whether an audit measurement could not be made, a call
// through the in-process pipeline failed, or export or verify failed. A
// policy stage's timeouts are reported, not failed (Summary.failed).
func (a *AuditReport) failed() bool {
	for _, st := range a.Stage {
		if st.Error != "" {
			return true
		}
		for _, s := range []*Summary{st.Sequential, st.Concurrent} {
			if s.failed() {
				return true
			}
		}
	}
	if st := a.Store; st != nil {
		if st.Error != "" {
			return true
		}
		for _, c := range []*CommandResult{st.ExportJSONL, st.ExportCSV, st.Verify} {
			if c != nil && c.Error != "" {
				return true
			}
		}
	}
	return false
}

// writeJSON writes v, indented, to path.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// printReport writes the figures, the memory, the ratios and the goals.
func printReport(w io.Writer, r *Report) {
	c := r.Config
	fmt.Fprintf(w, "sallyport-bench: backend %s (tool %s), %d CPUs, %s\n", c.Backend, c.Tool, r.Host.CPUs, r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "sequential: 1 session, %d calls after %d warm-up; concurrent: %d workers, %d calls in all after warm-up; sallyport isolation %s\n\n",
		c.Calls, c.Warmup, c.Concurrency, c.ConcCalls, c.Isolation)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tworkload\tsessions\tp50 µs\tp90 µs\tp99 µs\tcalls/s\terrors\t")
	for _, name := range r.order {
		p := r.Paths[name]
		if p == nil {
			continue
		}
		if p.Error != "" && p.Sequential == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\tFAILED\t\n", name)
			continue
		}
		for _, row := range []struct {
			workload string
			sessions int
			s        *Summary
		}{{"sequential", 1, p.Sequential}, {"concurrent", p.ConcurrentSessions, p.Concurrent}} {
			if row.s == nil {
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\tFAILED\t\n", name, row.workload)
				continue
			}
			errs := fmt.Sprint(row.s.Errors)
			if row.s.Aborted {
				errs += " (aborted)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.0f\t%s\t\n", name, row.workload, row.sessions,
				row.s.P50US, row.s.P90US, row.s.P99US, row.s.CallsPerSec, errs)
		}
	}
	tw.Flush()

	for _, name := range r.order {
		p := r.Paths[name]
		if p == nil {
			continue
		}
		label := name + ":"
		line := func(format string, args ...any) {
			fmt.Fprintf(w, "  %-13s "+format+"\n", append([]any{label}, args...)...)
			label = ""
		}
		if p.Via != "" {
			line("%s", p.Via)
		}
		if p.Error != "" {
			line("FAILED: %s", firstLine(p.Error))
		}
		for _, s := range []*Summary{p.Sequential, p.Concurrent} {
			if s != nil && s.FirstError != "" {
				line("first error: %s", firstLine(s.FirstError))
			}
		}
	}

	fmt.Fprintln(w, "\ngateway memory, at the end of the concurrent run:")
	shown := false
	for _, name := range r.order {
		if p := r.Paths[name]; p != nil && p.Memory != nil {
			m := p.Memory
			fmt.Fprintf(w, "  %-13s VmHWM %s (VmRSS %s); %d child process(es), %s RSS in all\n",
				name+":", mib(m.GatewayVmHWMKB), mib(m.GatewayVmRSSKB), m.ChildProcesses, mib(m.ChildRSSKB))
			shown = true
		}
	}
	if !shown {
		fmt.Fprintln(w, "  (no gateway measured)")
	}

	x := r.Ratios
	fmt.Fprintln(w, "\nratios, measured in this run:")
	fmt.Fprintf(w, "  sallyport p50 − direct p50:               sequential %s, concurrent %s\n", fmtNum(x.AddedP50SeqUS, "%+.1f µs"), fmtNum(x.AddedP50ConcUS, "%+.1f µs"))
	fmt.Fprintf(w, "  sallyport p50 / direct p50:               sequential %s, concurrent %s\n", fmtNum(x.P50OverDirectSeq, "%.2f×"), fmtNum(x.P50OverDirectConc, "%.2f×"))
	fmt.Fprintf(w, "  sallyport calls/s / supergateway calls/s: sequential %s, concurrent %s\n", fmtNum(x.RateOverSGSeq, "%.2f×"), fmtNum(x.RateOverSGConc, "%.2f×"))
	fmt.Fprintf(w, "  sallyport calls/s / direct calls/s:       sequential %s, concurrent %s\n", fmtNum(x.RateOverDirectSeq, "%.2f×"), fmtNum(x.RateOverDirectConc, "%.2f×"))
	fmt.Fprintf(w, "  supergateway p50 − direct p50:            sequential %s\n", fmtNum(x.SGAddedP50SeqUS, "%+.1f µs"))

	fmt.Fprintln(w, "\ngoals (informational; they never fail the run):")
	printGoals(w, r.Goals)

	if r.Audit != nil {
		printAudit(w, r)
	}
	if r.Approvals != nil {
		printApprovals(w, r.Approvals)
	}
}

func printGoals(w io.Writer, goals []Goal) {
	for _, g := range goals {
		val := "not measured"
		if g.Value != nil {
			switch g.Unit {
			case unitMicros:
				val = fmt.Sprintf("%+.1f µs", *g.Value)
			case unitMillis:
				val = fmt.Sprintf("%.2f ms", *g.Value)
			case unitRowsPerSec:
				val = fmt.Sprintf("%.0f rows/s", *g.Value)
			case unitMBPerSec:
				val = fmt.Sprintf("%.4g MB/s", *g.Value)
			case unitDetectors:
				val = fmt.Sprintf("%.0f detector(s) behind", *g.Value)
			default:
				val = fmt.Sprintf("%.2f×", *g.Value)
			}
		}
		fmt.Fprintf(w, "  %-4s  %s (%s): %s\n", g.Status, g.Goal, g.Workload, val)
	}
}

func fmtNum(v *float64, format string) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, *v)
}

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// printAudit writes the audit section: rows through the gateway, the
// in-process stage, export and verify, their ratios and goals.
func printAudit(w io.Writer, r *Report) {
	a := r.Audit
	fmt.Fprintf(w, "\naudit log (databases in %s, on %s):\n", a.DBDir, a.FileSystem)

	fmt.Fprintln(w, "  through the gateway: rows the measured calls wrote (the gateway's calls/s bound these)")
	shown := false
	for _, name := range r.order {
		p := r.Paths[name]
		if p == nil || syncOf(name) == "" {
			continue
		}
		shown = true
		label := fmt.Sprintf("%s (synchronous=%s):", name, syncOf(name))
		for _, row := range []struct {
			workload string
			rows     *AuditRows
		}{{"sequential", p.AuditSequential}, {"concurrent", p.AuditConcurrent}} {
			if row.rows == nil {
				fmt.Fprintf(w, "    %-38s %-10s not measured\n", label, row.workload)
			} else {
				fmt.Fprintf(w, "    %-38s %-10s %7d rows, %.2f per call, %8.0f rows/s\n", label, row.workload, row.rows.Rows, row.rows.RowsPerCall, row.rows.RowsPerSec)
			}
			label = ""
		}
		switch v := p.AuditVerify; {
		case v == nil:
		case v.Error != "":
			fmt.Fprintf(w, "    %-38s verify after the load FAILED: %s\n", "", firstLine(v.Error))
		default:
			fmt.Fprintf(w, "    %-38s verify after the load: %d rows, chain intact\n", "", v.Rows)
		}
	}
	if !shown {
		fmt.Fprintln(w, "    (no sallyport path measured)")
	}

	if len(a.Stage) > 0 {
		fmt.Fprintln(w, "  in process: the pipeline sallyport serve compiles, with and without the audit stages, and the policy and DLP stages alone; delivery does nothing;")
		fmt.Fprintln(w, "  a call is a tools/call request and its result (two rows)")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "    variant\tworkload\tgoroutines\tp50 µs\tp90 µs\tp99 µs\tmean µs\tcalls/s\trows/s\terrors\ttimeouts\t")
		for _, v := range stageVariants {
			st := a.Stage[v.name]
			if st == nil {
				continue
			}
			if st.Error != "" && st.Sequential == nil {
				fmt.Fprintf(tw, "    %s\t-\t-\t-\t-\t-\t-\t-\t-\tFAILED\t-\t\n", v.name)
				continue
			}
			for _, row := range []struct {
				workload string
				n        int
				s        *Summary
				rows     *AuditRows
			}{{"sequential", 1, st.Sequential, st.RowsSequential}, {"concurrent", st.Workers, st.Concurrent, st.RowsConcurrent}} {
				if row.s == nil {
					fmt.Fprintf(tw, "    %s\t%s\t-\t-\t-\t-\t-\t-\t-\tFAILED\t-\t\n", v.name, row.workload)
					continue
				}
				rows := "-"
				if row.rows != nil {
					rows = fmt.Sprintf("%.0f", row.rows.RowsPerSec)
				}
				errs := fmt.Sprint(row.s.Errors)
				if row.s.Aborted {
					errs += " (aborted)"
				}
				fmt.Fprintf(tw, "    %s\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%s\t%s\t%d\t\n", v.name, row.workload, row.n,
					row.s.P50US, row.s.P90US, row.s.P99US, row.s.MeanUS, row.s.CallsPerSec, rows, errs, row.s.Timeouts)
			}
		}
		tw.Flush()
		if ms := r.Config.PolicyStageTimeoutMS; ms > 0 {
			fmt.Fprintf(w, "    policy variants: a %v deadline per evaluation (sallyport serve's default is 100ms); calls refused past it are timeouts, not errors\n",
				time.Duration(ms*float64(time.Millisecond)))
		}
		for _, v := range stageVariants {
			st := a.Stage[v.name]
			if st == nil {
				continue
			}
			if st.Error != "" {
				fmt.Fprintf(w, "    %s: FAILED: %s\n", v.name, firstLine(st.Error))
			}
			for _, s := range []*Summary{st.Sequential, st.Concurrent} {
				if s != nil && s.FirstError != "" {
					fmt.Fprintf(w, "    %s: first error: %s\n", v.name, firstLine(s.FirstError))
				}
				if s != nil && s.FirstTimeout != "" {
					fmt.Fprintf(w, "    %s: first timeout: %s\n", v.name, firstLine(s.FirstTimeout))
				}
			}
		}
	}

	if st := a.Store; st != nil {
		fmt.Fprintf(w, "  export and verify: sallyport audit as a subprocess (start to exit), on %d rows (%s database)\n", st.Rows, mib(st.DBBytes/1024))
		if st.Error != "" {
			fmt.Fprintf(w, "    FAILED: %s\n", firstLine(st.Error))
		}
		if st.FillSeconds > 0 {
			fmt.Fprintf(w, "    %-13s %7.3f s  %9.0f rows/s  (Append in batches of %d rows, synchronous=normal)\n", "fill:", st.FillSeconds, st.FillRowsPerSec, fillBatch)
		}
		for _, c := range []struct {
			name string
			c    *CommandResult
		}{{"export jsonl:", st.ExportJSONL}, {"export csv:", st.ExportCSV}, {"verify:", st.Verify}} {
			switch {
			case c.c == nil:
			case c.c.Error != "":
				fmt.Fprintf(w, "    %-13s FAILED: %s\n", c.name, firstLine(c.c.Error))
			default:
				extra := ""
				if c.c.OutputBytes > 0 {
					extra = fmt.Sprintf("  (%s written)", mib(c.c.OutputBytes/1024))
				}
				fmt.Fprintf(w, "    %-13s %7.3f s  %9.0f rows/s%s\n", c.name, c.c.Seconds, c.c.RowsPerSec, extra)
			}
		}
	}

	x := a.Ratios
	fmt.Fprintln(w, "\naudit ratios, measured in this run:")
	fmt.Fprintf(w, "  sallyport (full) p50 − direct p50:           sequential %s, concurrent %s\n", fmtNum(x.FullMinusDirectP50SeqUS, "%+.1f µs"), fmtNum(x.FullMinusDirectP50ConcUS, "%+.1f µs"))
	fmt.Fprintf(w, "  sallyport-normal p50 − direct p50:           sequential %s, concurrent %s\n", fmtNum(x.NormalMinusDirectP50SeqUS, "%+.1f µs"), fmtNum(x.NormalMinusDirectP50ConcUS, "%+.1f µs"))
	fmt.Fprintf(w, "  sallyport (full) p50 − sallyport-normal p50: sequential %s, concurrent %s\n", fmtNum(x.FullMinusNormalP50SeqUS, "%+.1f µs"), fmtNum(x.FullMinusNormalP50ConcUS, "%+.1f µs"))
	fmt.Fprintf(w, "  calls/s over direct, concurrent:             full %s, normal %s; full / normal %s\n", fmtNum(x.FullOverDirectRateConc, "%.2f×"), fmtNum(x.NormalOverDirectRateConc, "%.2f×"), fmtNum(x.FullOverNormalRateConc, "%.2f×"))
	fmt.Fprintf(w, "  in process, audit p50 − no-audit p50:        full %s, normal %s (sequential, per call)\n", fmtNum(x.StageFullAddedP50US, "%+.1f µs"), fmtNum(x.StageNormalAddedP50US, "%+.1f µs"))
	fmt.Fprintf(w, "  in process, audit calls/s / no-audit:        full %s, normal %s (concurrent)\n", fmtNum(x.StageFullOverNoneRate, "%.4f×"), fmtNum(x.StageNormalOverNoneRate, "%.4f×"))
	fmt.Fprintf(w, "  in process, policy p50 − none p50:           default %s, examples %s (sequential, per call: request and result)\n", fmtNum(x.PolicyDefaultAddedP50US, "%+.1f µs"), fmtNum(x.PolicyExamplesAddedP50US, "%+.1f µs"))
	fmt.Fprintf(w, "  in process, dlp p50 − none p50:              %s (sequential, per call: request and result)\n", fmtNum(x.DLPAddedP50US, "%+.1f µs"))

	fmt.Fprintln(w, "\naudit goals (informational; they never fail the run):")
	printGoals(w, a.Goals)
}
