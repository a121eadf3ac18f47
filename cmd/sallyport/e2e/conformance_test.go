package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestConformance runs the official MCP conformance suite (server scenarios,
// --suite all) against two fixtures, each directly and through `sallyport
// serve`, and asserts that every check that passes directly also passes
// through the gateway:
//
//	a. mcp-go's fixture over Streamable HTTP, directly;
//	c. the gateway with that fixture as its `http` backend;
//	b. Sallyport's own fixture (cmd/conformance-fixture) over Streamable HTTP, directly;
//	d. the gateway with that fixture as its `stdio` backend.
//
// For a against c, the scenarios listed in .ci/conformance/expected-failures.yml
// are forgiven: mcp-go's fixture sometimes loses the notifications it sends
// just before a tool returns (measured by .ci/conformance/flaky.sh). For b
// against d nothing is forgiven: that fixture waits until its notifications
// are written before it returns. dns-rebinding-protection must pass through
// the gateway in both, whatever the fixture does.
//
// The gateway does not pass yet (issue 3), so the test runs only with
// SALLYPORT_CONFORMANCE=1.
func TestConformance(t *testing.T) {
	if os.Getenv(envConformance) != "1" {
		t.Skipf("SKIPPED: the MCP conformance suite through the gateway runs only with %s=1 "+
			"(issue 3: it does not pass yet, so make test leaves it out)", envConformance)
	}
	s := needConformance(t)
	expected, err := loadExpectedFailures(filepath.Join(repoRoot, expectedFailuresFile), s.scenarios)
	if err != nil {
		t.Fatal(err)
	}
	mcpgoBin, ownBin := buildFixtures(t, t.TempDir())

	var all []*suiteRun
	t.Run("mcp-go fixture as an http backend", func(t *testing.T) {
		url := startMCPGoFixture(t, mcpgoBin)
		direct := s.run(t, "a: mcp-go direct", url)
		g := conformanceGateway(t, remoteHTTP("mcpgo", url))
		through := s.run(t, "c: gateway, mcp-go http", g.URL)
		all = append(all, direct, through)
		checkThroughGateway(t, direct, through, expected)
	})
	t.Run("own fixture as a stdio backend", func(t *testing.T) {
		url := startOwnFixtureHTTP(t, ownBin)
		direct := s.run(t, "b: own direct", url)
		g := conformanceGateway(t, backendConfig{
			ID: "fixture", Transport: "stdio", Command: ownBin, Timeouts: defaultTimeouts,
		})
		through := s.run(t, "d: gateway, own stdio", g.URL)
		all = append(all, direct, through)
		checkThroughGateway(t, direct, through, nil)
	})
	if len(all) > 0 {
		t.Logf("conformance checks, directly and through the gateway:\n%s", formatRunsTable(all...))
	}
}

// checkThroughGateway fails t for every check that passed directly and not
// through the gateway (unless its scenario is in expected), and unless both
// DNS-rebinding checks passed through the gateway.
func checkThroughGateway(t *testing.T, direct, through *suiteRun, expected map[string]bool) {
	t.Helper()
	t.Logf("\n%s", formatRunsTable(direct, through))
	regressions, forgiven := compareRuns(direct, through, expected)
	for _, f := range forgiven {
		t.Logf("forgiven (%s lists its scenario): %s", expectedFailuresFile, f)
	}
	if len(regressions) > 0 {
		t.Errorf("%d check(s) pass against the fixture directly but not through the gateway:\n  %s",
			len(regressions), strings.Join(regressions, "\n  "))
	}
	dns := 0
	for _, c := range through.Checks {
		if c.Scenario != dnsRebindingScenario {
			continue
		}
		dns++
		if c.Status != statusSuccess {
			t.Errorf("%s: %s through the gateway: %s (the gateway must do this itself)", c.key(), c.Status, c.Message)
		}
	}
	if dns == 0 {
		t.Errorf("%s: no checks through the gateway", dnsRebindingScenario)
	}
	for scenario := range expected {
		if direct.clean(scenario) && through.clean(scenario) {
			t.Logf("%s lists %s, and it passed directly and through the gateway in this run: "+
				"if .ci/conformance/flaky.sh shows it passing every time, remove it", expectedFailuresFile, scenario)
		}
	}
}

// TestConformanceFlakiness runs the suite SALLYPORT_CONFORMANCE_RUNS times
// against both fixtures directly (and, with SALLYPORT_CONFORMANCE_GATEWAY=1,
// through the gateway too) and reports, per check, in how many runs it
// passed. The report goes to the file SALLYPORT_CONFORMANCE_REPORT names, or
// to the test log. .ci/conformance/flaky.sh runs it.
func TestConformanceFlakiness(t *testing.T) {
	runsEnv := os.Getenv(envConformanceRuns)
	if runsEnv == "" {
		t.Skipf("SKIPPED: set %s=N (or run .ci/conformance/flaky.sh) to measure the conformance fixtures' flakiness", envConformanceRuns)
	}
	n, err := strconv.Atoi(runsEnv)
	if err != nil || n < 1 || n > 100 {
		t.Fatalf("%s=%q: want a number of runs from 1 to 100", envConformanceRuns, runsEnv)
	}
	s := needConformance(t)
	expected, err := loadExpectedFailures(filepath.Join(repoRoot, expectedFailuresFile), s.scenarios)
	if err != nil {
		t.Fatal(err)
	}
	mcpgoBin, ownBin := buildFixtures(t, t.TempDir())

	type target struct{ label, url string }
	mcpgoURL := startMCPGoFixture(t, mcpgoBin)
	targets := []target{
		{"a: mcp-go direct", mcpgoURL},
		{"b: own direct", startOwnFixtureHTTP(t, ownBin)},
	}
	if os.Getenv(envConformanceGW) == "1" {
		gc := conformanceGateway(t, remoteHTTP("mcpgo", mcpgoURL))
		gd := conformanceGateway(t, backendConfig{ID: "fixture", Transport: "stdio", Command: ownBin, Timeouts: defaultTimeouts})
		targets = append(targets, target{"c: gateway, mcp-go http", gc.URL}, target{"d: gateway, own stdio", gd.URL})
	}
	runs := make([][]*suiteRun, len(targets))
	for i := range n {
		for j, tg := range targets {
			runs[j] = append(runs[j], s.run(t, fmt.Sprintf("%s #%d", tg.label, i+1), tg.url))
		}
	}
	labels := make([]string, len(targets))
	for j, tg := range targets {
		labels[j] = tg.label
	}
	report := formatFlakiness(labels, runs, expected)
	if path := os.Getenv(envConformanceReport); path != "" {
		if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Logf("\n%s", report)
}

// formatFlakiness tabulates, per check, in how many of each column's runs it
// passed, and notes what the expected-failures file should say about the
// first column (mcp-go's fixture directly).
func formatFlakiness(labels []string, runs [][]*suiteRun, expected map[string]bool) string {
	n := len(runs[0])
	keys, names := checkKeys(slices.Concat(runs...))
	// passes counts the runs in which check k passed and those that had it.
	passes := func(col []*suiteRun, k string) (passed, present int) {
		for _, r := range col {
			if c, ok := r.Checks[k]; ok {
				present++
				if c.Status == statusSuccess {
					passed++
				}
			}
		}
		return passed, present
	}
	rows := [][]string{append([]string{"check"}, labels...)}
	for _, k := range keys {
		row := []string{names[k]}
		for _, col := range runs {
			cell := "-" // the suite never reported this check here
			if p, present := passes(col, k); present > 0 {
				cell = fmt.Sprintf("%d/%d", p, n)
			}
			row = append(row, cell)
		}
		rows = append(rows, row)
	}
	allPassed := []string{"runs with every check passed"}
	for _, col := range runs {
		clean := 0
		for _, r := range col {
			if p, total := r.counts(); p == total {
				clean++
			}
		}
		allPassed = append(allPassed, fmt.Sprintf("%d/%d", clean, n))
	}
	rows = append(rows, allPassed)

	var b strings.Builder
	fmt.Fprintf(&b, "conformance checks passed, out of %d runs each\n\n%s", n, formatTable(rows))

	// What the first column says about the expected-failures file.
	var notes []string
	first := runs[0]
	for _, k := range keys {
		scenario, _, _ := strings.Cut(k, "/")
		if p, _ := passes(first, k); p > 0 && p < n {
			if !expected[scenario] {
				notes = append(notes, fmt.Sprintf("%s is flaky in %q (%d/%d) and %s does not list %s", names[k], labels[0], p, n, expectedFailuresFile, scenario))
			}
		}
	}
	listed := make([]string, 0, len(expected))
	for s := range expected {
		listed = append(listed, s)
	}
	slices.Sort(listed)
	for _, s := range listed {
		clean := 0
		for _, r := range first {
			if r.clean(s) {
				clean++
			}
		}
		if clean == n {
			notes = append(notes, fmt.Sprintf("%s lists %s, which passed in all %d runs of %q: remove it", expectedFailuresFile, s, n, labels[0]))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	return b.String()
}
