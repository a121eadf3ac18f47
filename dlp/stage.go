package dlp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// actionAllow is the rule action that drops a finding (the allowlist).
const actionAllow = "allow"

// Stage is the DLP stage of the pipeline: it scans every message, decides
// an action for each finding by the configured rules (then the built-in
// defaults), refuses a message with a finding to block, applies
// redactions, and hands the findings on to policy and the audit log.
type Stage struct {
	scanner *Scanner
	rules   []rule
	hashKey []byte
	log     *slog.Logger

	scanned     atomic.Int64
	bytes       atomic.Int64
	blocked     atomic.Int64
	rewritten   atomic.Int64
	failures    atomic.Int64
	allowlisted atomic.Int64
	found       [numDetectors][numActions]atomic.Int64
}

// Actions, indexed for the metrics.
var actions = [...]string{gateway.ActionBlock, gateway.ActionRedact, gateway.ActionMask, gateway.ActionHash, gateway.ActionFlag}

const numActions = len(actions)

type rule struct {
	all      bool // no detector list
	dets     [numDetectors]bool
	dir      gateway.Direction // 0: both
	backends []string
	tools    []string
	fields   []gateway.Path
	values   map[string]bool
	digests  map[string]bool // hex sha256 of values
	patterns []*regexp.Regexp
	action   string
}

// NewStage builds the stage from the configuration. It fails on an
// unknown detector, a bad field path or an unreadable hash key, so that
// the gateway never starts with rules it does not understand.
func NewStage(cfg config.DLP, log *slog.Logger) (*Stage, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sc, err := NewScanner(Options{Detectors: cfg.Detectors, MaxDecodeDepth: cfg.MaxDecodeDepth, MaxDecodedBytes: cfg.MaxDecodedBytes.Int()})
	if err != nil {
		return nil, fmt.Errorf("dlp.detectors: %w", err)
	}
	s := &Stage{scanner: sc, log: log}
	switch {
	case cfg.HashKeyFile != "":
		b, err := os.ReadFile(cfg.HashKeyFile)
		if err != nil {
			return nil, fmt.Errorf("dlp.hash_key_file: %w", err)
		}
		s.hashKey = []byte(strings.TrimSpace(string(b)))
		if len(s.hashKey) < 16 {
			return nil, fmt.Errorf("dlp.hash_key_file %s: the key must be at least 16 characters", cfg.HashKeyFile)
		}
	case cfg.HashKey != "":
		s.hashKey = []byte(cfg.HashKey)
	}
	for i, rc := range cfg.Rules {
		r, err := compileRule(rc)
		if err != nil {
			return nil, fmt.Errorf("dlp.rules[%d]: %w", i, err)
		}
		if r.action == gateway.ActionHash && s.hashKey == nil {
			return nil, fmt.Errorf("dlp.rules[%d]: action hash needs dlp.hash_key or dlp.hash_key_file", i)
		}
		s.rules = append(s.rules, r)
	}
	return s, nil
}

func compileRule(rc config.DLPRule) (rule, error) {
	r := rule{action: rc.Action, backends: rc.Backends, tools: rc.Tools, all: len(rc.Detectors) == 0}
	for _, id := range rc.Detectors {
		switch id {
		case CategoryPII, CategorySecret:
			for d, info := range detectors {
				if info.category == id {
					r.dets[d] = true
				}
			}
		default:
			d, ok := detectorByID(id)
			if !ok {
				return r, fmt.Errorf("unknown detector %q (see sallyport dlp detectors)", id)
			}
			r.dets[d] = true
		}
	}
	if rc.Direction != "" {
		var ok bool
		if r.dir, ok = gateway.ParseDirection(rc.Direction); !ok {
			return r, fmt.Errorf("direction %q: must be client_to_backend or backend_to_client", rc.Direction)
		}
	}
	for _, f := range rc.Fields {
		p, err := gateway.ParsePath(f)
		if err != nil {
			return r, fmt.Errorf("fields: %w", err)
		}
		r.fields = append(r.fields, p)
	}
	for _, v := range rc.Values {
		if d, ok := strings.CutPrefix(v, "sha256:"); ok && len(d) == 64 {
			if r.digests == nil {
				r.digests = map[string]bool{}
			}
			r.digests[strings.ToLower(d)] = true
			continue
		}
		if r.values == nil {
			r.values = map[string]bool{}
		}
		r.values[v] = true
	}
	for _, p := range rc.Patterns {
		re, err := regexp.Compile(`^(?:` + p + `)$`)
		if err != nil {
			return r, fmt.Errorf("patterns: %w", err)
		}
		r.patterns = append(r.patterns, re)
	}
	for _, p := range slices.Concat(rc.Backends, rc.Tools) {
		if _, err := path.Match(p, ""); err != nil {
			return r, fmt.Errorf("pattern %q: %w", p, err)
		}
	}
	switch r.action {
	case gateway.ActionBlock, gateway.ActionRedact, gateway.ActionMask, gateway.ActionHash, gateway.ActionFlag, actionAllow:
	default:
		return r, fmt.Errorf("action %q: must be block, redact, mask, hash, flag or allow", r.action)
	}
	return r, nil
}

// matches reports whether r applies to the finding l in x.
func (r *rule) matches(x *gateway.Exchange, l *Located, p gateway.Path, havePath bool) bool {
	if !r.all && !r.dets[l.det] || r.dir != 0 && r.dir != x.Direction {
		return false
	}
	if len(r.backends) > 0 && !anyMatch(r.backends, x.Backend) || len(r.tools) > 0 && !anyMatch(r.tools, x.Target) {
		return false
	}
	if len(r.fields) > 0 {
		if !havePath {
			return false
		}
		ok := false
		for _, f := range r.fields {
			if f.Covers(p) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(r.values) > 0 || len(r.digests) > 0 || len(r.patterns) > 0 {
		v := l.Value()
		ok := r.values[v]
		if !ok && len(r.digests) > 0 {
			sum := sha256.Sum256([]byte(v))
			ok = r.digests[hex.EncodeToString(sum[:])]
		}
		for _, re := range r.patterns {
			if ok {
				break
			}
			ok = re.MatchString(v)
		}
		if !ok {
			return false
		}
	}
	return true
}

func anyMatch(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

// defaultAction is the action for a finding no rule matched: secrets are
// blocked on their way to a backend and redacted on their way to a
// client; card, SSN, IBAN and bank numbers are masked on their way to a
// client; other PII is flagged.
func defaultAction(d detector, dir gateway.Direction) string {
	if detectors[d].category == CategorySecret {
		if dir == gateway.BackendToClient {
			return gateway.ActionRedact
		}
		return gateway.ActionBlock
	}
	switch d {
	case detCard, detSSN, detIBAN, detBank:
		if dir == gateway.BackendToClient {
			return gateway.ActionMask
		}
	}
	return gateway.ActionFlag
}

// Handle scans x, refuses it when a finding is to be blocked, applies
// the redactions, and passes it on with x.Findings set.
func (s *Stage) Handle(ctx context.Context, x *gateway.Exchange, next gateway.Handler) (err error) {
	if x.Message == nil {
		return next.Handle(ctx, x)
	}
	if rerr := s.inspect(x); rerr != nil {
		return rerr
	}
	return next.Handle(ctx, x)
}

// Scanner returns the scanner the stage runs, with the configuration's
// detectors and limits.
func (s *Stage) Scanner() *Scanner { return s.scanner }

// Inspect does the stage's work on x without passing it on: it sets
// x.Findings, applies the redactions to x.Message, and returns the
// refusal the stage would answer with (nil when x would pass). `sallyport
// dlp scan` uses it to show what the gateway would do.
func (s *Stage) Inspect(x *gateway.Exchange) error { return s.inspect(x) }

// inspect does the stage's work on x; any failure refuses it.
func (s *Stage) inspect(x *gateway.Exchange) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.failures.Add(1)
			s.log.Error("DLP scan panicked; message refused", slog.String("method", x.Method), slog.Any("panic", p))
			err = &gateway.Error{Code: gateway.CodeRefused, Message: "DLP scan failed: the message was not forwarded"}
		}
	}()
	m := x.Message
	s.scanned.Add(1)
	s.bytes.Add(int64(len(m.Params) + len(m.Result)))
	locs, serr := s.scanner.ScanMessage(m)
	if serr != nil {
		s.failures.Add(1)
		s.log.Warn("DLP scan failed; message refused", slog.String("method", x.Method), slog.String("err", serr.Error()))
		msg := "DLP scan failed: the message was not forwarded"
		if errors.Is(serr, ErrLimit) {
			msg = "DLP scan limit exceeded: the message was not forwarded"
		}
		return &gateway.Error{Code: gateway.CodeRefused, Message: msg, Err: serr}
	}
	if len(locs) == 0 {
		return nil
	}
	findings := make([]gateway.Finding, 0, len(locs))
	acts := make([]string, len(locs))
	var block []int
	for i := range locs {
		l := &locs[i]
		a := s.action(x, l)
		if a == actionAllow {
			s.allowlisted.Add(1)
			continue
		}
		if l.InKey && a != gateway.ActionFlag {
			a = gateway.ActionBlock // a member name cannot be rewritten
		}
		acts[i] = a
		if a == gateway.ActionBlock {
			block = append(block, i)
		}
		s.found[l.det][slices.Index(actions[:], a)].Add(1)
		findings = append(findings, gateway.Finding{Detector: l.Detector, Category: detectors[l.det].category, Path: l.Path,
			InKey: l.InKey, Offset: l.Offset, Length: l.Length, Confidence: l.Confidence, Encoding: l.Encoding, Action: a})
	}
	x.Findings = findings
	if len(block) > 0 {
		s.blocked.Add(1)
		refusal := &gateway.Error{Code: gateway.CodeRefused, Message: blockMessage(locs, block)}
		// The message goes nowhere, but the audit row records its
		// arguments and target: it keeps them with every finding
		// redacted, or without them where that cannot be done (a finding
		// in a member name, a rewrite that failed).
		inKey := false
		for _, i := range block {
			acts[i] = gateway.ActionRedact
			inKey = inKey || locs[i].InKey
		}
		if _, err := s.apply(x, locs, acts); err != nil || inKey {
			x.Arguments = nil
			if err != nil {
				x.Target = ""
			}
		}
		return refusal
	}
	rewritten, err := s.apply(x, locs, acts)
	if err != nil {
		s.failures.Add(1)
		return &gateway.Error{Code: gateway.CodeRefused, Message: "DLP redaction failed: the message was not forwarded", Err: err}
	}
	if rewritten {
		s.rewritten.Add(1)
	}
	return nil
}

// apply rewrites the findings acts says to redact, mask or hash, through
// gateway.ReplaceValues, and puts the rewritten message in x. It reports
// whether there was anything to rewrite.
func (s *Stage) apply(x *gateway.Exchange, locs []Located, acts []string) (bool, error) {
	rs, err := s.rewrites(locs, acts)
	if err != nil || len(rs) == 0 {
		return false, err
	}
	nm, n := gateway.ReplaceValues(x.Message, rs)
	if n != len(rs) {
		return false, fmt.Errorf("dlp: %d of %d redactions found their value", n, len(rs))
	}
	x.Replace(nm)
	return true, nil
}

// action decides what to do with l: the first matching rule's action,
// else the default.
func (s *Stage) action(x *gateway.Exchange, l *Located) string {
	var p gateway.Path
	parsed, havePath := false, false
	for i := range s.rules {
		r := &s.rules[i]
		if len(r.fields) > 0 && !parsed {
			var err error
			p, err = gateway.ParsePath(l.Path)
			parsed, havePath = true, err == nil
		}
		if r.matches(x, l, p, havePath) {
			return r.action
		}
	}
	return defaultAction(l.det, x.Direction)
}

// blockMessage names what was found, and where, never the values.
func blockMessage(locs []Located, block []int) string {
	var parts []string
	seen := map[string]bool{}
	for _, i := range block {
		l := &locs[i]
		p := l.Detector + " in " + l.Path
		if l.InKey {
			p += " (a member name)"
		}
		if l.Encoding != "" {
			p += " (" + l.Encoding + "-encoded)"
		}
		if !seen[p] {
			seen[p] = true
			parts = append(parts, p)
		}
	}
	if len(parts) > 5 {
		parts = append(parts[:5], fmt.Sprintf("and %d more", len(parts)-5))
	}
	return "blocked by DLP: the message contains " + strings.Join(parts, ", ")
}

// rewrites returns the replacements that apply the redact, mask and hash
// actions: one per string value, with every span in it rewritten.
func (s *Stage) rewrites(locs []Located, acts []string) ([]gateway.Replacement, error) {
	type span struct {
		off, end int
		act      string
		det      detector
	}
	byPath := map[string][]span{}
	var order []string
	vals := map[string]*Located{}
	for i := range locs {
		a := acts[i]
		l := &locs[i]
		if a != gateway.ActionRedact && a != gateway.ActionMask && a != gateway.ActionHash || l.InKey {
			continue // a member name is never rewritten: it is blocked
		}
		if _, ok := byPath[l.Path]; !ok {
			order = append(order, l.Path)
			vals[l.Path] = l
		}
		byPath[l.Path] = append(byPath[l.Path], span{l.Offset, l.Offset + l.Length, a, l.det})
	}
	var rs []gateway.Replacement
	for _, p := range order {
		spans := byPath[p]
		sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
		// Merge overlapping spans; the stronger action wins.
		merged := spans[:1]
		for _, sp := range spans[1:] {
			last := &merged[len(merged)-1]
			if sp.off < last.end {
				last.end = max(last.end, sp.end)
				if strength(sp.act) > strength(last.act) {
					last.act, last.det = sp.act, sp.det
				}
				continue
			}
			merged = append(merged, sp)
		}
		l := vals[p]
		v := l.value
		var b strings.Builder
		prev := 0
		for _, sp := range merged {
			b.WriteString(v[prev:sp.off])
			b.WriteString(s.replacement(v[sp.off:sp.end], sp.act, sp.det))
			prev = sp.end
		}
		b.WriteString(v[prev:])
		gp, err := gateway.ParsePath(p)
		if err != nil {
			return nil, err
		}
		rs = append(rs, gateway.Replacement{Path: gp, Value: jsonrpc.Quote(b.String())})
	}
	return rs, nil
}

func strength(a string) int {
	switch a {
	case gateway.ActionRedact:
		return 3
	case gateway.ActionHash:
		return 2
	case gateway.ActionMask:
		return 1
	}
	return 0
}

// replacement is what takes the place of the matched text v.
func (s *Stage) replacement(v, act string, d detector) string {
	id := detectors[d].id
	switch act {
	case gateway.ActionMask:
		return Mask(v)
	case gateway.ActionHash:
		return HashToken(s.hashKey, id, v)
	}
	return "[REDACTED:" + id + "]"
}

// Mask keeps the last four characters of v and stars the letters and
// digits before them (separators stay, so a card still reads as one);
// a value of four characters or fewer is starred whole.
func Mask(v string) string {
	n := utf8.RuneCountInString(v)
	keep := 4
	if n <= 4 {
		keep = 0
	}
	var b strings.Builder
	k := 0
	for _, r := range v {
		k++
		switch {
		case k > n-keep:
			b.WriteRune(r)
		case r < utf8.RuneSelf && !isAlnum[byte(r)]:
			b.WriteRune(r)
		default:
			b.WriteByte('*')
		}
	}
	return b.String()
}

// HashToken is the hash action's token for v: the first 16 hex digits of
// HMAC-SHA256(key, v), tagged with the detector id. The same value gives
// the same token under the same key.
func HashToken(key []byte, detectorID, v string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(v))
	return "[HASH:" + detectorID + ":" + hex.EncodeToString(m.Sum(nil)[:8]) + "]"
}

// Name implements gateway.Reporter.
func (s *Stage) Name() string { return "dlp" }

// Status is the DLP stage's /readyz detail.
type Status struct {
	Detectors   int   `json:"detectors"`
	Rules       int   `json:"rules"`
	Scanned     int64 `json:"messages_scanned"`
	Blocked     int64 `json:"messages_blocked"`
	Rewritten   int64 `json:"messages_rewritten"`
	Failures    int64 `json:"failures"`
	Allowlisted int64 `json:"findings_allowlisted"`
}

// Status implements gateway.Reporter.
func (s *Stage) Status() (any, bool) {
	n := 0
	for _, e := range s.scanner.enabled {
		if e {
			n++
		}
	}
	return Status{Detectors: n, Rules: len(s.rules), Scanned: s.scanned.Load(), Blocked: s.blocked.Load(),
		Rewritten: s.rewritten.Load(), Failures: s.failures.Load(), Allowlisted: s.allowlisted.Load()}, true
}

// WriteMetrics implements gateway.Reporter: Prometheus text format.
func (s *Stage) WriteMetrics(w io.Writer) {
	fmt.Fprintf(w, "# HELP sallyport_dlp_messages_scanned_total Messages the DLP stage scanned.\n# TYPE sallyport_dlp_messages_scanned_total counter\nsallyport_dlp_messages_scanned_total %d\n", s.scanned.Load())
	fmt.Fprintf(w, "# HELP sallyport_dlp_bytes_scanned_total Bytes of params and results the DLP stage scanned.\n# TYPE sallyport_dlp_bytes_scanned_total counter\nsallyport_dlp_bytes_scanned_total %d\n", s.bytes.Load())
	fmt.Fprintf(w, "# HELP sallyport_dlp_messages_blocked_total Messages refused for a finding to block.\n# TYPE sallyport_dlp_messages_blocked_total counter\nsallyport_dlp_messages_blocked_total %d\n", s.blocked.Load())
	fmt.Fprintf(w, "# HELP sallyport_dlp_messages_rewritten_total Messages whose findings were redacted, masked or hashed.\n# TYPE sallyport_dlp_messages_rewritten_total counter\nsallyport_dlp_messages_rewritten_total %d\n", s.rewritten.Load())
	fmt.Fprintf(w, "# HELP sallyport_dlp_failures_total Scans that failed (the message was refused).\n# TYPE sallyport_dlp_failures_total counter\nsallyport_dlp_failures_total %d\n", s.failures.Load())
	fmt.Fprintf(w, "# HELP sallyport_dlp_findings_allowlisted_total Findings an allow rule dropped.\n# TYPE sallyport_dlp_findings_allowlisted_total counter\nsallyport_dlp_findings_allowlisted_total %d\n", s.allowlisted.Load())
	fmt.Fprintf(w, "# HELP sallyport_dlp_findings_total Findings, by detector and action.\n# TYPE sallyport_dlp_findings_total counter\n")
	for d := range s.found {
		for a := range s.found[d] {
			if n := s.found[d][a].Load(); n > 0 {
				fmt.Fprintf(w, "sallyport_dlp_findings_total{detector=%q,action=%q} %d\n", detectors[d].id, actions[a], n)
			}
		}
	}
}

var (
	_ gateway.Stage    = (*Stage)(nil)
	_ gateway.Reporter = (*Stage)(nil)
)
