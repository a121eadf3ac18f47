// Package e2e holds Sallyport's end-to-end tests: they build the real
// sallyport binary, start it on 127.0.0.1 in front of real MCP servers (the
// pinned reference servers from .ci/npm and sallyport's own demo server) and
// drive it with real clients (the official TypeScript SDK through
// testdata/tsclient.mjs, and mcp-go's Go client). Every process a test starts
// is stopped by its pid in t.Cleanup, and a test fails if a process it
// started left children behind.
//
// The Node dependencies come from .ci/testdeps.sh, or from the folder named by
// SALLYPORT_NODE_MODULES. Without them the Node-backed tests are skipped with a
// loud message, unless SALLYPORT_E2E_REQUIRED=1, when the package fails.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment variables the harness reads.
const (
	envNodeModules = "SALLYPORT_NODE_MODULES" // node_modules with the pinned packages
	envRequired    = "SALLYPORT_E2E_REQUIRED" // "1": missing Node dependencies fail the package
	envMarker      = "SALLYPORT_E2E_MARK"     // set on every gateway and stdio backend a test starts
	envRace        = "SALLYPORT_E2E_RACE"     // "1": build the gateway with the race detector
)

// Bounds on waiting. They only turn a hang into a failure; no test asserts
// how fast anything is.
const (
	startupWait  = 60 * time.Second // a process becoming ready
	stopWait     = 30 * time.Second // a process exiting after SIGTERM (the gateway allows itself 20 s)
	leftoverWait = 5 * time.Second  // children disappearing after their parent exited
	callWait     = 90 * time.Second // one MCP call
)

var (
	repoRoot     string // the module root, holding go.mod and .ci/
	sallyportBin string // the sallyport binary built by TestMain
	nodeBin      string // absolute path of node
	nodeModules  string // node_modules with the pinned test packages
	nodeMissing  string // why nodeModules is unusable; "" when it is usable
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	root, err := findRepoRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	repoRoot = root

	tmp, err := os.MkdirTemp("", "sallyport-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	sallyportBin = filepath.Join(tmp, "sallyport")
	buildArgs := []string{"build", "-o", sallyportBin}
	if os.Getenv(envRace) == "1" {
		buildArgs = append(buildArgs, "-race")
	}
	build := exec.Command("go", append(buildArgs, "github.com/sallyport/sallyport/cmd/sallyport")...)
	build.Dir = repoRoot
	build.Stdout = os.Stderr
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building sallyport: %v\n", err)
		return 1
	}
	nodeModules, nodeMissing = locateNodeModules()
	if nodeMissing != "" {
		if os.Getenv(envRequired) == "1" {
			fmt.Fprintf(os.Stderr, "e2e: %s=1 but the Node test dependencies are unusable: %s\n", envRequired, nodeMissing)
			return 1
		}
		fmt.Fprintf(os.Stderr, "\n"+
			"################################################################\n"+
			"# e2e: SKIPPING every test that needs Node: %s\n"+
			"# Run .ci/testdeps.sh (needs node and npm) or set %s.\n"+
			"# Set %s=1 to make this a failure.\n"+
			"################################################################\n\n",
			nodeMissing, envNodeModules, envRequired)
	}
	return m.Run()
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// locateNodeModules returns the node_modules folder with the pinned packages,
// or a reason it has none.
func locateNodeModules() (dir, missing string) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", "node is not on PATH"
	}
	nodeBin = node
	dir = os.Getenv(envNodeModules)
	if dir == "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, ".ci", "testdeps.sh"))
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Sprintf(".ci/testdeps.sh failed: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		dir = strings.TrimSpace(lines[len(lines)-1])
	}
	for _, pkg := range []string{
		"@modelcontextprotocol/sdk",
		"@modelcontextprotocol/server-everything",
		"@modelcontextprotocol/server-filesystem",
		"@modelcontextprotocol/server-memory",
	} {
		if _, err := os.Stat(filepath.Join(dir, pkg, "package.json")); err != nil {
			return "", fmt.Sprintf("%s has no %s", dir, pkg)
		}
	}
	return dir, ""
}

var recordInputsOnce sync.Once

// recordInputs stats the gateway's sources and the test bed's files so that
// "go test" counts them as inputs of this package: its result depends on the
// binary built from them, which it does not import, and a cached pass must not
// outlive a change to the gateway. Only accesses made while tests run are
// recorded, hence not in TestMain.
func recordInputs() {
	recordInputsOnce.Do(func() {
		_ = filepath.WalkDir(repoRoot, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				name := d.Name()
				if path != repoRoot && (name == "node_modules" || name == "bin" || (strings.HasPrefix(name, ".") && name != ".ci")) {
					return filepath.SkipDir
				}
				return nil
			}
			switch filepath.Ext(path) {
			case ".go", ".mod", ".sum", ".json", ".cjs", ".mjs", ".sh", ".rego", ".sql", ".yaml", ".yml":
				_, _ = os.Stat(path)
			}
			return nil
		})
	})
}

// needNode skips the test when the Node dependencies are unusable.
func needNode(t testing.TB) {
	t.Helper()
	recordInputs()
	if nodeMissing != "" {
		t.Skipf("SKIPPED: needs the Node test dependencies: %s", nodeMissing)
	}
}

// Paths of the pinned Node packages.
func everythingJS() string {
	return filepath.Join(nodeModules, "@modelcontextprotocol/server-everything/dist/index.js")
}
func filesystemJS() string {
	return filepath.Join(nodeModules, "@modelcontextprotocol/server-filesystem/dist/index.js")
}
func memoryJS() string {
	return filepath.Join(nodeModules, "@modelcontextprotocol/server-memory/dist/index.js")
}
func loopbackPreload() string {
	return filepath.Join(repoRoot, ".ci", "loopback.cjs")
}
func tsclientJS() string {
	return filepath.Join(repoRoot, "cmd", "sallyport", "e2e", "testdata", "tsclient.mjs")
}

func newMarker() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ---------------------------------------------------------------------------
// Gateway configuration

// gwConfig is sallyport's configuration file. It is written as JSON, which is
// YAML too.
type gwConfig struct {
	Listen   string          `json:"listen,omitempty"`
	Log      *logConfig      `json:"log,omitempty"`
	HTTP     *httpConfig     `json:"http,omitempty"`
	Auth     *authConfig     `json:"auth,omitempty"`
	Stdio    *stdioConfig    `json:"stdio,omitempty"`
	Database string          `json:"database,omitempty"` // "": sallyport.db beside the config file
	Audit    *auditConfig    `json:"audit,omitempty"`
	Policy   *policyConfig   `json:"policy,omitempty"`
	DLP      *dlpConfig      `json:"dlp,omitempty"` // nil: the gateway's DLP defaults
	Backends []backendConfig `json:"backends"`

	// Approvals is the approvals section (approvals_test.go); nil: defaults.
	Approvals *approvalsConfig `json:"approvals,omitempty"`
}

// dlpConfig is the dlp section; empty fields keep their defaults (DLP on,
// every detector, no rules: the built-in default actions).
type dlpConfig struct {
	Disabled  bool      `json:"disabled,omitempty"`
	Detectors []string  `json:"detectors,omitempty"`
	HashKey   string    `json:"hash_key,omitempty"`
	Rules     []dlpRule `json:"rules,omitempty"`
}

// dlpRule is one of dlp.rules; empty matchers match everything.
type dlpRule struct {
	Detectors []string `json:"detectors,omitempty"`
	Direction string   `json:"direction,omitempty"`
	Backends  []string `json:"backends,omitempty"`
	Tools     []string `json:"tools,omitempty"`
	Fields    []string `json:"fields,omitempty"`
	Values    []string `json:"values,omitempty"`
	Patterns  []string `json:"patterns,omitempty"`
	Action    string   `json:"action"`
}

// policyConfig is the policy section; empty fields keep their defaults
// (no paths: the embedded default policy).
type policyConfig struct {
	Paths   []string `json:"paths,omitempty"`
	Timeout string   `json:"timeout,omitempty"`
	Reload  string   `json:"reload,omitempty"`
}

// e2ePolicyTimeout is the evaluation deadline in end-to-end tests: the
// race detector makes evaluation many times slower than in production,
// and a loaded 2-core machine must not turn into spurious denials.
const e2ePolicyTimeout = "2s"

// auditConfig is the audit section; empty fields keep their defaults.
type auditConfig struct {
	Arguments           string `json:"arguments,omitempty"`
	SampleNotifications int    `json:"sample_notifications,omitempty"`
	Retention           string `json:"retention,omitempty"`
	Synchronous         string `json:"synchronous,omitempty"`
	BusyTimeout         string `json:"busy_timeout,omitempty"`
	Key                 string `json:"key,omitempty"`
	CheckpointEvery     int    `json:"checkpoint_every,omitempty"`
}

type logConfig struct {
	Level string `json:"level"`
}

type httpConfig struct {
	AllowedOrigins     []string `json:"allowed_origins,omitempty"`
	SessionIdleTimeout string   `json:"session_idle_timeout,omitempty"`
}

type authConfig struct {
	TokensFile string `json:"tokens_file,omitempty"`
	Anonymous  bool   `json:"anonymous"`
}

type stdioConfig struct {
	Principal string `json:"principal"`
}

type backendConfig struct {
	ID        string            `json:"id"`
	Transport string            `json:"transport"`
	Command   string            `json:"command,omitempty"`
	Args      []string          `json:"args,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	URL       string            `json:"url,omitempty"`
	Isolation string            `json:"isolation,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Timeouts  *timeoutsConfig   `json:"timeouts,omitempty"`

	// DestructiveTools are the backend's tools the configuration marks
	// destructive (the default policy holds them for approval).
	DestructiveTools []string `json:"destructive_tools,omitempty"`
}

type timeoutsConfig struct {
	Startup  string `json:"startup,omitempty"`
	Request  string `json:"request,omitempty"`
	Shutdown string `json:"shutdown,omitempty"`
}

var defaultTimeouts = &timeoutsConfig{Startup: "30s", Request: "60s", Shutdown: "5s"}

// baseConfig is the configuration most tests start from: loopback, debug
// logs, token auth, and the given backends.
func baseConfig(backends ...backendConfig) gwConfig {
	return gwConfig{
		Listen: "127.0.0.1:0",
		Log:    &logConfig{Level: "debug"},
		HTTP: &httpConfig{
			AllowedOrigins:     []string{"http://localhost:6274"},
			SessionIdleTimeout: "30m",
		},
		Auth:     &authConfig{Anonymous: false},
		Stdio:    &stdioConfig{Principal: "local"},
		Policy:   &policyConfig{Timeout: e2ePolicyTimeout},
		Backends: backends,
	}
}

func everythingStdio(id, isolation string) backendConfig {
	return backendConfig{
		ID: id, Transport: "stdio", Command: nodeBin,
		Args:      []string{everythingJS(), "stdio"},
		Env:       map[string]string{"NODE_OPTIONS": "--require " + loopbackPreload()},
		Isolation: isolation, Timeouts: defaultTimeouts,
	}
}

func filesystemStdio(id, root, isolation string) backendConfig {
	return backendConfig{
		ID: id, Transport: "stdio", Command: nodeBin,
		Args:      []string{filesystemJS(), root},
		Isolation: isolation, Timeouts: defaultTimeouts,
	}
}

func memoryStdio(id, file, isolation string) backendConfig {
	return backendConfig{
		ID: id, Transport: "stdio", Command: nodeBin,
		Args:      []string{memoryJS()},
		Env:       map[string]string{"MEMORY_FILE_PATH": file},
		Isolation: isolation, Timeouts: defaultTimeouts,
	}
}

func demoStdio(id, sandbox, isolation string) backendConfig {
	return backendConfig{
		ID: id, Transport: "stdio", Command: sallyportBin,
		Args:      []string{"demo-server", "--sandbox", sandbox},
		Isolation: isolation, Timeouts: defaultTimeouts,
	}
}

func remoteHTTP(id, url string) backendConfig {
	return backendConfig{ID: id, Transport: "http", URL: url}
}

// ---------------------------------------------------------------------------
// Gateway

// gateway is one sallyport configuration and, once served, its process.
type gateway struct {
	t       testing.TB
	dir     string
	cfgPath string
	marker  string
	proc    *proc
	URL     string // http://127.0.0.1:PORT/mcp, once served
}

var endpointRE = regexp.MustCompile(`(?m)^sallyport: MCP endpoint (http://127\.0\.0\.1:\d+/mcp)\s*$`)

// newGateway writes cfg to a temporary folder (with the tokens file beside
// it). Every stdio backend gets the gateway's marker in its environment, so
// that leftovers can be found whatever their parent is now.
func newGateway(t testing.TB, cfg gwConfig) *gateway {
	t.Helper()
	g := &gateway{t: t, dir: t.TempDir(), marker: newMarker()}
	if cfg.Auth != nil && cfg.Auth.TokensFile == "" {
		cfg.Auth.TokensFile = filepath.Join(g.dir, "tokens.json")
	}
	for i := range cfg.Backends {
		b := &cfg.Backends[i]
		if b.Transport == "stdio" {
			env := map[string]string{envMarker: g.marker}
			for k, v := range b.Env {
				env[k] = v
			}
			b.Env = env
		}
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	g.cfgPath = filepath.Join(g.dir, "sallyport.yaml")
	if err := os.WriteFile(g.cfgPath, append(data, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- gateway config %s ----\n%s", g.cfgPath, data)
		}
	})
	return g
}

// token creates a bearer token for principal with `sallyport tokens create`.
func (g *gateway) token(principal string, groups ...string) string {
	g.t.Helper()
	args := []string{"tokens", "create", "-c", g.cfgPath, "--principal", principal}
	if len(groups) > 0 {
		args = append(args, "--groups", strings.Join(groups, ","))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sallyportBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		g.t.Fatalf("sallyport %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	tok := strings.TrimSpace(lines[len(lines)-1])
	if len(lines) != 1 || tok == "" || strings.ContainsAny(tok, " \t") {
		g.t.Fatalf("sallyport tokens create printed %q; want one line holding the token", out)
	}
	return tok
}

// serve starts `sallyport serve` and waits for its endpoint line.
func (g *gateway) serve() *gateway {
	g.t.Helper()
	cmd := exec.Command(sallyportBin, "serve", "-c", g.cfgPath)
	cmd.Dir = g.dir
	g.proc = startProc(g.t, "sallyport serve", g.marker, cmd)
	g.proc.graceful = true
	m := g.proc.stderr.waitMatch(endpointRE, g.proc.done, startupWait)
	if m == nil {
		if g.proc.exited() {
			g.t.Fatalf("sallyport serve exited before printing its endpoint: %v", g.proc.err)
		}
		g.t.Fatalf("sallyport serve printed no %q line within %v", "sallyport: MCP endpoint http://127.0.0.1:PORT/mcp", startupWait)
	}
	g.URL = m[1]
	return g
}

func (g *gateway) pid() int { return g.proc.pid() }

// backends lists the live processes under the gateway whose command line
// holds substr.
func (g *gateway) backends(substr string) []procInfo { return liveChildren(g.pid(), substr) }
