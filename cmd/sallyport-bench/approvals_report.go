package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Goals of the approval queue's issue. Informational, as all goals.
const (
	goalApprovalStageAddedUS = 2.0  // p50 the approval stage adds to a call that needs no approval
	goalApprovalFeedP50MS    = 20.0 // p50 from a call entering the gateway to its item on a reviewer's feed
	unitMillis               = "ms"
)

// ApprovalReport holds the approval queue's measurements.
type ApprovalReport struct {
	Stage *ApprovalStageResult `json:"stage,omitempty"`
	// Gateway describes the sallyport serve the feed and pending
	// measurements ran on.
	Gateway string                 `json:"gateway,omitempty"`
	Feed    *ApprovalFeedResult    `json:"feed,omitempty"`
	Pending *ApprovalPendingResult `json:"pending,omitempty"`
	Ratios  ApprovalRatios         `json:"ratios"`
	Goals   []Goal                 `json:"goals"`
	// Error is set when the gateway could not be set up.
	Error string `json:"error,omitempty"`
}

// ApprovalStageResult is the pipeline with and without the approval stage,
// on calls that need no approval, measured in interleaved pairs. A call is
// a tools/call request and its result.
type ApprovalStageResult struct {
	Pipeline string   `json:"pipeline"`
	Pairs    int      `json:"pairs"`
	Without  *Summary `json:"without,omitempty"`
	With     *Summary `json:"with,omitempty"`
	// The median and mean of (with − without) within each pair.
	PairedMedianNS float64 `json:"paired_difference_median_ns"`
	PairedMeanNS   float64 `json:"paired_difference_mean_ns"`
	Error          string  `json:"error,omitempty"`
}

// ApprovalFeedResult is held calls through sallyport serve, one at a time,
// each timed from sending the tools/call to its item (state pending) on a
// reviewer's live feed; Plain is the call that needs no approval made
// before each, through the same gateway and session.
type ApprovalFeedResult struct {
	Item    *Summary `json:"send_to_item,omitempty"`
	Plain   *Summary `json:"plain_call,omitempty"`
	Seconds float64  `json:"seconds"`
	Error   string   `json:"error,omitempty"`
}

// ApprovalPendingResult is the pending load: Items pending items in retry
// mode with Reviewers feeds connected.
type ApprovalPendingResult struct {
	Items     int `json:"items"`
	Reviewers int `json:"reviewers"`
	Workers   int `json:"clients"`
	// Creating the items: the time it took until every reviewer had every
	// item, and each item's time from sending to the first reviewer.
	CreateSeconds float64  `json:"create_seconds"`
	ItemsPerSec   float64  `json:"items_per_sec"`
	Create        *Summary `json:"create_send_to_first_reviewer,omitempty"`
	// The gateway process's VmRSS: idle (no feed, no client session of
	// this measurement, no item pending), before the items (the reviewers'
	// feeds and the clients' sessions open), after them (the items
	// pending, every reviewer having received every one), and at the end;
	// VmHWM after the items. VmRSS includes the Go heap's garbage not yet
	// collected: the growth is an upper bound on what the items hold.
	RSSIdleKB   int64           `json:"gateway_vmrss_kb_idle"`
	RSSBeforeKB int64           `json:"gateway_vmrss_kb_before"`
	RSSAfterKB  int64           `json:"gateway_vmrss_kb_after"`
	RSSEndKB    int64           `json:"gateway_vmrss_kb_end"`
	HWMAfterKB  int64           `json:"gateway_vmhwm_kb_after"`
	Snapshot    *SnapshotResult `json:"snapshot,omitempty"`
	// Pushing PushItems more items, one at a time: Push is every
	// reviewer's arrival time minus the call's send time, PushLast the
	// last reviewer's, per item.
	PushItems int      `json:"push_items"`
	Push      *Summary `json:"push,omitempty"`
	PushLast  *Summary `json:"push_last_reviewer,omitempty"`
	Error     string   `json:"error,omitempty"`
}

// SnapshotResult is a newly connecting reviewer's snapshot: from dialling
// to the snapshot message read whole.
type SnapshotResult struct {
	Connects int     `json:"connects"`
	Items    int     `json:"items"`
	Bytes    int     `json:"bytes"`
	P50MS    float64 `json:"p50_ms"`
	MaxMS    float64 `json:"max_ms"`
}

// ApprovalRatios compare each approval figure with its baseline in the
// same run.
type ApprovalRatios struct {
	// The stage: with − without, and with / without (p50, sequential).
	StageAddedP50US *float64 `json:"stage_with_minus_without_p50_us"`
	StageP50Ratio   *float64 `json:"stage_with_over_without_p50"`
	// Send to item on the feed, and over the call that needs no approval.
	FeedP50MS          *float64 `json:"feed_send_to_item_p50_ms"`
	FeedP99MS          *float64 `json:"feed_send_to_item_p99_ms"`
	FeedOverPlainP50   *float64 `json:"feed_send_to_item_over_plain_call_p50"`
	PushP50MS          *float64 `json:"pending_push_p50_ms"`
	PushP99MS          *float64 `json:"pending_push_p99_ms"`
	PushOverFeedP50    *float64 `json:"pending_push_over_feed_p50"`
	RSSAddedKB         *float64 `json:"pending_vmrss_added_kb"`
	RSSPerItemBytes    *float64 `json:"pending_vmrss_bytes_per_item"`
	RSSAfterOverBefore *float64 `json:"pending_vmrss_after_over_before"`
	SnapshotP50MS      *float64 `json:"pending_snapshot_p50_ms"`
	SnapshotOverFeed   *float64 `json:"pending_snapshot_over_feed_p50"`
}

// measured returns s when it measured calls without errors, else nil.
func measured(s *Summary) *Summary {
	if s == nil || s.Calls == 0 || s.Errors > 0 || s.Aborted {
		return nil
	}
	return s
}

// compute fills in the ratios and the goals.
func (a *ApprovalReport) compute() {
	var x ApprovalRatios
	var stageWorkload string
	if st := a.Stage; st != nil && st.Error == "" {
		if wo, w := measured(st.Without), measured(st.With); wo != nil && w != nil {
			x.StageAddedP50US = diff(w.P50US, wo.P50US)
			x.StageP50Ratio = ratio(w.P50US, wo.P50US)
		}
		stageWorkload = fmt.Sprintf("in process, sequential, %d interleaved pairs, default policy", st.Pairs)
	}
	var feedP50 float64
	if f := a.Feed; f != nil && f.Error == "" {
		if it := measured(f.Item); it != nil {
			feedP50 = it.P50US
			x.FeedP50MS = value(round(it.P50US/1000, 2))
			x.FeedP99MS = value(round(it.P99US/1000, 2))
			if pl := measured(f.Plain); pl != nil {
				x.FeedOverPlainP50 = ratio(it.P50US, pl.P50US)
			}
		}
	}
	var pendingWorkload string
	if p := a.Pending; p != nil && p.Error == "" {
		if ps := measured(p.Push); ps != nil {
			x.PushP50MS = value(round(ps.P50US/1000, 2))
			x.PushP99MS = value(round(ps.P99US/1000, 2))
			x.PushOverFeedP50 = ratio(ps.P50US, feedP50)
		}
		if p.RSSBeforeKB > 0 && p.RSSAfterKB > 0 {
			added := float64(p.RSSAfterKB - p.RSSBeforeKB)
			x.RSSAddedKB = &added
			perItem := round(added*1024/float64(p.Items), 0)
			x.RSSPerItemBytes = &perItem
			x.RSSAfterOverBefore = ratio(float64(p.RSSAfterKB), float64(p.RSSBeforeKB))
		}
		if s := p.Snapshot; s != nil {
			x.SnapshotP50MS = value(s.P50MS)
			x.SnapshotOverFeed = ratio(s.P50MS*1000, feedP50)
		}
		pendingWorkload = fmt.Sprintf("through sallyport serve, %d pending, every one of %d reviewers", p.Items, p.Reviewers)
	}
	a.Ratios = x
	atMost := func(max float64) func(float64) bool { return func(v float64) bool { return v <= max } }
	feedGoal := fmt.Sprintf("call to its item on a reviewer's live feed, p50 at most %.0f ms", goalApprovalFeedP50MS)
	a.Goals = []Goal{
		goal(fmt.Sprintf("p50 the approval stage adds to a call that needs no approval at most %.0f µs", goalApprovalStageAddedUS),
			nonEmpty(stageWorkload, "in process"), x.StageAddedP50US, unitMicros, atMost(goalApprovalStageAddedUS)),
		goal(feedGoal, "through sallyport serve, sequential, one reviewer", x.FeedP50MS, unitMillis, atMost(goalApprovalFeedP50MS)),
		goal(feedGoal, nonEmpty(pendingWorkload, "through sallyport serve, pending load"), x.PushP50MS, unitMillis, atMost(goalApprovalFeedP50MS)),
	}
}

func nonEmpty(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

// failed reports whether an approval measurement could not be made.
func (a *ApprovalReport) failed() bool {
	if a.Error != "" {
		return true
	}
	if st := a.Stage; st != nil && (st.Error != "" || st.Without.failed() || st.With.failed()) {
		return true
	}
	if f := a.Feed; f != nil && (f.Error != "" || f.Item.failed() || f.Plain.failed()) {
		return true
	}
	if p := a.Pending; p != nil && p.Error != "" {
		return true
	}
	return false
}

// printApprovals writes the approval section.
func printApprovals(w io.Writer, a *ApprovalReport) {
	fmt.Fprintln(w, "\napproval queue:")
	if a.Error != "" {
		fmt.Fprintf(w, "  FAILED: %s\n", firstLine(a.Error))
	}
	if st := a.Stage; st != nil {
		fmt.Fprintf(w, "  in process, on calls that need no approval (%d pairs, one call of each in turn): %s\n", st.Pairs, st.Pipeline)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "    pipeline\tp50 µs\tp90 µs\tp99 µs\tmean µs\tcalls/s\ttimeouts\t")
		for _, row := range []struct {
			name string
			s    *Summary
		}{{"without the stage", st.Without}, {"with the stage", st.With}} {
			if row.s == nil || row.s.Calls == 0 {
				fmt.Fprintf(tw, "    %s\t-\t-\t-\t-\t-\t-\t\n", row.name)
				continue
			}
			fmt.Fprintf(tw, "    %s\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%d\t\n", row.name, row.s.P50US, row.s.P90US, row.s.P99US, row.s.MeanUS, row.s.CallsPerSec, row.s.Timeouts)
		}
		tw.Flush()
		if st.Pairs > 0 {
			fmt.Fprintf(w, "    with − without within each pair: median %+.0f ns, mean %+.0f ns\n", st.PairedMedianNS, st.PairedMeanNS)
		}
		if st.Error != "" {
			fmt.Fprintf(w, "    FAILED: %s\n", firstLine(st.Error))
		}
	}
	if a.Gateway != "" {
		fmt.Fprintf(w, "  through %s\n", a.Gateway)
	}
	ms := func(us float64) string { return fmt.Sprintf("%.2f ms", us/1000) }
	if f := a.Feed; f != nil {
		fmt.Fprintln(w, "  send → item on one reviewer's live feed (held calls one at a time, each denied over the API once its item arrived):")
		if s := f.Item; s != nil && s.Calls > 0 {
			fmt.Fprintf(w, "    %d calls: p50 %s, p90 %s, p99 %s, max %s\n", s.Calls, ms(s.P50US), ms(s.P90US), ms(s.P99US), ms(s.MaxUS))
		}
		if s := f.Plain; s != nil && s.Calls > 0 {
			fmt.Fprintf(w, "    baseline, a call that needs no approval through the same gateway: p50 %s, p99 %s\n", ms(s.P50US), ms(s.P99US))
		}
		if f.Error != "" {
			fmt.Fprintf(w, "    FAILED: %s\n", firstLine(f.Error))
		}
	}
	if p := a.Pending; p != nil {
		fmt.Fprintf(w, "  %d pending items (retry mode, from %d clients) with %d reviewers' live feeds connected:\n", p.Items, p.Workers, p.Reviewers)
		if p.CreateSeconds > 0 {
			fmt.Fprintf(w, "    created in %.2f s (%.0f items/s, until every reviewer had every item)", p.CreateSeconds, p.ItemsPerSec)
			if s := p.Create; s != nil && s.Calls > 0 {
				fmt.Fprintf(w, "; send → first reviewer p50 %s, p99 %s", ms(s.P50US), ms(s.P99US))
			}
			fmt.Fprintln(w)
		}
		if p.RSSAfterKB > 0 {
			fmt.Fprintf(w, "    gateway VmRSS: %s idle, %s before the items (feeds and sessions open), %s after (VmHWM %s), %s at the end; it counts garbage not yet collected\n",
				mib(p.RSSIdleKB), mib(p.RSSBeforeKB), mib(p.RSSAfterKB), mib(p.HWMAfterKB), mib(p.RSSEndKB))
		}
		if s := p.Snapshot; s != nil {
			fmt.Fprintf(w, "    a new reviewer's snapshot: %d items, %.1f KiB; dial to snapshot read p50 %.2f ms, max %.2f ms (%d connects)\n",
				s.Items, float64(s.Bytes)/1024, s.P50MS, s.MaxMS, s.Connects)
		}
		if s := p.Push; s != nil && s.Calls > 0 {
			fmt.Fprintf(w, "    %d more items, one at a time, send → each reviewer: p50 %s, p90 %s, p99 %s, max %s", p.PushItems, ms(s.P50US), ms(s.P90US), ms(s.P99US), ms(s.MaxUS))
			if l := p.PushLast; l != nil && l.Calls > 0 {
				fmt.Fprintf(w, "; → the last reviewer p50 %s", ms(l.P50US))
			}
			fmt.Fprintln(w)
		}
		if p.Error != "" {
			fmt.Fprintf(w, "    FAILED: %s\n", firstLine(p.Error))
		}
	}

	x := a.Ratios
	fmt.Fprintln(w, "\napproval ratios, measured in this run:")
	fmt.Fprintf(w, "  in process, with the stage − without, p50:  %s (with / without %s)\n", fmtNum(x.StageAddedP50US, "%+.1f µs"), fmtNum(x.StageP50Ratio, "%.3f×"))
	fmt.Fprintf(w, "  send → item on the feed, p50 / plain call:  %s (p50 %s, p99 %s)\n", fmtNum(x.FeedOverPlainP50, "%.2f×"), fmtNum(x.FeedP50MS, "%.2f ms"), fmtNum(x.FeedP99MS, "%.2f ms"))
	fmt.Fprintf(w, "  push with the items pending / feed alone:   %s (p50 %s, p99 %s)\n", fmtNum(x.PushOverFeedP50, "%.2f×"), fmtNum(x.PushP50MS, "%.2f ms"), fmtNum(x.PushP99MS, "%.2f ms"))
	fmt.Fprintf(w, "  new reviewer's snapshot / feed alone, p50:  %s (p50 %s)\n", fmtNum(x.SnapshotOverFeed, "%.2f×"), fmtNum(x.SnapshotP50MS, "%.2f ms"))
	fmt.Fprintf(w, "  gateway VmRSS after the items / before:     %s (%s KiB added, %s bytes per item)\n", fmtNum(x.RSSAfterOverBefore, "%.2f×"), fmtNum(x.RSSAddedKB, "%+.0f"), fmtNum(x.RSSPerItemBytes, "%.0f"))

	fmt.Fprintln(w, "\napproval goals (informational; they never fail the run):")
	printGoals(w, a.Goals)
}
