package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/sqlite"
	"github.com/sallyport/sallyport/policy"
)

func TestStageRig(t *testing.T) {
	for _, v := range stageVariants {
		t.Run(fmt.Sprintf("variant %s writes two rows a call and a chain that verifies", v.name), func(t *testing.T) {
			ctx := t.Context()
			rig, err := v.build(ctx, t.TempDir(), rigOptions{policyTimeout: defaultPolicyStageTimeout})
			if err != nil {
				t.Fatal(err)
			}
			defer rig.close()
			s, rows, err := runWorkload(ctx, rig.path, []caller{rig.call, rig.call, rig.call}, 2, 30, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if s.Calls != 30 || s.Errors != 0 {
				t.Fatalf("workload = %+v", s)
			}
			if v.sync == "" {
				if rig.path != "" || rows != nil {
					t.Fatalf("the pipeline without audit has a database %q or counted rows %+v", rig.path, rows)
				}
				return
			}
			// Result rows are queued, not waited for: the warm-up's last
			// and the workload's last may still be on their way when the
			// rows are counted (before and after).
			if rows == nil || rows.Rows < 60-3 || rows.Rows > 60+3 {
				t.Fatalf("rows = %+v, want 60 rows, 2 per call, give or take the 3 workers' last results", rows)
			}
			if err := rig.db.Audit().Flush(ctx); err != nil {
				t.Fatal(err)
			}
			rep, err := audit.VerifyLog(ctx, rig.db.Audit(), nil, 0)
			if err != nil || !rep.OK() || rep.Rows != 72 { // 3×2 warm-up calls too
				t.Fatalf("verify = %+v, %v; want 72 rows, chain intact", rep, err)
			}
			// Every result row points at a request row of its own.
			var requests, results int
			reqSeqs, answered := map[int64]bool{}, map[int64]bool{}
			err = rig.db.Audit().Scan(ctx, gateway.AuditFilter{}, func(r *gateway.AuditRecord) error {
				switch r.Kind {
				case gateway.KindRequest.String():
					requests++
					reqSeqs[r.Seq] = true
					if r.Arguments != string(stageArgs) || r.Target != "echo" || r.Principal != "bench" {
						return fmt.Errorf("request row %d: %+v", r.Seq, r)
					}
				case gateway.KindResult.String():
					results++
					if !reqSeqs[r.Ref] || answered[r.Ref] || r.Outcome != gateway.OutcomeOK {
						return fmt.Errorf("result row %d: ref %d, outcome %q", r.Seq, r.Ref, r.Outcome)
					}
					answered[r.Ref] = true
				}
				return nil
			})
			if err != nil || requests != 36 || results != 36 {
				t.Fatalf("scan: %v; %d requests and %d results, want 36 each", err, requests, results)
			}
		})
	}
}

func TestFillAuditLog(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.db")
	key := []byte(benchAuditKey)
	if _, err := fillAuditLog(ctx, path, 2*fillBatch+10, key); err != nil {
		t.Fatal(err)
	}
	n, err := countRows(ctx, path)
	if err != nil || n != 2*fillBatch+10 {
		t.Fatalf("countRows = %d, %v; want %d", n, err, 2*fillBatch+10)
	}
	db, err := sqlite.Open(ctx, path, sqlite.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rep, err := audit.VerifyLog(ctx, db.Audit(), key, 0)
	if err != nil || !rep.OK() || rep.Rows != n || rep.Checkpoints != n/1000 {
		t.Fatalf("verify = %+v, %v; want %d rows and %d checkpoints", rep, err, n, n/1000)
	}
}

func TestAuditCommandOutput(t *testing.T) {
	for _, tc := range []struct {
		name string
		re   string
		out  string
		want string
	}{
		{"export names the rows it wrote", "export", "sallyport: exported 500000 rows\n", "500000"},
		{"verify names the rows it checked", "verify", "OK /tmp/x.db: 1234 rows, 1 to 1234, chain intact\n  no key given: …\n", "1234"},
		{"a failed verify does not match", "verify", "FAIL /tmp/x.db: row 3 …\n  rows 1 to 2 before it fit the chain\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			re := exportedRE
			if tc.re == "verify" {
				re = verifiedRE
			}
			m := re.FindStringSubmatch(tc.out)
			got := ""
			if m != nil {
				got = m[1]
			}
			if got != tc.want {
				t.Errorf("%s on %q = %q, want %q", tc.re, tc.out, got, tc.want)
			}
		})
	}
}

func TestAuditGoals(t *testing.T) {
	seq := func(p50, rate float64) *Summary {
		return &Summary{Calls: 10, P50US: p50, CallsPerSec: rate, WallSeconds: 1}
	}
	r := &Report{
		Config: RunConfig{Concurrency: 32},
		Paths: map[string]*PathResult{
			pathDirect:          {Sequential: seq(150, 5000), Concurrent: seq(1500, 12000)},
			pathSallyport:       {Sequential: seq(800, 1000), Concurrent: seq(6000, 4000), AuditConcurrent: &AuditRows{Rows: 8000, RowsPerSec: 8000, RowsPerCall: 2}},
			pathSallyportNormal: {Sequential: seq(600, 1500), Concurrent: seq(5500, 4400), AuditConcurrent: &AuditRows{Rows: 8800, RowsPerSec: 8800, RowsPerCall: 2}},
		},
		Audit: &AuditReport{
			Stage: map[string]*StageResult{
				stageNone:           {Sequential: seq(0.6, 300000), Concurrent: seq(0.5, 400000)},
				stageFull:           {Sequential: seq(280.6, 3000), Concurrent: seq(1300, 20000), RowsConcurrent: &AuditRows{RowsPerSec: 40000}},
				stageNormal:         {Sequential: seq(40.6, 10000), Concurrent: seq(700, 25000), RowsConcurrent: &AuditRows{RowsPerSec: 50000}},
				stagePolicyDefault:  {Sequential: seq(30.6, 30000), Concurrent: seq(60, 50000)},
				stagePolicyExamples: {Sequential: seq(60.6, 15000), Concurrent: seq(120, 30000)},
				stageDLP:            {Sequential: seq(15.6, 60000), Concurrent: seq(20, 90000)},
			},
			Store: &StoreResult{
				ExportJSONL: &CommandResult{RowsPerSec: 250000},
				ExportCSV:   &CommandResult{RowsPerSec: 150000},
				Verify:      &CommandResult{Error: "exit status 1"},
			},
		},
	}
	r.compute()
	x := r.Audit.Ratios
	for _, c := range []struct {
		name string
		got  *float64
		want float64
	}{
		{"full − direct, sequential", x.FullMinusDirectP50SeqUS, 650},
		{"normal − direct, concurrent", x.NormalMinusDirectP50ConcUS, 4000},
		{"full − normal, sequential", x.FullMinusNormalP50SeqUS, 200},
		{"full / normal calls/s", x.FullOverNormalRateConc, 0.909},
		{"stage full added p50", x.StageFullAddedP50US, 280},
		{"stage normal added p50", x.StageNormalAddedP50US, 40},
		{"stage full rows/s", x.StageFullRowsPerSec, 40000},
		{"policy default added p50", x.PolicyDefaultAddedP50US, 30},
		{"policy examples added p50", x.PolicyExamplesAddedP50US, 60},
		{"dlp added p50", x.DLPAddedP50US, 15},
	} {
		if c.got == nil || *c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if x.VerifyRowsPerSec != nil {
		t.Errorf("a failed verify has a rate: %v", *x.VerifyRowsPerSec)
	}
	want := []string{"PASS", "PASS", "MISS", "MISS", "MISS", "PASS", "PASS", "MISS", "PASS", "PASS", "MISS", "N/A"}
	if len(r.Audit.Goals) != len(want) {
		t.Fatalf("%d goals, want %d", len(r.Audit.Goals), len(want))
	}
	for i, g := range r.Audit.Goals {
		if g.Status != want[i] {
			t.Errorf("goal %q (%s) = %s, want %s", g.Goal, g.Workload, g.Status, want[i])
		}
	}
	if !r.failed() {
		t.Error("a failed verify does not fail the run")
	}
	var out strings.Builder
	printReport(&out, r)
	for _, s := range []string{"audit log (", "audit ratios, measured in this run:", "audit goals", "FAILED: exit status 1"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("the report lacks %q:\n%s", s, out.String())
		}
	}
}

func TestPolicyDeadline(t *testing.T) {
	examples := policy.Source{Paths: []string{filepath.Join(repoRoot(), "examples", "policies")}}
	write := func(name, rego string) policy.Source {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte("package sallyport\n\n"+rego+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return policy.Source{Paths: []string{path}}
	}
	bad := write("bad.rego", `decision := {"allow": "yes"}`)
	// Four million steps: far more than a millisecond.
	slow := write("slow.rego", `decision := {"allow": n > 0} if {
	n := count([1 | some i in numbers.range(1, 2000); some j in numbers.range(1, 2000); i != j])
}`)
	for _, tc := range []struct {
		name      string
		src       policy.Source
		timeout   time.Duration
		anonymous bool
		deadline  bool // the call fails with errPolicyDeadline
		fails     bool // the call fails otherwise
	}{
		{"an evaluation past its deadline is a timeout", slow, time.Millisecond, false, true, false},
		{"the default policy allows the call", policy.Source{}, defaultPolicyStageTimeout, false, false, false},
		{"a policy error is an error, not a timeout", bad, defaultPolicyStageTimeout, false, false, true},
		{"a denial is an error, not a timeout", examples, defaultPolicyStageTimeout, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig, err := newPolicyRig(t.Context(), tc.src, tc.timeout)
			if err != nil {
				t.Fatal(err)
			}
			if tc.anonymous {
				rig.principal = &gateway.Principal{ID: "anonymous", Anonymous: true}
			}
			err = rig.call(t.Context())
			switch {
			case errors.Is(err, errPolicyDeadline) != tc.deadline:
				t.Fatalf("call = %v; errPolicyDeadline: %v, want %v", err, errors.Is(err, errPolicyDeadline), tc.deadline)
			case (err != nil && !tc.deadline) != tc.fails:
				t.Fatalf("call = %v, want failure %v", err, tc.fails)
			}
		})
	}
}

func TestMeasureTimeouts(t *testing.T) {
	timeout := fmt.Errorf("request: %w: denied by policy", errPolicyDeadline)
	every := func(n int64, err error) caller {
		var i atomic.Int64
		return func(context.Context) error {
			if i.Add(1)%n == 0 {
				return err
			}
			return nil
		}
	}
	t.Run("timeouts are counted apart from errors and do not fail the workload", func(t *testing.T) {
		s := measure(t.Context(), []caller{every(4, timeout)}, 100, time.Second)
		if s.Calls != 75 || s.Timeouts != 25 || s.Errors != 0 || s.Aborted || s.failed() || s.FirstTimeout == "" || s.FirstError != "" {
			t.Fatalf("summary = %+v", s)
		}
	})
	t.Run("any other error fails the workload", func(t *testing.T) {
		s := measure(t.Context(), []caller{every(50, errors.New("denied by policy: policy decision is undefined"))}, 100, time.Second)
		if s.Calls != 98 || s.Errors != 2 || s.Timeouts != 0 || !s.failed() {
			t.Fatalf("summary = %+v", s)
		}
	})
	t.Run("a workload that mostly times out stops early and fails", func(t *testing.T) {
		s := measure(t.Context(), []caller{func(context.Context) error { return timeout }}, 10*errLimit, time.Second)
		if !s.Aborted || s.Timeouts != errLimit || !s.failed() {
			t.Fatalf("summary = %+v", s)
		}
	})
	t.Run("warm-up does not fail on a timeout", func(t *testing.T) {
		if err := warmUp(t.Context(), []caller{every(2, timeout)}, 4, time.Second); err != nil {
			t.Fatal(err)
		}
	})
}
