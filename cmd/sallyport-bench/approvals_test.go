package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/policy"
)

func TestApprovalGatewayConfigIsValid(t *testing.T) {
	spec := everythingBackend("/usr/bin/node", "/opt/a dir/with $dollar/node_modules")
	db, dir := "/tmp/a dir/with $dollar/approvals.db", "/tmp/a dir/policy"
	cfg, err := config.Parse(approvalGatewayConfig(43210, spec, db, dir, maxApprovalPending), "")
	if err != nil {
		t.Fatalf("the generated config does not parse: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("the generated config is invalid: %v", err)
	}
	a := cfg.Approvals
	if cfg.Auth.Anonymous || cfg.Database != db || !slices.Equal(cfg.Policy.Paths, []string{dir}) ||
		a.MaxPendingPerPrincipal != maxApprovalPending || a.Timeout.String() != approvalTimeout ||
		cfg.Backends[0].Isolation != isolationShared || cfg.Backends[0].Args[0] != spec.Args[0] {
		t.Errorf("config came back as %+v", cfg)
	}
	if d, _ := time.ParseDuration(approvalTimeout); d <= approvalLoadWait {
		t.Errorf("approvals.timeout %s does not outlast the pending load's bound %v: items could expire while measured", approvalTimeout, approvalLoadWait)
	}
}

func TestApprovalPolicy(t *testing.T) {
	for _, spec := range []backendSpec{
		everythingBackend("/usr/bin/node", "/opt/node_modules"),
		demoBackend("/usr/local/bin/sallyport", "/tmp/sandbox", "/tmp/outbox.jsonl"),
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "bench.rego"), []byte(approvalPolicy(spec.ID, spec.Tool)), 0o644); err != nil {
			t.Fatal(err)
		}
		st, err := policy.NewStage(t.Context(), policy.Options{Source: policy.Source{Paths: []string{dir}},
			Backends: []config.Backend{{ID: spec.ID, Transport: config.TransportStdio}}})
		if err != nil {
			t.Fatalf("the approval policy does not compile: %v", err)
		}
		for _, tc := range []struct {
			name, tool, tag string
			approval        bool
			mode            string
		}{
			{"a tagged call is held in hold mode", spec.Tool, "hold-00001", true, ""},
			{"a call tagged retry- is held in retry mode", spec.Tool, retryPrefix + "00001", true, gateway.ApprovalModeRetry},
			{"an untagged call is allowed without approval", spec.Tool, "", false, ""},
			{"a tagged call of another tool is allowed without approval", "other", "hold-00001", false, ""},
		} {
			t.Run(spec.ID+" / "+tc.name, func(t *testing.T) {
				args := map[string]any{}
				for k, v := range spec.Arguments {
					args[k] = v
				}
				if tc.tag != "" {
					args[benchIDKey] = tc.tag
				}
				raw, _ := json.Marshal(args)
				params, _ := json.Marshal(map[string]any{"name": spec.ID + "__" + tc.tool, "arguments": args})
				x := gateway.NewExchange(deliverNothing)
				x.Direction, x.Kind, x.Method = gateway.ClientToBackend, gateway.KindRequest, "tools/call"
				x.Message = &jsonrpc.Message{ID: json.RawMessage(`1`), Method: x.Method, Params: params}
				x.Principal = &gateway.Principal{ID: callerPrincipal, Groups: []string{"dev"}}
				x.Session = &gateway.SessionInfo{ID: "s1", Transport: "http"}
				x.Backend, x.Target, x.Arguments = spec.ID, tc.tool, raw
				if err := st.Handle(t.Context(), x, gateway.HandlerFunc(deliverNothing)); err != nil {
					t.Fatalf("the call is refused: %v", err)
				}
				d := x.Decision
				if d == nil || !d.Allow || (d.Approval != nil) != tc.approval {
					t.Fatalf("decision = %+v; want allowed, approval %v", d, tc.approval)
				}
				if tc.approval && d.Approval.Mode != tc.mode {
					t.Errorf("approval mode %q, want %q", d.Approval.Mode, tc.mode)
				}
			})
		}
	}
}

func TestBenchIDOf(t *testing.T) {
	for _, tc := range []struct{ args, want string }{
		{`{"bench_id":"retry-00042","message":"sallyport-bench"}`, "retry-00042"},
		{`{"message":"sallyport-bench"}`, ""},
		{`{"bench_id":7}`, ""},
		{`not json`, ""},
		{``, ""},
	} {
		if got := benchIDOf(tc.args); got != tc.want {
			t.Errorf("benchIDOf(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestFeedWatch(t *testing.T) {
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	w := newFeedWatch()
	a := w.expect("hold-1", 3, 2)
	t0 := time.Unix(1000, 0)
	w.arrived("unknown", 0, "apr_x", t0)
	if closed(a.first) || a.count() != 0 {
		t.Fatal("an item of another tag counted")
	}
	w.arrived("hold-1", 1, "apr_1", t0.Add(2*time.Millisecond))
	if !closed(a.first) || closed(a.all) {
		t.Fatal("after one of two reviewers: want first closed, all open")
	}
	w.arrived("hold-1", 1, "apr_1", t0.Add(9*time.Millisecond)) // pushed again
	w.arrived("hold-1", 7, "apr_1", t0)                         // no such reviewer
	if closed(a.all) || a.count() != 1 {
		t.Fatalf("a repeated push or an unknown reviewer counted: %d", a.count())
	}
	w.arrived("hold-1", 0, "apr_1", t0.Add(time.Millisecond))
	if !closed(a.all) {
		t.Fatal("after two of two reviewers: want all closed")
	}
	id, at := w.read(a)
	if id != "apr_1" || !at[1].Equal(t0.Add(2*time.Millisecond)) || countArrived(at) != 2 {
		t.Errorf("read = %s %v; want apr_1 with the first arrival kept", id, at)
	}
	if first, last := span(at); !first.Equal(t0.Add(time.Millisecond)) || !last.Equal(t0.Add(2*time.Millisecond)) {
		t.Errorf("span = %v, %v", first, last)
	}
	w.forget("hold-1")
	w.arrived("hold-1", 2, "apr_1", t0)
	if _, at := w.read(a); countArrived(at) != 2 {
		t.Error("a forgotten tag still counts arrivals")
	}
}

func TestMeasurePairs(t *testing.T) {
	t.Run("the calls alternate, a then b, then b then a, and each pair counts once", func(t *testing.T) {
		var order []string
		a := func(context.Context) error { order = append(order, "a"); return nil }
		b := func(context.Context) error { order = append(order, "b"); return nil }
		res, err := measurePairs(t.Context(), a, b, 1, 4, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if want := "a b a b b a a b b a"; strings.Join(order, " ") != want {
			t.Errorf("order %v, want %s (the warm-up pair first)", order, want)
		}
		if res.pairs != 4 || res.without.Calls != 4 || res.with.Calls != 4 {
			t.Errorf("pairs %d, calls %d and %d; want 4 each", res.pairs, res.without.Calls, res.with.Calls)
		}
	})
	t.Run("a pair with a policy deadline is left out and counted as a timeout", func(t *testing.T) {
		n := 0
		a := func(context.Context) error { return nil }
		b := func(context.Context) error {
			if n++; n == 3 {
				return fmt.Errorf("request: %w", errPolicyDeadline)
			}
			return nil
		}
		res, err := measurePairs(t.Context(), a, b, 0, 5, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if res.pairs != 4 || res.with.Timeouts != 1 || res.without.Timeouts != 1 || res.with.FirstTimeout == "" {
			t.Errorf("pairs %d, timeouts %d/%d; want 4 pairs and 1 timeout", res.pairs, res.without.Timeouts, res.with.Timeouts)
		}
	})
	t.Run("any other error ends the measurement and names the side", func(t *testing.T) {
		boom := errors.New("boom")
		n := 0
		a := func(context.Context) error { return nil }
		b := func(context.Context) error {
			if n++; n == 2 {
				return boom
			}
			return nil
		}
		res, err := measurePairs(t.Context(), a, b, 0, 5, time.Second)
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "with the approval stage") {
			t.Fatalf("err = %v; want boom, with the approval stage named", err)
		}
		if res.pairs != 1 || !res.with.Aborted {
			t.Errorf("pairs %d, aborted %v; want 1 and aborted", res.pairs, res.with.Aborted)
		}
	})
}

// TestApprovalStageRigs runs the in-process pair: both pipelines pass the
// call, and only the one with the stage has it.
func TestApprovalStageRigs(t *testing.T) {
	q, stop, err := newApprovalService(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	without, with, err := newApprovalStageRigs(t.Context(), q, defaultPolicyStageTimeout)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*stageRig{without, with} {
		if err := r.call(t.Context()); err != nil {
			t.Fatalf("a call that needs no approval: %v", err)
		}
	}
	if without.principal != with.principal || &without.sessions[0] != &with.sessions[0] {
		t.Error("the two rigs call as different principals or sessions: they would differ in more than the stage")
	}
}

func TestApprovalReport(t *testing.T) {
	sum := func(p50US float64) *Summary {
		return &Summary{Calls: 10, P50US: p50US, P90US: p50US, P99US: 2 * p50US, MaxUS: 3 * p50US, MeanUS: p50US}
	}
	full := &ApprovalReport{
		Stage: &ApprovalStageResult{Pairs: 10, Without: sum(40), With: sum(40.5), PairedMedianNS: 20},
		Feed:  &ApprovalFeedResult{Item: sum(3000), Plain: sum(1500)},
		Pending: &ApprovalPendingResult{Items: 1000, Reviewers: 10, Workers: 8, PushItems: 2, Push: sum(30000), PushLast: sum(31000),
			RSSIdleKB: 30000, RSSBeforeKB: 32000, RSSAfterKB: 36000, RSSEndKB: 37000, HWMAfterKB: 36500,
			Snapshot: &SnapshotResult{Connects: 5, Items: 1000, Bytes: 1 << 20, P50MS: 60, MaxMS: 80}},
	}
	full.compute()
	x := full.Ratios
	for name, tc := range map[string]struct {
		got  *float64
		want float64
	}{
		"stage added p50":        {x.StageAddedP50US, 0.5},
		"feed p50 ms":            {x.FeedP50MS, 3},
		"feed over plain":        {x.FeedOverPlainP50, 2},
		"push over feed":         {x.PushOverFeedP50, 10},
		"rss added":              {x.RSSAddedKB, 4000},
		"rss per item (bytes)":   {x.RSSPerItemBytes, 4096},
		"snapshot over feed p50": {x.SnapshotOverFeed, 20},
	} {
		if tc.got == nil || *tc.got != tc.want {
			t.Errorf("%s = %v, want %v", name, fmtNum(tc.got, "%g"), tc.want)
		}
	}
	var status []string
	for _, g := range full.Goals {
		status = append(status, g.Status)
	}
	if want := []string{"PASS", "PASS", "MISS"}; !slices.Equal(status, want) {
		t.Errorf("goals %v, want %v (push at 30 ms misses 20 ms)", status, want)
	}
	if full.failed() {
		t.Error("a report without errors failed")
	}

	broken := &ApprovalReport{Feed: &ApprovalFeedResult{Error: "no item on the feed", Item: &Summary{Aborted: true}}}
	broken.compute()
	if !broken.failed() {
		t.Error("a feed measurement that failed does not fail the report")
	}
	for _, g := range broken.Goals {
		if g.Status != "N/A" {
			t.Errorf("goal %q is %s without a measurement", g.Goal, g.Status)
		}
	}
	if !(&ApprovalReport{Error: "sallyport serve did not start"}).failed() ||
		!(&ApprovalReport{Pending: &ApprovalPendingResult{Error: "snapshot"}}).failed() ||
		!(&ApprovalReport{Stage: &ApprovalStageResult{With: &Summary{Errors: 1, Calls: 1}}}).failed() {
		t.Error("an approval measurement's error does not fail the report")
	}

	for _, r := range []*ApprovalReport{full, broken, {}} {
		var out bytes.Buffer
		printApprovals(&out, r)
		if !strings.Contains(out.String(), "approval goals") {
			t.Errorf("the section lacks its goals:\n%s", out.String())
		}
	}
}

func TestParseApprovalOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"--paths none measures no path", []string{"--paths", "none"}, true},
		{"--paths empty is refused", []string{"--paths", ""}, false},
		{"the approval measurements can be skipped", []string{"--approval-stage-calls", "0", "--approval-calls", "0"}, true},
		{"negative approval calls are refused", []string{"--approval-calls", "-1"}, false},
		{"the pending and pushed items must fit the per-principal cap", []string{"--approval-pending", "9990", "--approval-push-items", "20"}, false},
		{"no reviewer is refused", []string{"--approval-reviewers", "0"}, false},
		{"no reviewer is fine without the pending load", []string{"--approval-reviewers", "0", "--approval-pending", "0"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt, err := parseOptions(tc.args, io.Discard)
			if (err == nil) != tc.ok {
				t.Fatalf("parseOptions(%q) = %v; want ok %v", tc.args, err, tc.ok)
			}
			if err == nil && slices.Contains(tc.args, "none") && len(opt.paths) != 0 {
				t.Errorf("--paths none gave paths %q", opt.paths)
			}
		})
	}
}
