package approvals

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sallyport/sallyport/gateway"
)

// decisionBuckets are the time-to-decision histogram's upper bounds, in
// seconds.
var decisionBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 14400, 86400}

type metrics struct {
	created atomic.Int64
	limited atomic.Int64

	mu       sync.Mutex
	counts   map[gateway.ApprovalState]int
	outcomes map[gateway.ApprovalState]int64
	buckets  []int64 // cumulative counts per decisionBuckets, by decision
	sum      float64
	n        int64
}

func (m *metrics) init() {
	m.counts = map[gateway.ApprovalState]int{}
	m.outcomes = map[gateway.ApprovalState]int64{}
	m.buckets = make([]int64, len(decisionBuckets))
}

// decided observes a pending item's decision (approved, denied, expired,
// cancelled) after d.
func (m *metrics) decided(to gateway.ApprovalState, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.outcomes[to]++
	sec := d.Seconds()
	for i, b := range decisionBuckets {
		if sec <= b {
			m.buckets[i]++
		}
	}
	m.sum += sec
	m.n++
}

// outcome counts a delivery outcome (executed, failed, ambiguous).
func (m *metrics) outcome(to gateway.ApprovalState) {
	switch to {
	case gateway.ApprovalExecuted, gateway.ApprovalFailed, gateway.ApprovalAmbiguous:
		m.mu.Lock()
		m.outcomes[to]++
		m.mu.Unlock()
	}
}

func (m *metrics) setCounts(c map[gateway.ApprovalState]int) {
	m.mu.Lock()
	m.counts = c
	m.mu.Unlock()
}

// Name implements gateway.Reporter.
func (s *Service) Name() string { return "approvals" }

// Status is the queue's state, for /readyz.
type Status struct {
	Pending     int    `json:"pending"`
	Subscribers int    `json:"subscribers"`
	StoreError  string `json:"store_error,omitempty"`
}

// Status implements gateway.Reporter. The queue is not ready while its
// store fails (calls that need approval are refused meanwhile).
func (s *Service) Status() (any, bool) {
	s.metrics.mu.Lock()
	st := Status{Pending: s.metrics.counts[gateway.ApprovalPending], Subscribers: s.hub.Len()}
	s.metrics.mu.Unlock()
	if e := s.storeErr.Load(); e != nil {
		st.StoreError = *e
	}
	return st, st.StoreError == ""
}

// WriteMetrics implements gateway.Reporter.
func (s *Service) WriteMetrics(w io.Writer) {
	m := &s.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintf(w, "# HELP sallyport_approvals_pending Calls waiting for a reviewer's decision.\n# TYPE sallyport_approvals_pending gauge\nsallyport_approvals_pending %d\n", m.counts[gateway.ApprovalPending])
	fmt.Fprintf(w, "# HELP sallyport_approvals_created_total Approval items created.\n# TYPE sallyport_approvals_created_total counter\nsallyport_approvals_created_total %d\n", m.created.Load())
	fmt.Fprintf(w, "# HELP sallyport_approvals_limited_total Calls refused because their principal had too many pending approvals.\n# TYPE sallyport_approvals_limited_total counter\nsallyport_approvals_limited_total %d\n", m.limited.Load())
	fmt.Fprintf(w, "# HELP sallyport_approvals_decisions_total Approval items by how they ended or were decided.\n# TYPE sallyport_approvals_decisions_total counter\n")
	for _, st := range gateway.ApprovalStates[1:] {
		fmt.Fprintf(w, "sallyport_approvals_decisions_total{outcome=%q} %d\n", st, m.outcomes[st])
	}
	fmt.Fprintf(w, "# HELP sallyport_approvals_decision_seconds Time from a call being held to its decision.\n# TYPE sallyport_approvals_decision_seconds histogram\n")
	for i, b := range decisionBuckets {
		fmt.Fprintf(w, "sallyport_approvals_decision_seconds_bucket{le=\"%g\"} %d\n", b, m.buckets[i])
	}
	fmt.Fprintf(w, "sallyport_approvals_decision_seconds_bucket{le=\"+Inf\"} %d\nsallyport_approvals_decision_seconds_sum %g\nsallyport_approvals_decision_seconds_count %d\n", m.n, m.sum, m.n)
	fmt.Fprintf(w, "# HELP sallyport_approvals_subscribers Live feed connections.\n# TYPE sallyport_approvals_subscribers gauge\nsallyport_approvals_subscribers %d\n", s.hub.Len())
}

var _ gateway.Reporter = (*Service)(nil)
