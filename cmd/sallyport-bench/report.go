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

// Goals from the issue. They are informational: a MISS never fails a run.
const (
	goalAddedLatencyUS  = 300.0 // sallyport p50 at most 0.3 ms above direct
	goalThroughputRatio = 2.0   // sallyport calls/s at least 2× supergateway's
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
	Sallyport   string   `json:"sallyport_binary,omitempty"`
	NodeModules string   `json:"node_modules,omitempty"`
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
	Error              string   `json:"error,omitempty"`
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
			Backend:     h.opt.backend,
			Tool:        tool,
			Paths:       h.opt.paths,
			Isolation:   h.opt.isolation,
			Calls:       h.opt.calls,
			Warmup:      h.opt.warmup,
			Concurrency: h.opt.concurrency,
			ConcCalls:   h.opt.concCalls,
			Sallyport:   h.opt.sallyport,
			NodeModules: h.opt.nodeModules,
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
	diff := func(a, b float64) *float64 {
		if a == 0 || b == 0 {
			return nil
		}
		d := round(a-b, 1)
		return &d
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
	for name, p := range r.Paths {
		if p.Error != "" {
			return true
		}
		if name == pathSupergateway {
			continue
		}
		for _, s := range []*Summary{p.Sequential, p.Concurrent} {
			if s != nil && (s.Errors > 0 || s.Aborted) {
				return true
			}
		}
	}
	return false
}

func writeJSON(path string, r *Report) error {
	data, err := json.MarshalIndent(r, "", "  ")
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
	for _, g := range r.Goals {
		val := "not measured"
		if g.Value != nil {
			if g.Unit == "µs" {
				val = fmt.Sprintf("%+.1f µs", *g.Value)
			} else {
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
