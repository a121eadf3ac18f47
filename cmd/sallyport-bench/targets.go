package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/sallyport/sallyport/gateway/sqlite"
)

// Path names, as --paths takes them. Sallyport always writes its audit
// log (there is no switch to turn it off): pathSallyport runs it with
// audit.synchronous full (an fsync per commit), pathSallyportNormal with
// normal, the default.
const (
	pathDirect          = "direct"
	pathSallyport       = "sallyport"
	pathSallyportNormal = "sallyport-normal"
	pathSupergateway    = "supergateway"
	// pathNone, alone in --paths, measures no path (only the in-process
	// and approval measurements).
	pathNone = "none"
)

// allPaths are the paths, in the order they run by default.
var allPaths = []string{pathDirect, pathSallyport, pathSallyportNormal, pathSupergateway}

// syncOf is the audit.synchronous a Sallyport path runs with ("" for the
// other paths).
func syncOf(path string) string {
	switch path {
	case pathSallyport:
		return sqlite.SyncFull
	case pathSallyportNormal:
		return sqlite.SyncNormal
	}
	return ""
}

// echoMessage is what the everything backend's echo tool is asked to echo.
const echoMessage = "sallyport-bench"

// backendSpec is the MCP server every path ends at.
type backendSpec struct {
	ID        string // its backend id in the sallyport config, the prefix of its tools there
	Command   string // absolute path of the program
	Args      []string
	Tool      string // the tool called, as the backend names it
	Arguments map[string]any
	Expect    string // text every successful result holds
}

// everythingBackend is @modelcontextprotocol/server-everything over stdio,
// called with echo.
func everythingBackend(node, nodeModules string) backendSpec {
	return backendSpec{
		ID:        "everything",
		Command:   node,
		Args:      []string{filepath.Join(nodeModules, "@modelcontextprotocol", "server-everything", "dist", "index.js"), "stdio"},
		Tool:      "echo",
		Arguments: map[string]any{"message": echoMessage},
		Expect:    echoMessage,
	}
}

// demoBackend is the gateway's own demo server, called with lookup_customer.
func demoBackend(sallyport, sandbox, outbox string) backendSpec {
	return backendSpec{
		ID:        "demo",
		Command:   sallyport,
		Args:      []string{"demo-server", "--sandbox", sandbox, "--outbox", outbox},
		Tool:      "lookup_customer",
		Arguments: map[string]any{"customer_id": "cus_1001"},
		Expect:    "cus_1001",
	}
}

// session is one initialized MCP client session and the call the workloads
// make on it.
type session struct {
	c      *client.Client
	tool   string
	args   map[string]any
	expect string
	stop   func() // closes the session and stops what it started; idempotent
}

// call makes one tool call and checks the result.
func (s *session) call(ctx context.Context) error {
	var req mcp.CallToolRequest
	req.Params.Name = s.tool
	req.Params.Arguments = s.args
	res, err := s.c.CallTool(ctx, req)
	if err != nil {
		return err
	}
	var text strings.Builder
	for _, c := range res.Content {
		if tc, ok := mcp.AsTextContent(c); ok {
			text.WriteString(tc.Text)
		}
	}
	if res.IsError {
		return fmt.Errorf("%s returned an error result: %.200s", s.tool, text.String())
	}
	if !strings.Contains(text.String(), s.expect) {
		return fmt.Errorf("%s result lacks %q: %.200s", s.tool, s.expect, text.String())
	}
	return nil
}

// initialize runs the MCP handshake with the newest protocol version every
// peer here speaks (the e2e tests use the same).
func initialize(ctx context.Context, c *client.Client) error {
	var req mcp.InitializeRequest
	req.Params.ProtocolVersion = mcp.LATEST_LEGACY_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: "sallyport-bench", Version: "1.0.0"}
	if _, err := c.Initialize(ctx, req); err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	return nil
}

// target is one way of reaching the backend.
type target struct {
	name        string
	tool        string // the tool name the client calls
	open        func(ctx context.Context) (*session, error)
	shareConc   bool   // the concurrent workers share one session (direct with isolation shared)
	gateway     *proc  // the gateway process; nil for direct
	db          string // the gateway's audit database; "" for the paths that have none
	description string // how the path is wired, for the report
	teardown    func() // stops the gateway; nil for direct
}

// openDirect starts the backend with mcp-go's stdio client (the transport
// client.NewStdioMCPClient uses, given a command function so that the
// process gets its own process group and can be stopped by pid).
func (h *harness) openDirect(ctx context.Context) (*session, error) {
	var cmd *exec.Cmd
	cmdFunc := func(_ context.Context, command string, env, args []string) (*exec.Cmd, error) {
		cmd = exec.Command(command, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		return cmd, nil
	}
	c, err := client.NewStdioMCPClientWithOptions(h.spec.Command, nil, h.spec.Args, transport.WithCommandFunc(cmdFunc))
	if err != nil {
		if cmd != nil && cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
		return nil, fmt.Errorf("start %s over stdio: %w", h.spec.ID, err)
	}
	pid := cmd.Process.Pid
	stop := h.reaper.add(func() {
		before := descendants(pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		_ = c.Close() // closes stdin and waits for the process, killing it if it lingers
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		reapLeftovers(before)
	})
	if err := initialize(ctx, c); err != nil {
		stop()
		return nil, err
	}
	return &session{c: c, tool: h.spec.Tool, args: h.spec.Arguments, expect: h.spec.Expect, stop: stop}, nil
}

// openHTTP connects a Streamable HTTP client to url and initializes a
// session. Each session has its own HTTP transport, and so its own kept-alive
// connection, as separate clients would: a shared transport keeps only two
// idle connections per host and would make 32 sessions open new connections
// all the time. opts go to the transport after the HTTP client (the
// approval measurements' bearer token).
func (h *harness) openHTTP(ctx context.Context, url, tool string, opts ...transport.StreamableHTTPCOption) (*session, error) {
	tr := &http.Transport{
		Proxy:               nil, // loopback only, whatever the environment says
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        8,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     90 * time.Second,
	}
	c, err := client.NewStreamableHttpClient(url, append([]transport.StreamableHTTPCOption{transport.WithHTTPBasicClient(&http.Client{Transport: tr})}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("new Streamable HTTP client: %w", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = c.Close() // ends the session with DELETE
			tr.CloseIdleConnections()
		})
	}
	if err := c.Start(ctx); err != nil {
		stop()
		return nil, fmt.Errorf("start client: %w", err)
	}
	if err := initialize(ctx, c); err != nil {
		stop()
		return nil, err
	}
	return &session{c: c, tool: tool, args: h.spec.Arguments, expect: h.spec.Expect, stop: stop}, nil
}

func (h *harness) directTarget() *target {
	desc := "mcp-go stdio client → backend process"
	if h.opt.isolation == isolationShared {
		desc += "; concurrent: all workers share one stdio session and process"
	} else {
		desc += "; concurrent: one process per worker"
	}
	return &target{
		name:        pathDirect,
		tool:        h.spec.Tool,
		open:        h.openDirect,
		shareConc:   h.opt.isolation == isolationShared,
		description: desc,
	}
}

// sallyportConfig is the gateway configuration the harness runs with:
// warn-level logging so that logging does not dominate, anonymous access on
// loopback, the audit log in db with the given synchronous setting (and
// the other audit settings at their defaults), no policy (the embedded
// default policy), and the backend with the chosen isolation. The default
// policy lets anonymous principals use only the read-only tools of trusted
// backends, so the backend is marked trusted and the tool called declared
// read-only, as config.Demo does for the demo backend: the calls measured
// are ones that policy allows, not refusals.
func sallyportConfig(port int, spec backendSpec, isolation, db, synchronous string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by sallyport-bench.\n")
	fmt.Fprintf(&b, "listen: 127.0.0.1:%d\n", port)
	fmt.Fprintf(&b, "log: {level: warn}\n")
	fmt.Fprintf(&b, "auth: {anonymous: true}\n")
	fmt.Fprintf(&b, "database: %s\n", yamlString(db))
	fmt.Fprintf(&b, "audit: {synchronous: %s}\n", synchronous)
	fmt.Fprintf(&b, "backends:\n")
	fmt.Fprintf(&b, "  - id: %s\n", spec.ID)
	fmt.Fprintf(&b, "    transport: stdio\n")
	fmt.Fprintf(&b, "    command: %s\n", yamlString(spec.Command))
	args := make([]string, len(spec.Args))
	for i, a := range spec.Args {
		args[i] = yamlString(a)
	}
	fmt.Fprintf(&b, "    args: [%s]\n", strings.Join(args, ", "))
	fmt.Fprintf(&b, "    isolation: %s\n", isolation)
	fmt.Fprintf(&b, "    trusted: true\n")
	fmt.Fprintf(&b, "    read_only_tools: [%s]\n", yamlString(spec.Tool))
	return []byte(b.String())
}

// yamlString quotes s as a YAML double-quoted scalar (JSON's syntax is a
// subset of it), with $ doubled so that the config loader does not expand
// it as an environment variable.
func yamlString(s string) string {
	q, _ := json.Marshal(strings.ReplaceAll(s, "$", "$$"))
	return string(q)
}

var endpointRE = regexp.MustCompile(`sallyport: MCP endpoint (http://\S+/mcp)`)

// sallyportTarget starts sallyport serve for path (pathSallyport or
// pathSallyportNormal), with a fresh audit database.
func (h *harness) sallyportTarget(ctx context.Context, path string) (*target, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(h.tmp, "sallyport-")
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "sallyport.yaml")
	db := filepath.Join(h.dbDir, path+"-audit.db")
	sync := syncOf(path)
	if err := os.WriteFile(cfgPath, sallyportConfig(port, h.spec, h.opt.isolation, db, sync), 0o600); err != nil {
		return nil, fmt.Errorf("write sallyport config: %w", err)
	}
	p, url, err := h.startSallyport(ctx, "sallyport serve", cfgPath, dir)
	if err != nil {
		return nil, err
	}
	tool := h.spec.ID + "__" + h.spec.Tool
	return &target{
		name:        path,
		tool:        tool,
		open:        func(ctx context.Context) (*session, error) { return h.openHTTP(ctx, url, tool) },
		gateway:     p,
		db:          db,
		description: fmt.Sprintf("mcp-go Streamable HTTP client → sallyport serve (%s, isolation %s, audit synchronous=%s) → backend over stdio", url, h.opt.isolation, sync),
		teardown:    p.stop,
	}, nil
}

// startSallyport starts `sallyport serve -c cfgPath` in dir and waits
// for the MCP endpoint it prints; the process is stopped on failure.
func (h *harness) startSallyport(ctx context.Context, name, cfgPath, dir string) (*proc, string, error) {
	cmd := exec.Command(h.opt.sallyport, "serve", "-c", cfgPath)
	cmd.Dir = dir
	p, err := h.reaper.start(name, cmd)
	if err != nil {
		return nil, "", err
	}
	m := p.out.waitMatch(ctx, endpointRE, p.done, readyWait)
	if m == nil {
		p.stop()
		if p.exited() {
			return nil, "", p.exitError()
		}
		if ctx.Err() != nil {
			return nil, "", context.Cause(ctx)
		}
		return nil, "", fmt.Errorf("sallyport (pid %d) printed no MCP endpoint within %v:\n%s", p.pid(), readyWait, p.out.String())
	}
	return p, m[1], nil
}

func (h *harness) supergatewayTarget(ctx context.Context) (*target, error) {
	if _, err := os.Stat(h.opt.preload); err != nil {
		return nil, fmt.Errorf("supergateway needs the loopback preload (it binds all interfaces otherwise): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	js := filepath.Join(h.opt.nodeModules, "supergateway", "dist", "index.js")
	stdioCmd := shellJoin(append([]string{h.spec.Command}, h.spec.Args...))
	cmd := exec.Command(h.node, js,
		"--stdio", stdioCmd,
		"--outputTransport", "streamableHttp",
		"--stateful",
		"--port", strconv.Itoa(port),
		"--logLevel", h.opt.sgLogLevel,
	)
	cmd.Env = append(os.Environ(), `NODE_OPTIONS=--require "`+h.opt.preload+`"`)
	// supergateway exits when its stdin closes: hand it a pipe that stays
	// open until it is stopped (or this process dies).
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("supergateway stdin: %w", err)
	}
	p, err := h.reaper.start("supergateway", cmd)
	if err != nil {
		return nil, err
	}
	if err := waitPort(ctx, p, port); err != nil {
		p.stop()
		return nil, err
	}
	if err := checkLoopbackOnly(port); err != nil {
		p.stop()
		return nil, err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)
	return &target{
		name:        pathSupergateway,
		tool:        h.spec.Tool,
		open:        func(ctx context.Context) (*session, error) { return h.openHTTP(ctx, url, h.spec.Tool) },
		gateway:     p,
		description: fmt.Sprintf("mcp-go Streamable HTTP client → supergateway 4.0.0 --stateful (%s; a backend process per session) → backend over stdio", url),
		teardown: func() {
			p.stop()
			_ = stdin.Close()
		},
	}, nil
}

// shellJoin quotes words for /bin/sh, which supergateway runs --stdio with.
func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// checkLoopbackOnly fails if anything listens on port on an address other
// than 127.0.0.1, as read from /proc/net/tcp and /proc/net/tcp6.
func checkLoopbackOnly(port int) error {
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st ...; 0A is LISTEN.
			if len(fields) < 4 || fields[3] != "0A" {
				continue
			}
			addr, portHex, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(portHex, 16, 16); err != nil || int(p) != port {
				continue
			}
			if !isLoopbackHex(addr) {
				f.Close()
				return fmt.Errorf("something listens on port %d beyond 127.0.0.1 (%s %s): refusing to go on", port, file, fields[1])
			}
		}
		f.Close()
	}
	return nil
}

// isLoopbackHex reports whether a /proc/net/tcp{,6} address is in 127/8 or
// ::1 (also as ::ffff:127.x.y.z). The kernel prints each 32-bit word in host
// byte order; on little-endian machines 127.0.0.1 is 0100007F.
func isLoopbackHex(addr string) bool {
	b, err := hex.DecodeString(addr)
	if err != nil {
		return false
	}
	// Undo the per-word byte order (little-endian hosts, which is all this
	// harness runs on).
	for i := 0; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	ip := net.IP(b)
	return ip.IsLoopback()
}
