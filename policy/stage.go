package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// Options configure a Stage.
type Options struct {
	Source Source
	// Timeout bounds one evaluation; default 100ms.
	Timeout time.Duration
	// Backends are the configured backends, for input.backend and the
	// configuration's view of tools.
	Backends []config.Backend
	Logger   *slog.Logger
	// OnSwap, when set, is called after a new policy set replaced the old
	// one (lists may show other entries now).
	OnSwap func(version string)
}

// Stage is the policy stage of the pipeline. It decides every message,
// filters aggregated lists per principal, applies the decision's
// redactions, and refuses what policy denies.
type Stage struct {
	src     Source
	timeout time.Duration
	inputs  *Inputs
	log     *slog.Logger
	onSwap  func(string)

	cur    atomic.Pointer[Set]
	reload sync.Mutex // one reload at a time
	sig    string     // the file signature the current set was loaded from

	loadedAt       atomic.Int64 // unix nanoseconds
	reloads        atomic.Int64
	reloadFailures atomic.Int64
	lastErr        atomic.Pointer[reloadError]
	evaluations    atomic.Int64
	denials        atomic.Int64
	approvals      atomic.Int64
	errors         atomic.Int64
	hidden         atomic.Int64
}

type reloadError struct {
	msg string
	at  time.Time
}

// NewStage loads the policy opts.Source names; it fails when that policy
// does not load, so that the gateway never starts without one.
func NewStage(ctx context.Context, opts Options) (*Stage, error) {
	s := &Stage{src: opts.Source, timeout: opts.Timeout, inputs: NewInputs(opts.Backends), log: opts.Logger, onSwap: opts.OnSwap}
	if s.timeout <= 0 {
		s.timeout = 100 * time.Millisecond
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	sig, _ := signature(s.src.Paths)
	set, err := Load(ctx, s.src)
	if err != nil {
		return nil, err
	}
	s.sig = sig
	s.cur.Store(set)
	s.loadedAt.Store(time.Now().UnixNano())
	return s, nil
}

// Current returns the policy set in force.
func (s *Stage) Current() *Set { return s.cur.Load() }

// Handle decides x, and passes it on only when policy allows it.
func (s *Stage) Handle(ctx context.Context, x *gateway.Exchange, next gateway.Handler) error {
	set := s.cur.Load()
	d := s.decide(ctx, set, x)
	x.Decision = d
	if !d.Allow {
		s.denials.Add(1)
		return &gateway.Error{Code: gateway.CodeRefused, Message: d.DenyMessage()}
	}
	if d.Approval != nil {
		// The approval stage, after this one, holds the call; without it
		// the audit Gate refuses a call that carries no approval.
		s.approvals.Add(1)
	}
	if len(d.Redact) > 0 && x.Message != nil {
		s.redact(x, d)
	}
	if x.Kind == gateway.KindResult && x.Direction == gateway.BackendToClient && x.Request != nil && aggregatedLists[x.Method].member != "" {
		if err := s.filterList(ctx, set, x); err != nil {
			return err
		}
	}
	return next.Handle(ctx, x)
}

// decide evaluates x under set; any failure is a denial.
func (s *Stage) decide(ctx context.Context, set *Set, x *gateway.Exchange) *gateway.Decision {
	s.evaluations.Add(1)
	doc, err := s.inputs.Build(x)
	if err != nil {
		s.errors.Add(1)
		return &gateway.Decision{Reasons: []string{"policy input could not be built: " + err.Error()}, Rules: []string{RuleError}, PolicyVersion: set.version}
	}
	d := s.evalDoc(ctx, set, doc)
	if x.Kind != gateway.KindResult {
		// Replay evaluates requests, server requests and notifications;
		// a result's content is not recorded, so neither is its input.
		d.Input = Recorded(doc)
	}
	return d
}

// evalDoc evaluates one input document under the stage's deadline.
func (s *Stage) evalDoc(ctx context.Context, set *Set, doc ast.Object) *gateway.Decision {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	d := set.Eval(ctx, doc)
	if slices.Contains(d.Rules, RuleError) {
		s.errors.Add(1)
	}
	return d
}

// redact applies the decision's redactions to x's message.
func (s *Stage) redact(x *gateway.Exchange, d *gateway.Decision) {
	paths := make([]gateway.Path, 0, len(d.Redact))
	for _, p := range d.Redact {
		if pp, err := gateway.ParsePath(p); err == nil { // parseDecision checked them
			paths = append(paths, pp)
		}
	}
	m, n := gateway.RedactMessage(x.Message, paths, gateway.Redacted)
	if n == 0 {
		return
	}
	x.Replace(m)
	if len(d.Input) > 0 {
		// The audit row keeps what is forwarded, never what was redacted.
		if doc, err := s.inputs.Build(x); err == nil {
			d.Input = Recorded(doc)
		} else {
			d.Input = nil
		}
	}
	d.Reasons = append(d.Reasons, fmt.Sprintf("redacted %d value(s)", n))
}

// filterList removes from a list result the entries policy would not let
// x's principal use: an entry is shown when a call to it, without
// arguments, would be allowed (perhaps after an approval).
func (s *Stage) filterList(ctx context.Context, set *Set, x *gateway.Exchange) error {
	member := aggregatedLists[x.Method].member
	if x.Message == nil {
		return nil
	}
	arr, ok := jsonrpc.Member(x.Message.Result, member)
	if !ok {
		return nil // an error answer, or nothing listed
	}
	var entries []json.RawMessage
	if err := jsonrpc.EachElement(arr, func(_ int, v json.RawMessage) bool {
		entries = append(entries, v)
		return true
	}); err != nil {
		return gateway.Errorf(gateway.CodeInternal, "%s could not be filtered by policy", x.Method)
	}
	origins := x.Request.Listed
	if len(origins) != len(entries) {
		// The answer is not the list the gateway built: nothing can be
		// shown safely.
		return gateway.Errorf(gateway.CodeInternal, "%s could not be filtered by policy", x.Method)
	}
	var b bytes.Buffer
	b.WriteByte('[')
	shown := 0
	var rules []string
	for i, e := range entries {
		d := s.evalDoc(ctx, set, s.inputs.Listing(x, x.Method, origins[i], e))
		if !d.Allow {
			rules = append(rules, d.Rules...)
			continue
		}
		if shown > 0 {
			b.WriteByte(',')
		}
		b.Write(e)
		shown++
	}
	b.WriteByte(']')
	if hid := len(entries) - shown; hid > 0 {
		s.hidden.Add(int64(hid))
		m := *x.Message
		m.Result = jsonrpc.SetMember(m.Result, member, b.Bytes())
		x.Message = &m
		x.Decision.Reasons = append(x.Decision.Reasons, fmt.Sprintf("hid %d of %d %s", hid, len(entries), member))
		rules = append(rules, x.Decision.Rules...)
		slices.Sort(rules)
		x.Decision.Rules = slices.Compact(rules)
	}
	return nil
}

// Status is the stage's state, for /readyz.
type Status struct {
	Version        string    `json:"version"`
	Source         string    `json:"source"`
	LoadedAt       time.Time `json:"loaded_at"`
	Reloads        int64     `json:"reloads"`
	ReloadFailures int64     `json:"reload_failures"`
	LastError      string    `json:"last_error,omitempty"`
	LastErrorAt    time.Time `json:"last_error_at,omitzero"`
}

// Name implements gateway.Reporter.
func (s *Stage) Name() string { return "policy" }

// Status implements gateway.Reporter.
func (s *Stage) Status() (any, bool) {
	set := s.cur.Load()
	st := Status{Version: set.version, Source: set.source, LoadedAt: time.Unix(0, s.loadedAt.Load()).UTC(),
		Reloads: s.reloads.Load(), ReloadFailures: s.reloadFailures.Load()}
	if e := s.lastErr.Load(); e != nil {
		st.LastError, st.LastErrorAt = e.msg, e.at
	}
	return st, true
}

// WriteMetrics implements gateway.Reporter: Prometheus text format.
func (s *Stage) WriteMetrics(w io.Writer) {
	failing := 0
	if s.lastErr.Load() != nil {
		failing = 1
	}
	fmt.Fprintf(w, "# HELP sallyport_policy_evaluations_total Policy evaluations of messages.\n# TYPE sallyport_policy_evaluations_total counter\nsallyport_policy_evaluations_total %d\n", s.evaluations.Load())
	fmt.Fprintf(w, "# HELP sallyport_policy_denials_total Messages denied by policy.\n# TYPE sallyport_policy_denials_total counter\nsallyport_policy_denials_total %d\n", s.denials.Load())
	fmt.Fprintf(w, "# HELP sallyport_policy_approvals_required_total Messages policy sent for approval.\n# TYPE sallyport_policy_approvals_required_total counter\nsallyport_policy_approvals_required_total %d\n", s.approvals.Load())
	fmt.Fprintf(w, "# HELP sallyport_policy_errors_total Evaluations that failed (denied).\n# TYPE sallyport_policy_errors_total counter\nsallyport_policy_errors_total %d\n", s.errors.Load())
	fmt.Fprintf(w, "# HELP sallyport_policy_hidden_entries_total List entries hidden by policy.\n# TYPE sallyport_policy_hidden_entries_total counter\nsallyport_policy_hidden_entries_total %d\n", s.hidden.Load())
	fmt.Fprintf(w, "# HELP sallyport_policy_reloads_total Policy sets swapped in after a change.\n# TYPE sallyport_policy_reloads_total counter\nsallyport_policy_reloads_total %d\n", s.reloads.Load())
	fmt.Fprintf(w, "# HELP sallyport_policy_reload_failures_total Changed policy sets that did not load (the old one stayed).\n# TYPE sallyport_policy_reload_failures_total counter\nsallyport_policy_reload_failures_total %d\n", s.reloadFailures.Load())
	fmt.Fprintf(w, "# HELP sallyport_policy_reload_failing 1 while the files on disk do not load and an older policy is in force.\n# TYPE sallyport_policy_reload_failing gauge\nsallyport_policy_reload_failing %d\n", failing)
}

var _ gateway.Stage = (*Stage)(nil)
