package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// basePolicy denies drop and allows everything else.
const basePolicy = `
deny contains {"rule": "base/no-drop", "reason": "drop is not allowed"} if {
	input.method == "tools/call"
	input.tool.backend_name == "drop"
}

decision := {
	"allow": false,
	"deny_reasons": {d.reason | some d in deny},
	"rules": {d.rule | some d in deny},
} if {
	count(deny) > 0
} else := {"allow": true, "rules": {"base/allow"}}
`

// candidateRules deny delete, reads under /etc (by argument) and secret
// resources (by params).
const candidateRules = `
deny contains {"rule": "candidate/no-delete", "reason": "delete is not allowed"} if {
	input.method == "tools/call"
	input.tool.backend_name == "delete"
}

deny contains {"rule": "candidate/no-etc", "reason": sprintf("%s is off limits", [input.arguments.path])} if {
	input.method == "tools/call"
	startswith(input.arguments.path, "/etc")
}

deny contains {"rule": "candidate/no-secret", "reason": "secret resources are off limits"} if {
	input.method == "resources/read"
	startswith(input.params.uri, "secret://")
}
`

// auditRow builds the audit row of x, decided by the policy stage, as the
// audit stage does (gateway/audit: record and decision). digest keeps
// digests of the arguments and no params, as audit.arguments: digest does.
func auditRow(t testing.TB, x *gateway.Exchange, refused bool, digest bool) *gateway.AuditRecord {
	t.Helper()
	r := &gateway.AuditRecord{Time: x.Time, Direction: x.Direction.String(), Kind: x.Kind.String(), Method: x.Method,
		Backend: x.Backend, Target: x.Target, Outcome: gateway.OutcomeOK}
	if s := x.Session; s != nil {
		r.Session, r.Transport, r.ProtocolVersion, r.ClientName, r.ClientVersion = s.ID, s.Transport, s.ProtocolVersion, s.ClientName, s.ClientVersion
	}
	if p := x.Principal; p != nil {
		r.Principal, r.TokenID = p.ID, p.TokenID
	}
	if m := x.Message; m != nil {
		r.MessageID = string(m.ID)
	}
	if len(x.Arguments) > 0 {
		c, err := jsonrpc.Canonical(x.Arguments)
		if err != nil {
			t.Fatal(err)
		}
		r.Arguments = string(c)
		if digest {
			sum := sha256.Sum256(c)
			r.Arguments = "sha256:" + hex.EncodeToString(sum[:])
		}
	}
	if refused {
		r.Outcome = gateway.OutcomeRefused
	}
	if d := x.Decision; d != nil {
		r.Decision, r.Reasons, r.Rules, r.PolicyVersion = d.Verdict(), d.Reasons, d.Rules, d.PolicyVersion
		in := d.Input
		if digest {
			in = jsonrpc.DeleteMember(in, "params")
		}
		r.PolicyInput = string(in)
	}
	return r
}

// replayLog is an audit log of traffic decided by the base policy.
type replayLog struct {
	log     gateway.AuditLog
	base    *Set
	dir     string // the base policy's directory
	rows    int
	deletes []int64 // seqs of the delete calls, in order
}

func newReplayLog(t *testing.T) *replayLog {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "audit.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rl := &replayLog{log: db.Audit(), dir: policyDir(t, map[string]string{"a.rego": regoFile(basePolicy)})}
	st := newStage(t, Options{Source: Source{Paths: []string{rl.dir}}, Backends: testBackends})
	rl.base = st.Current()

	appendRow := func(r *gateway.AuditRecord) int64 {
		t.Helper()
		if err := rl.log.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
		rl.rows++
		return r.Seq
	}
	decided := func(x *gateway.Exchange, digest bool) int64 {
		t.Helper()
		err := st.Handle(ctx, x, &recorder{})
		return appendRow(auditRow(t, x, err != nil, digest))
	}

	search := toolCall(alice, "docs", "search", `{"q":"a"}`, "")
	decided(search, false)
	rl.deletes = append(rl.deletes,
		decided(toolCall(alice, "docs", "delete", `{"id":1}`, ""), false),
		decided(toolCall(bob, "docs", "delete", `{"id":2}`, ""), false),
		decided(toolCall(alice, "docs", "delete", `{"id":3}`, ""), false))
	decided(toolCall(alice, "files", "read", `{"path":"/etc/shadow","mode":"r"}`, ""), false)
	decided(toolCall(alice, "files", "read", `{"path":"/home/alice/a.txt"}`, ""), false)
	decided(toolCall(alice, "db", "drop", `{"table":"t"}`, ""), false)
	// A result: its input is not recorded.
	decided(resultOf(search, `{"content":[]}`), false)
	decided(request(alice, "docs", "resources/read", "secret://key", `{"uri":"secret://key"}`), false)
	decided(notification(alice, gateway.BackendToClient, "docs", "notifications/progress", `{"progressToken":1,"progress":1}`), false)
	// Recorded before policy decided anything.
	appendRow(&gateway.AuditRecord{Time: testTime, Direction: "client_to_backend", Kind: "request", Method: "initialize", Principal: "alice", Decision: gateway.DecisionAllow})
	// Recorded with digests of the arguments: a delete the candidate would deny.
	decided(toolCall(alice, "docs", "delete", `{"id":4}`, ""), true)
	// A result recorded with its input, as an older gateway did.
	appendRow(&gateway.AuditRecord{Time: testTime, Direction: "backend_to_client", Kind: "result", Method: "tools/call", Principal: "alice",
		Backend: "docs", Target: "delete", Decision: gateway.DecisionAllow, PolicyVersion: rl.base.Version(),
		PolicyInput: `{"version":1,"kind":"result","method":"tools/call","tool":{"name":"docs__delete","backend_name":"delete"}}`})
	// An input that does not read back.
	appendRow(&gateway.AuditRecord{Time: testTime, Direction: "client_to_backend", Kind: "request", Method: "ping", Principal: "alice",
		Decision: gateway.DecisionAllow, PolicyVersion: rl.base.Version(), PolicyInput: `{"version":1,`})
	return rl
}

func TestReplay(t *testing.T) {
	ctx := context.Background()
	rl := newReplayLog(t)
	candidate := mustLoad(t, policyDir(t, map[string]string{"a.rego": regoFile(basePolicy + candidateRules)}))
	lenient := mustLoad(t, policyDir(t, map[string]string{"a.rego": regoFile(`decision := {"allow": true, "rules": ["lenient/allow"]}`)}))
	skipped := map[string]int{SkipResult: 1, SkipNoInput: 2, SkipDigest: 1, SkipBadInput: 1}

	tests := []struct {
		name      string
		set       *Set
		opts      ReplayOptions
		rows      int
		replayed  int
		unchanged int
		skipped   map[string]int
		changes   map[string]int
		groups    []ReplayGroup // Examples compared by Seq, Old, New and Reasons
	}{
		{
			name: "replay / the same policy changes nothing",
			set:  rl.base, rows: 14, replayed: 9, unchanged: 9, skipped: skipped, changes: map[string]int{},
		},
		{
			name: "replay / the same policy loaded again changes nothing",
			set:  mustLoad(t, rl.dir), rows: 14, replayed: 9, unchanged: 9, skipped: skipped, changes: map[string]int{},
		},
		{
			name: "replay / a candidate that denies delete, /etc and secrets, grouped by its rules",
			set:  candidate, opts: ReplayOptions{Examples: 2},
			rows: 14, replayed: 9, unchanged: 4, skipped: skipped,
			changes: map[string]int{"allow→deny": 5},
			groups: []ReplayGroup{
				{Change: "allow→deny", Rule: "candidate/no-delete", Count: 3, Examples: []ReplayExample{
					{Seq: rl.deletes[0], Principal: "alice", Method: "tools/call", Backend: "docs", Target: "delete", Old: "allow", New: "deny", Reasons: []string{"delete is not allowed"}},
					{Seq: rl.deletes[1], Principal: "bob", Method: "tools/call", Backend: "docs", Target: "delete", Old: "allow", New: "deny", Reasons: []string{"delete is not allowed"}},
				}},
				{Change: "allow→deny", Rule: "candidate/no-etc", Count: 1, Examples: []ReplayExample{
					{Seq: 5, Principal: "alice", Method: "tools/call", Backend: "files", Target: "read", Old: "allow", New: "deny", Reasons: []string{"/etc/shadow is off limits"}},
				}},
				{Change: "allow→deny", Rule: "candidate/no-secret", Count: 1, Examples: []ReplayExample{
					{Seq: 9, Principal: "alice", Method: "resources/read", Backend: "docs", Target: "secret://key", Old: "allow", New: "deny", Reasons: []string{"secret resources are off limits"}},
				}},
			},
		},
		{
			name: "replay / a lenient candidate names the rule that no longer denies",
			set:  lenient, rows: 14, replayed: 9, unchanged: 8, skipped: skipped,
			changes: map[string]int{"deny→allow": 1},
			groups: []ReplayGroup{
				{Change: "deny→allow", Rule: "base/no-drop", Count: 1, Examples: []ReplayExample{
					{Seq: 7, Principal: "alice", Method: "tools/call", Backend: "db", Target: "drop", Old: "deny", New: "allow", Reasons: []string{"drop is not allowed"}},
				}},
			},
		},
		{
			name: "replay / a filter selects the rows",
			set:  candidate, opts: ReplayOptions{Filter: gateway.AuditFilter{Principal: "bob"}},
			rows: 1, replayed: 1, unchanged: 0, skipped: map[string]int{},
			changes: map[string]int{"allow→deny": 1},
			groups: []ReplayGroup{
				{Change: "allow→deny", Rule: "candidate/no-delete", Count: 1, Examples: []ReplayExample{
					{Seq: rl.deletes[1], Principal: "bob", Method: "tools/call", Backend: "docs", Target: "delete", Old: "allow", New: "deny", Reasons: []string{"delete is not allowed"}},
				}},
			},
		},
		{
			name: "replay / an empty selection",
			set:  candidate, opts: ReplayOptions{Filter: gateway.AuditFilter{Principal: "nobody"}},
			skipped: map[string]int{}, changes: map[string]int{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := Replay(ctx, tt.set, rl.log, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Rows != tt.rows || rep.Replayed != tt.replayed || rep.Unchanged != tt.unchanged {
				t.Errorf("rows %d replayed %d unchanged %d, want %d %d %d", rep.Rows, rep.Replayed, rep.Unchanged, tt.rows, tt.replayed, tt.unchanged)
			}
			if !maps.Equal(rep.Skipped, tt.skipped) {
				t.Errorf("Skipped = %v, want %v", rep.Skipped, tt.skipped)
			}
			if !maps.Equal(rep.Changes, tt.changes) {
				t.Errorf("Changes = %v, want %v", rep.Changes, tt.changes)
			}
			if len(rep.Groups) != len(tt.groups) {
				t.Fatalf("Groups = %+v, want %+v", rep.Groups, tt.groups)
			}
			for i, g := range rep.Groups {
				w := tt.groups[i]
				if g.Change != w.Change || g.Rule != w.Rule || g.Count != w.Count || len(g.Examples) != len(w.Examples) {
					t.Errorf("group %d = %s %s %d (%d examples), want %s %s %d (%d examples)", i, g.Change, g.Rule, g.Count, len(g.Examples), w.Change, w.Rule, w.Count, len(w.Examples))
					continue
				}
				for j, e := range g.Examples {
					we := w.Examples[j]
					if e.Seq != we.Seq || e.Principal != we.Principal || e.Method != we.Method || e.Backend != we.Backend ||
						e.Target != we.Target || e.Old != we.Old || e.New != we.New || !slices.Equal(e.Reasons, we.Reasons) || !e.Time.Equal(testTime) {
						t.Errorf("group %s example %d = %+v, want %+v", g.Rule, j, e, we)
					}
				}
			}
			if tt.rows > 0 && !slices.Equal(rep.Versions, []string{rl.base.Version()}) {
				t.Errorf("Versions = %q, want the base policy's", rep.Versions)
			}
			out := rep.String()
			if len(tt.changes) == 0 {
				if !strings.Contains(out, "no decision changes") {
					t.Errorf("String():\n%s", out)
				}
			} else {
				for _, g := range tt.groups {
					if !strings.Contains(out, g.Change) || !strings.Contains(out, g.Rule) {
						t.Errorf("String() lacks %s %s:\n%s", g.Change, g.Rule, out)
					}
				}
			}
		})
	}

	t.Run("replay / a policy that fails on recorded input counts as a denial", func(t *testing.T) {
		broken := mustLoad(t, policyDir(t, map[string]string{"a.rego": regoFile(`decision := {"allow": to_number(input.method) > 0}`)}))
		rep, err := Replay(ctx, broken, rl.log, ReplayOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Every replayed row was allowed but the drop.
		if rep.Changes["allow→deny"] != 8 || len(rep.Groups) != 1 || rep.Groups[0].Rule != RuleError || len(rep.Groups[0].Examples) != 3 {
			t.Errorf("Changes %v, Groups %+v", rep.Changes, rep.Groups)
		}
	})
}

func TestRecordedInput(t *testing.T) {
	in := NewInputs(testBackends)
	tests := []struct {
		name string
		x    *gateway.Exchange
	}{
		{name: "round trip / a tool call", x: toolCall(alice, "docs", "search", `{"q":"needle","filters":{"tags":["a","b"],"n":1.5e3},"empty":{}}`, `{"name":"search","annotations":{"readOnlyHint":true}}`)},
		{name: "round trip / a tool call without arguments", x: toolCall(alice, "docs", "search", "", "")},
		{name: "round trip / a prompt", x: func() *gateway.Exchange {
			x := request(alice, "docs", "prompts/get", "summary", `{"name":"docs__summary","arguments":{"topic":"q3"}}`)
			x.Arguments, _ = jsonrpc.Member(x.Message.Params, "arguments")
			return x
		}()},
		{name: "round trip / a resource read", x: request(anonymous, "docs", "resources/read", "file:///a", `{"uri":"file:///a"}`)},
		{name: "round trip / a sampling request", x: serverRequest(alice, "docs", "sampling/createMessage", `{"messages":[{"role":"user","content":{"type":"text","text":"hi"}}],"maxTokens":1}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := in.Build(tt.x)
			if err != nil {
				t.Fatal(err)
			}
			tt.x.Decision = &gateway.Decision{Allow: true, PolicyVersion: "v", Input: Recorded(doc)}
			got, reason := RecordedInput(auditRow(t, tt.x, false, false))
			if reason != "" {
				t.Fatalf("RecordedInput skipped: %s", reason)
			}
			if doc.Compare(got) != 0 {
				t.Errorf("rebuilt input differs:\n got %s\nwant %s", appendJSON(nil, got), appendJSON(nil, doc))
			}
		})
	}

	t.Run("skip / digest arguments of a call", func(t *testing.T) {
		x := toolCall(alice, "docs", "search", `{"q":"x"}`, "")
		doc, _ := in.Build(x)
		x.Decision = &gateway.Decision{Allow: true, PolicyVersion: "v", Input: Recorded(doc)}
		if _, reason := RecordedInput(auditRow(t, x, false, true)); reason != SkipDigest {
			t.Errorf("reason %q, want %q", reason, SkipDigest)
		}
		r := auditRow(t, x, false, false)
		r.Arguments = "sha256-raw:00"
		if _, reason := RecordedInput(r); reason != SkipDigest {
			t.Errorf("raw digest: reason %q, want %q", reason, SkipDigest)
		}
	})

	t.Run("skip / input that is not an object", func(t *testing.T) {
		for _, in := range []string{`[1]`, `"x"`, `{`, ``} {
			if _, reason := RecordedInput(&gateway.AuditRecord{Kind: "request", Method: "ping", PolicyInput: in}); reason != SkipBadInput {
				t.Errorf("input %q: reason %q, want %q", in, reason, SkipBadInput)
			}
		}
	})
}

var _ = ast.Object(nil)
