package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The policy the gateway tests run with: per-principal tool visibility,
// a per-argument rule, and three arguments that make the evaluation fail
// (an error, a deadline, an undefined decision).
const e2ePolicy = `package sallyport

deny contains {"rule": "e2e/customers-need-dba", "reason": "only the dba group may use customer records"} if {
	input.tool.backend_name in {"lookup_customer", "delete_records"}
	not "dba" in input.principal.groups
}

deny contains {"rule": "e2e/env-needs-ops", "reason": "only the ops group may read the server's environment"} if {
	input.tool.backend_name == "get-env"
	not "ops" in input.principal.groups
}

deny contains {"rule": "e2e/no-private-files", "reason": "files under private/ are off limits"} if {
	input.tool.backend_name == "read_file"
	startswith(input.arguments.path, "private/")
}

# A type error: with strict built-in errors this fails the evaluation.
deny contains {"rule": "e2e/broken", "reason": "unreachable"} if {
	input.arguments.path == "boom"
	to_number("not a number") > 0
}

# Far more work than the deadline allows.
deny contains {"rule": "e2e/slow", "reason": "unreachable"} if {
	input.arguments.path == "slow"
	some i in numbers.range(1, 5000)
	some j in numbers.range(1, 5000)
	i * j == -1
}

undefined_case if input.arguments.path == "undefined"

decision := {
	"allow": count(deny) == 0,
	"deny_reasons": {d.reason | some d in deny},
	"rules": {d.rule | some d in deny} | {"e2e/allow" | count(deny) == 0},
} if not undefined_case
`

func writePolicy(t testing.TB, dir, name, text string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Written beside and renamed, as a deployment tool would: the gateway
	// never reads half a file.
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

// rawList returns the names in s's tools/list.
func rawList(t testing.TB, s *rawSession, id int) []string {
	t.Helper()
	r := doRaw(t, s.newRawRequest(t, []byte(`{"jsonrpc":"2.0","id":`+itoa(id)+`,"method":"tools/list"}`)))
	m, ok := r.response()
	if !ok || m.Error != nil {
		t.Fatalf("tools/list: HTTP %d: %s", r.Status, r.Body)
	}
	var res struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
		NextCursor string `json:"nextCursor"`
	}
	if err := json.Unmarshal(m.Result, &res); err != nil {
		t.Fatalf("tools/list result: %v: %s", err, m.Result)
	}
	if res.NextCursor != "" {
		t.Fatalf("tools/list has a second page; the test expects one")
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	return names
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// readyz returns the gateway's /readyz policy component.
func readyzPolicy(t testing.TB, g *gateway) (version, lastError string) {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(g.URL, "/mcp") + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Components struct {
			Policy struct {
				Version   string `json:"version"`
				LastError string `json:"last_error"`
			} `json:"policy"`
		} `json:"components"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("readyz: %v", err)
	}
	return body.Components.Policy.Version, body.Components.Policy.LastError
}

func metricsText(t testing.TB, g *gateway) string {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(g.URL, "/mcp") + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

// wantDenied checks that r is a policy refusal whose message contains msg.
func wantDenied(t testing.TB, what string, r rawResponse, msg string) {
	t.Helper()
	e := r.rpcErr()
	if e == nil || e.Code != -32003 || !strings.Contains(e.Message, msg) {
		t.Errorf("%s: HTTP %d: %s; want error -32003 containing %q", what, r.Status, r.Body, msg)
	}
}

func TestPolicyThroughTheGateway(t *testing.T) {
	needNode(t)
	sandbox := t.TempDir()
	os.MkdirAll(filepath.Join(sandbox, "private"), 0o755)
	os.WriteFile(filepath.Join(sandbox, "private", "salaries.txt"), []byte("confidential\n"), 0o644)
	os.WriteFile(filepath.Join(sandbox, "notes.txt"), []byte("hello\n"), 0o644)
	policyDir := filepath.Join(t.TempDir(), "policy")
	writePolicy(t, policyDir, "e2e.rego", e2ePolicy)

	cfg := baseConfig(demoStdio("demo", sandbox, "session"), everythingStdio("every", "session"))
	cfg.Policy = &policyConfig{Paths: []string{policyDir}, Timeout: "500ms", Reload: "100ms"}
	g := newGateway(t, cfg)
	alice, bob := g.token("alice", "dba", "ops"), g.token("bob", "dev")
	g.serve()
	a, b := openRawSession(t, g.URL, alice), openRawSession(t, g.URL, bob)
	version, _ := readyzPolicy(t, g)

	t.Run("a tool the principal may not call is hidden from its list and denied on call", func(t *testing.T) {
		aliceTools, bobTools := rawList(t, a, 10), rawList(t, b, 10)
		for _, name := range []string{"demo__lookup_customer", "demo__delete_records", "every__get-env"} {
			if !slices.Contains(aliceTools, name) {
				t.Errorf("alice (dba, ops) does not see %s: %v", name, aliceTools)
			}
			if slices.Contains(bobTools, name) {
				t.Errorf("bob (dev) sees %s: %v", name, bobTools)
			}
		}
		for _, name := range []string{"demo__read_file", "every__echo"} {
			if !slices.Contains(bobTools, name) {
				t.Errorf("bob does not see %s, which no rule hides: %v", name, bobTools)
			}
		}
		if len(aliceTools)-len(bobTools) != 3 {
			t.Errorf("alice sees %d tools and bob %d; want exactly 3 hidden from bob", len(aliceTools), len(bobTools))
		}
		wantDenied(t, "bob calls a hidden tool", b.call(t, 11, "demo__lookup_customer", map[string]any{"customer_id": "cus_1001"}),
			"only the dba group may use customer records")
		wantDenied(t, "bob calls a hidden tool of an npm server", b.call(t, 12, "every__get-env", map[string]any{}),
			"only the ops group may read the server's environment")
		mustRawCall(t, a, 11, "demo__lookup_customer", map[string]any{"customer_id": "cus_1001"})
		mustRawCall(t, b, 13, "every__echo", map[string]any{"message": "hi"})
	})

	t.Run("a rule on an argument denies that call and no other", func(t *testing.T) {
		wantDenied(t, "read_file private/salaries.txt", a.call(t, 20, "demo__read_file", map[string]any{"path": "private/salaries.txt"}),
			"files under private/ are off limits")
		mustRawCall(t, a, 21, "demo__read_file", map[string]any{"path": "notes.txt"})
	})

	t.Run("an evaluation error, a deadline and an undefined decision each deny", func(t *testing.T) {
		for i, c := range []struct{ path, msg string }{
			{"boom", "policy evaluation failed"},
			{"slow", "policy evaluation exceeded its deadline"},
			{"undefined", "policy decision is undefined"},
		} {
			wantDenied(t, "read_file "+c.path, a.call(t, 30+i, "demo__read_file", map[string]any{"path": c.path}), c.msg)
		}
	})

	t.Run("a policy that does not compile never replaces the working one", func(t *testing.T) {
		writePolicy(t, policyDir, "broken.rego", "package sallyport\n\ndeny contains x if {\n")
		var lastErr string
		if !waitFor(10*time.Second, func() bool { _, lastErr = readyzPolicy(t, g); return lastErr != "" }) {
			t.Fatalf("readyz never reported the broken policy")
		}
		if !strings.Contains(lastErr, "broken.rego:") {
			t.Errorf("readyz last_error %q does not name the file and line", lastErr)
		}
		if v, _ := readyzPolicy(t, g); v != version {
			t.Errorf("policy version changed to %s after a broken file; want %s kept", v, version)
		}
		if m := metricsText(t, g); !strings.Contains(m, "sallyport_policy_reload_failing 1") || !strings.Contains(m, "sallyport_policy_reload_failures_total 1") {
			t.Errorf("metrics do not show the failed reload:\n%s", m)
		}
		wantDenied(t, "bob's hidden tool while the broken file is there", b.call(t, 40, "demo__lookup_customer", map[string]any{"customer_id": "cus_1001"}),
			"only the dba group may use customer records")
		mustRawCall(t, a, 40, "demo__read_file", map[string]any{"path": "notes.txt"})

		// Fixed, and the customer rule dropped: the new set goes in.
		os.Remove(filepath.Join(policyDir, "broken.rego"))
		writePolicy(t, policyDir, "e2e.rego", strings.Replace(e2ePolicy, `input.tool.backend_name in {"lookup_customer", "delete_records"}`, `input.tool.backend_name in {"delete_records"}`, 1))
		var v string
		if !waitFor(10*time.Second, func() bool { v, lastErr = readyzPolicy(t, g); return v != version && lastErr == "" }) {
			t.Fatalf("the fixed policy was not loaded: version %s, last error %q", v, lastErr)
		}
		if m := metricsText(t, g); !strings.Contains(m, "sallyport_policy_reload_failing 0") || !strings.Contains(m, "sallyport_policy_reloads_total 1") {
			t.Errorf("metrics after the fix:\n%s", m)
		}
		if tools := rawList(t, b, 41); !slices.Contains(tools, "demo__lookup_customer") || slices.Contains(tools, "demo__delete_records") {
			t.Errorf("bob's list after the reload: %v; want lookup_customer shown and delete_records still hidden", tools)
		}
		mustRawCall(t, b, 42, "demo__lookup_customer", map[string]any{"customer_id": "cus_1002"})
		version = v
	})

	g.proc.stop(t)
	rows := exportRows(t, "-c", g.cfgPath)
	t.Run("audit rows record the decision, its rules and reasons, and the policy version", func(t *testing.T) {
		var denied, allowed int
		for _, r := range rows {
			if r.Kind != "request" || r.Method != "tools/call" {
				continue
			}
			if r.PolicyVersion == "" || r.PolicyInput == "" {
				t.Errorf("row %s has no policy version or input", r)
			}
			switch r.Decision {
			case "deny":
				denied++
				if r.Outcome != "refused" || len(r.Rules) == 0 || len(r.Reasons) == 0 {
					t.Errorf("denied row %s: outcome %q rules %v reasons %v", r, r.Outcome, r.Rules, r.Reasons)
				}
			case "allow":
				allowed++
				if !slices.Contains(r.Rules, "e2e/allow") {
					t.Errorf("allowed row %s: rules %v", r, r.Rules)
				}
			}
			if r.Target == "read_file" && strings.Contains(r.Arguments, "private/") {
				if r.Decision != "deny" || !slices.Contains(r.Rules, "e2e/no-private-files") {
					t.Errorf("the private file read: decision %s rules %v", r.Decision, r.Rules)
				}
			}
			if strings.Contains(r.Arguments, `"slow"`) && !slices.Contains(r.Rules, "sallyport/policy-error") {
				t.Errorf("the slow evaluation: rules %v, want sallyport/policy-error", r.Rules)
			}
		}
		if denied != 7 || allowed != 5 {
			t.Errorf("tools/call rows: %d denied, %d allowed; want 7 and 5", denied, allowed)
		}
		if last := rows[len(rows)-1]; last.PolicyVersion != version {
			t.Errorf("the last row has policy version %s; want the reloaded %s", last.PolicyVersion, version)
		}
	})
}

// TestPolicyReplay records a session under one policy, then replays a
// candidate policy on it and checks the exact changes reported.
func TestPolicyReplay(t *testing.T) {
	sandbox := t.TempDir()
	os.WriteFile(filepath.Join(sandbox, "notes.txt"), []byte("hello\n"), 0o644)
	os.MkdirAll(filepath.Join(sandbox, "private"), 0o755)
	os.WriteFile(filepath.Join(sandbox, "private", "x.txt"), []byte("x\n"), 0o644)
	policyDir := filepath.Join(t.TempDir(), "policy")
	writePolicy(t, policyDir, "e2e.rego", e2ePolicy)
	cfg := baseConfig(demoStdio("demo", sandbox, "session"))
	cfg.Policy = &policyConfig{Paths: []string{policyDir}, Timeout: e2ePolicyTimeout}
	g := newGateway(t, cfg)
	alice, bob := g.token("alice", "dba"), g.token("bob", "dev")
	g.serve()
	a, b := openRawSession(t, g.URL, alice), openRawSession(t, g.URL, bob)
	mustRawCall(t, a, 2, "demo__read_file", map[string]any{"path": "notes.txt"})                                     // allowed; the candidate denies
	mustRawCall(t, a, 3, "demo__read_file", map[string]any{"path": "notes.txt"})                                     // allowed; the candidate denies
	mustRawCall(t, a, 4, "demo__lookup_customer", map[string]any{"customer_id": "cus_1001"})                         // allowed, stays
	wantDenied(t, "private", a.call(t, 5, "demo__read_file", map[string]any{"path": "private/x.txt"}), "off limits") // denied; the candidate denies it too
	wantDenied(t, "bob", b.call(t, 2, "demo__lookup_customer", map[string]any{"customer_id": "cus_1001"}), "dba")    // denied; the candidate allows
	g.proc.stop(t)

	// The candidate: customer records for everyone, no reads of files at all.
	candidate := filepath.Join(t.TempDir(), "candidate")
	writePolicy(t, candidate, "e2e.rego", strings.Replace(
		strings.Replace(e2ePolicy, `input.tool.backend_name in {"lookup_customer", "delete_records"}`, `input.tool.backend_name in {"delete_records"}`, 1),
		`deny contains {"rule": "e2e/no-private-files"`,
		`deny contains {"rule": "e2e/no-reads", "reason": "no file reads"} if input.tool.backend_name == "read_file"

deny contains {"rule": "e2e/no-private-files"`, 1))

	code, out, errOut := runSallyport(t, nil, "policy", "replay", "-c", g.cfgPath, "-p", candidate, "--since", "1h")
	if code != 0 {
		t.Fatalf("policy replay exited %d: %s\n%s", code, out, errOut)
	}
	t.Logf("policy replay:\n%s", out)
	for _, want := range []string{
		"3 decisions change (allow→deny 2, deny→allow 1)",
		`allow→deny           2  e2e/no-reads`,
		`deny→allow           1  e2e/customers-need-dba`,
		"bob  tools/call demo/lookup_customer  (only the dba group may use customer records)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("replay output lacks %q", want)
		}
	}
	// The private read was denied and stays denied (by two rules now): no change.
	if regexp.MustCompile(`deny→deny|e2e/no-private-files`).MatchString(out) {
		t.Errorf("replay reports the private read, whose verdict did not change")
	}
	// Replaying the policy that decided changes nothing.
	_, same, _ := runSallyport(t, nil, "policy", "replay", "-c", g.cfgPath, "-p", policyDir, "--since", "1h")
	if !strings.Contains(same, "no decision changes") {
		t.Errorf("replaying the recording policy:\n%s\nwant no decision changes", same)
	}
	// --fail-on-change for CI.
	if code, _, _ := runSallyport(t, nil, "policy", "replay", "-c", g.cfgPath, "-p", candidate, "--since", "1h", "--fail-on-change"); code != 3 {
		t.Errorf("--fail-on-change with changes exited %d; want 3", code)
	}
}
