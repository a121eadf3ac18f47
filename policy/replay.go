package policy

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sallyport/sallyport/gateway"
)

// ReplayOptions configure Replay.
type ReplayOptions struct {
	// Filter selects the audit rows to replay (Since, Principal, …).
	Filter gateway.AuditFilter
	// Examples is how many examples to keep per group; default 3.
	Examples int
	// Timeout bounds each evaluation; default 100ms.
	Timeout time.Duration
}

// ReplayReport is what Replay found.
type ReplayReport struct {
	// Rows is the number of audit rows read; Replayed the number
	// evaluated again; Unchanged those whose verdict stayed the same.
	Rows, Replayed, Unchanged int
	// Skipped counts rows that could not be replayed, by reason.
	Skipped map[string]int
	// Changes counts changed verdicts by change ("allow→deny", …).
	Changes map[string]int
	// Groups are the changed verdicts by change and rule, largest first.
	Groups []ReplayGroup
	// Versions are the policy versions that made the recorded decisions.
	Versions []string
}

// ReplayGroup is the changed verdicts of one change and rule.
type ReplayGroup struct {
	Change   string
	Rule     string
	Count    int
	Examples []ReplayExample
}

// ReplayExample is one changed verdict.
type ReplayExample struct {
	Seq       int64
	Time      time.Time
	Principal string
	Method    string
	Backend   string
	Target    string
	Old, New  string
	Reasons   []string
}

// Skip reasons in ReplayReport.Skipped.
const (
	SkipNoInput  = "recorded without a policy input (before policy, or not decided by policy)"
	SkipResult   = "results (their content is not recorded)"
	SkipDigest   = "arguments recorded as a digest (audit.arguments: digest)"
	SkipBadInput = "recorded input that does not read back"
)

// Replay evaluates set on the inputs recorded in log and reports the
// verdicts that change.
//
// Requests, server requests and notifications are replayed; results are
// not, because the log keeps their size, not their content. A tools/call
// or prompts/get request is rebuilt from its recorded input and its
// canonical arguments, so a log that keeps digests only cannot replay
// them.
func Replay(ctx context.Context, set *Set, log gateway.AuditLog, opts ReplayOptions) (*ReplayReport, error) {
	if opts.Examples <= 0 {
		opts.Examples = 3
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 100 * time.Millisecond
	}
	rep := &ReplayReport{Skipped: map[string]int{}, Changes: map[string]int{}}
	groups := map[[2]string]*ReplayGroup{}
	versions := map[string]bool{}
	err := log.Scan(ctx, opts.Filter, func(r *gateway.AuditRecord) error {
		rep.Rows++
		if r.PolicyInput == "" || r.PolicyVersion == "" {
			rep.Skipped[SkipNoInput]++
			return nil
		}
		if r.Kind == gateway.KindResult.String() {
			rep.Skipped[SkipResult]++
			return nil
		}
		doc, reason := RecordedInput(r)
		if reason != "" {
			rep.Skipped[reason]++
			return nil
		}
		versions[r.PolicyVersion] = true
		ectx, cancel := context.WithTimeout(ctx, opts.Timeout)
		d := set.Eval(ectx, doc)
		cancel()
		rep.Replayed++
		old, now := r.Decision, d.Verdict()
		if old == now {
			rep.Unchanged++
			return nil
		}
		change := old + "→" + now
		rep.Changes[change]++
		rules := d.Rules
		if now == gateway.DecisionAllow {
			rules = r.Rules // what no longer applies
		}
		rule := strings.Join(rules, ",")
		if rule == "" {
			rule = "(no rule id)"
		}
		k := [2]string{change, rule}
		g := groups[k]
		if g == nil {
			g = &ReplayGroup{Change: change, Rule: rule}
			groups[k] = g
		}
		g.Count++
		if len(g.Examples) < opts.Examples {
			reasons := d.Reasons
			if now == gateway.DecisionAllow {
				reasons = r.Reasons
			}
			g.Examples = append(g.Examples, ReplayExample{Seq: r.Seq, Time: r.Time, Principal: r.Principal,
				Method: r.Method, Backend: r.Backend, Target: r.Target, Old: old, New: now, Reasons: slices.Clone(reasons)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, g := range groups {
		rep.Groups = append(rep.Groups, *g)
	}
	sort.Slice(rep.Groups, func(i, j int) bool {
		a, b := rep.Groups[i], rep.Groups[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Change != b.Change {
			return a.Change < b.Change
		}
		return a.Rule < b.Rule
	})
	for v := range versions {
		rep.Versions = append(rep.Versions, v)
	}
	sort.Strings(rep.Versions)
	return rep, nil
}

// RecordedInput rebuilds the input document of an audit row: its
// recorded input plus, for tools/call and prompts/get requests, its
// arguments. reason is set (a Skip* constant) when the row cannot give
// one.
func RecordedInput(r *gateway.AuditRecord) (doc ast.Object, reason string) {
	v, err := DecodeInput([]byte(r.PolicyInput))
	if err != nil {
		return nil, SkipBadInput
	}
	doc, ok := v.(ast.Object)
	if !ok {
		return nil, SkipBadInput
	}
	if (r.Method == "tools/call" || r.Method == "prompts/get") && r.Kind == gateway.KindRequest.String() {
		params := ast.NewObject()
		what := keyTool
		if r.Method == "prompts/get" {
			what = keyPrompt
		}
		if term := doc.Get(what); term != nil {
			if t, ok := term.Value.(ast.Object); ok && t.Get(keyName) != nil {
				params.Insert(keyName, t.Get(keyName))
			}
		}
		if r.Arguments != "" {
			if strings.HasPrefix(r.Arguments, "sha256") {
				return nil, SkipDigest
			}
			args, err := DecodeInput([]byte(r.Arguments))
			if err != nil {
				return nil, SkipBadInput
			}
			doc.Insert(keyArguments, ast.NewTerm(args))
			params.Insert(keyArguments, ast.NewTerm(args))
		}
		doc.Insert(keyParams, ast.NewTerm(params))
	}
	return doc, ""
}

// String renders the report for a terminal.
func (rep *ReplayReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "replayed %d of %d audit rows", rep.Replayed, rep.Rows)
	if len(rep.Versions) > 0 {
		short := make([]string, len(rep.Versions))
		for i, v := range rep.Versions {
			short[i] = v[:min(12, len(v))]
		}
		fmt.Fprintf(&b, " (decided by policy %s)", strings.Join(short, ", "))
	}
	b.WriteString("\n")
	reasons := make([]string, 0, len(rep.Skipped))
	for r := range rep.Skipped {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		fmt.Fprintf(&b, "  skipped %d: %s\n", rep.Skipped[r], r)
	}
	total := 0
	changes := make([]string, 0, len(rep.Changes))
	for c, n := range rep.Changes {
		total += n
		changes = append(changes, fmt.Sprintf("%s %d", c, n))
	}
	sort.Strings(changes)
	if total == 0 {
		fmt.Fprintf(&b, "no decision changes (%d unchanged)\n", rep.Unchanged)
		return b.String()
	}
	fmt.Fprintf(&b, "%d decisions change (%s); %d unchanged\n", total, strings.Join(changes, ", "), rep.Unchanged)
	for _, g := range rep.Groups {
		fmt.Fprintf(&b, "\n  %-16s %5d  %s\n", g.Change, g.Count, g.Rule)
		for _, e := range g.Examples {
			target := e.Target
			if e.Backend != "" {
				target = e.Backend + "/" + target
			}
			fmt.Fprintf(&b, "    seq %d  %s  %s  %s %s", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Principal, e.Method, target)
			if len(e.Reasons) > 0 {
				fmt.Fprintf(&b, "  (%s)", strings.Join(e.Reasons, "; "))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}
