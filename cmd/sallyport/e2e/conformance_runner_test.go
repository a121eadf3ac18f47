package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// These tests check the conformance runner itself on hand-made suite output;
// they need neither Node nor the gateway.

var runnerScenarios = []string{"tools-list", "tools-call-with-progress", "server-sse-polling", "resources-subscribe", dnsRebindingScenario, "ping"}

// fakeSuiteOutput writes an output folder the way the suite does: checks per
// scenario; nil checks means a folder without checks.json.
func fakeSuiteOutput(t *testing.T, results map[string]*string) string {
	t.Helper()
	dir := t.TempDir()
	for scenario, checks := range results {
		d := filepath.Join(dir, "server-"+scenario+"-2026-11-24T00-02-29-716Z")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if checks != nil {
			if err := os.WriteFile(filepath.Join(d, "checks.json"), []byte(*checks), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func ptr(s string) *string { return &s }

func TestConformanceRunnerParsesSuiteOutput(t *testing.T) {
	out := fakeSuiteOutput(t, map[string]*string{
		"tools-list": ptr(`[{"id":"tools-list","status":"SUCCESS"}]`),
		"tools-call-with-progress": ptr(`[{"id":"tools-call-with-progress","status":"FAILURE","errorMessage":"got 2"},
			{"id":"tools-call-with-progress","status":"SUCCESS"}]`),
		"server-sse-polling":  ptr(`[{"id":"outgoing-request","status":"INFO"}]`),
		"resources-subscribe": nil, // threw
		dnsRebindingScenario: ptr(`[{"id":"localhost-host-rebinding-rejected","status":"SUCCESS"},
			{"id":"localhost-host-valid-accepted","status":"WARNING"}]`),
	})
	stdout := "=== SUMMARY ===\n✓ tools-list: 1 passed, 0 failed\n✗ resources-subscribe: 0 passed, 1 failed\n"
	run, err := parseSuiteResults("x", runnerScenarios, out, stdout)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"tools-list/tools-list":                                     statusSuccess,
		"tools-call-with-progress/tools-call-with-progress":         statusFailure, // the worse of two
		"resources-subscribe/resources-subscribe":                   statusFailure, // no checks.json
		dnsRebindingScenario + "/localhost-host-rebinding-rejected": statusSuccess,
		dnsRebindingScenario + "/localhost-host-valid-accepted":     statusWarning,
		"ping/ping": statusFailure, // never ran
	}
	got := map[string]string{}
	for k, c := range run.Checks {
		got[k] = c.Status
	}
	for k, s := range want {
		if got[k] != s {
			t.Errorf("%s: status %q, want %q", k, got[k], s)
		}
	}
	if len(got) != len(want) {
		t.Errorf("parsed %v; want exactly %v (INFO checks left out)", got, want)
	}
	if p, n := run.counts(); p != 2 || n != 6 {
		t.Errorf("counts = %d/%d, want 2/6", p, n)
	}
	if !run.clean("server-sse-polling") || run.clean(dnsRebindingScenario) {
		t.Error("clean: want server-sse-polling clean (INFO only) and dns-rebinding-protection not (a WARNING)")
	}

	if _, err := parseSuiteResults("x", runnerScenarios, t.TempDir(), "crashed"); err == nil {
		t.Error("a run with no results and no summary parsed without error")
	}
	stray := fakeSuiteOutput(t, map[string]*string{"no-such-scenario": ptr(`[]`)})
	if _, err := parseSuiteResults("x", runnerScenarios, stray, ""); err == nil {
		t.Error("an unknown scenario folder parsed without error")
	}
}

func TestConformanceRunnerComparesRuns(t *testing.T) {
	run := func(checks ...suiteCheck) *suiteRun {
		r := &suiteRun{Scenarios: runnerScenarios, Checks: map[string]*suiteCheck{}}
		for _, c := range checks {
			r.Checks[c.key()] = &c
			r.Order = append(r.Order, c.key())
		}
		return r
	}
	pass := func(scenario, id string) suiteCheck {
		return suiteCheck{Scenario: scenario, ID: id, Status: statusSuccess}
	}
	fail := func(scenario, id, status string) suiteCheck {
		return suiteCheck{Scenario: scenario, ID: id, Status: status, Message: "broken"}
	}
	for _, tc := range []struct {
		name            string
		direct, through *suiteRun
		expected        map[string]bool
		regressions     []string // check names (scenario/id, or the scenario when the id is the same), in order
		forgiven        int
	}{
		{
			name:   "pass / the same checks pass both ways",
			direct: run(pass("tools-list", "tools-list")), through: run(pass("tools-list", "tools-list")),
		},
		{
			name:   "regression / passed directly, failed through the gateway",
			direct: run(pass("tools-list", "tools-list")), through: run(fail("tools-list", "tools-list", statusFailure)),
			regressions: []string{"tools-list"},
		},
		{
			name:   "regression / passed directly, absent through the gateway",
			direct: run(pass("ping", "ping")), through: run(),
			regressions: []string{"ping"},
		},
		{
			name:    "ignored / failed directly, so nothing to keep",
			direct:  run(fail("tools-call-with-progress", "tools-call-with-progress", statusFailure)),
			through: run(fail("tools-call-with-progress", "tools-call-with-progress", statusFailure)),
		},
		{
			name:     "forgiven / the scenario is an expected failure",
			direct:   run(pass("tools-call-with-progress", "tools-call-with-progress")),
			through:  run(fail("tools-call-with-progress", "tools-call-with-progress", statusFailure)),
			expected: map[string]bool{"tools-call-with-progress": true},
			forgiven: 1,
		},
		{
			name:        "regression / dns-rebinding-protection is never forgiven",
			direct:      run(pass(dnsRebindingScenario, "localhost-host-valid-accepted")),
			through:     run(fail(dnsRebindingScenario, "localhost-host-valid-accepted", statusFailure)),
			expected:    map[string]bool{dnsRebindingScenario: true},
			regressions: []string{dnsRebindingScenario + "/localhost-host-valid-accepted"},
		},
		{
			name:        "regression / a warning only the gateway run has, in a scenario clean directly",
			direct:      run(),
			through:     run(fail("server-sse-polling", "server-sse-test-reconnection-tool", statusWarning)),
			regressions: []string{"server-sse-polling/server-sse-test-reconnection-tool"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			regressions, forgiven := compareRuns(tc.direct, tc.through, tc.expected)
			if len(regressions) != len(tc.regressions) {
				t.Fatalf("regressions %q; want %d", regressions, len(tc.regressions))
			}
			for i, want := range tc.regressions {
				if !strings.HasPrefix(regressions[i], want+":") {
					t.Errorf("regression %d = %q; want it about %s", i, regressions[i], want)
				}
			}
			if len(forgiven) != tc.forgiven {
				t.Errorf("forgiven %q; want %d", forgiven, tc.forgiven)
			}
		})
	}
}

func TestConformanceExpectedFailuresFile(t *testing.T) {
	s := needConformance(t)
	path := filepath.Join(repoRoot, expectedFailuresFile)
	set, err := loadExpectedFailures(path, s.scenarios)
	if err != nil {
		t.Fatal(err)
	}
	if set[dnsRebindingScenario] {
		t.Errorf("%s lists %s: the gateway must pass it itself", expectedFailuresFile, dnsRebindingScenario)
	}
	others := slices.DeleteFunc(slices.Clone(s.scenarios), func(name string) bool { return set[name] })
	if _, err := loadExpectedFailures(path, others); err == nil && len(set) > 0 {
		t.Error("loadExpectedFailures accepted scenario names the suite does not know")
	}
}
