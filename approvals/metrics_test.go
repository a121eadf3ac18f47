package approvals

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/gateway"
)

// metricLine is a sample line of the Prometheus text format.
var metricLine = regexp.MustCompile(`^[a-z_]+(\{[a-z]+="[^"]*"\})? [0-9.e+-]+$`)

func metricsText(t *testing.T, s *Service) string {
	t.Helper()
	var b bytes.Buffer
	s.WriteMetrics(&b)
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if !strings.HasPrefix(l, "# ") && !metricLine.MatchString(l) {
			t.Errorf("not a metric line: %q", l)
		}
	}
	return b.String()
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noRun: true, opts: Options{MaxPending: 1}})
	ctx := context.Background()

	it := e.pendingItem(deleteCall())
	e.svc.refreshCounts(ctx)
	text := metricsText(t, e.svc)
	contains(t, "the metrics", text,
		"# TYPE sallyport_approvals_pending gauge\nsallyport_approvals_pending 1\n",
		"sallyport_approvals_created_total 1\n",
		"sallyport_approvals_decision_seconds_count 0\n",
		"sallyport_approvals_subscribers 0\n")
	if st, ready := e.svc.Status(); !ready || st.(Status).Pending != 1 {
		t.Errorf("status %+v, ready %v; want 1 pending and ready", st, ready)
	}

	// The cap refuses a second call of alice's.
	_, err := e.send(deleteCall().with(func(c *call) { c.args = `{"repo":"acme/second"}` }))
	wantCode(t, err, gateway.CodeApprovalUnavailable)

	e.decide(it.ID, rita, true, "")
	e.svc.refreshCounts(ctx)
	text = metricsText(t, e.svc)
	contains(t, "the metrics after a decision", text,
		"sallyport_approvals_pending 0\n",
		"sallyport_approvals_limited_total 1\n",
		`sallyport_approvals_decisions_total{outcome="approved"} 1`+"\n",
		`sallyport_approvals_decisions_total{outcome="denied"} 0`+"\n",
		"# TYPE sallyport_approvals_decision_seconds histogram\n",
		`sallyport_approvals_decision_seconds_bucket{le="86400"} 1`+"\n",
		`sallyport_approvals_decision_seconds_bucket{le="+Inf"} 1`+"\n",
		"sallyport_approvals_decision_seconds_count 1\n",
		"sallyport_approvals_decision_seconds_sum ")
	if strings.Contains(text, `outcome="pending"`) {
		t.Error("pending is counted as a decision")
	}

	t.Run("a delivery outcome is counted, not timed as a decision", func(t *testing.T) {
		x, err := e.send(deleteCall().with(func(c *call) { c.approval.Mode = gateway.ApprovalModeRetry }))
		if err != nil || x.Grant == nil || x.Grant.ID != it.ID {
			t.Fatalf("the retry: %v, grant %+v", err, x.Grant)
		}
		e.waitState(it.ID, gateway.ApprovalExecuted)
		text := metricsText(t, e.svc)
		contains(t, "the metrics", text, `sallyport_approvals_decisions_total{outcome="executed"} 1`+"\n",
			"sallyport_approvals_decision_seconds_count 1\n")
	})

	t.Run("a failing store makes the queue not ready", func(t *testing.T) {
		e.db.Close()
		e.svc.refreshCounts(ctx)
		st, ready := e.svc.Status()
		if ready || st.(Status).StoreError == "" {
			t.Errorf("status %+v, ready %v; want not ready with the store's error", st, ready)
		}
	})
}
