package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// This file holds the process side of the harness: output buffers, starting
// and stopping processes by pid, reading /proc, and loopback ports.

// ---------------------------------------------------------------------------
// Output buffers

// logBuffer collects a process's output and lets a test wait for a line.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newLogBuffer() *logBuffer { return &logBuffer{changed: make(chan struct{})} }

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail returns at most the last n bytes.
func (b *logBuffer) tail(n int) string {
	s := b.String()
	if len(s) > n {
		return "[...]\n" + s[len(s)-n:]
	}
	return s
}

// waitMatch waits until re matches the buffer and returns the submatches, or
// returns nil when done closes or the timeout passes first.
func (b *logBuffer) waitMatch(re *regexp.Regexp, done <-chan struct{}, timeout time.Duration) []string {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		m := re.FindStringSubmatch(b.buf.String())
		changed := b.changed
		b.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-changed:
		case <-done:
			// One last look: the line may have come with the exit.
			if m := re.FindStringSubmatch(b.String()); m != nil {
				return m
			}
			return nil
		case <-deadline.C:
			return nil
		}
	}
}

// ---------------------------------------------------------------------------
// Processes

// proc is a process a test started in its own process group.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout *logBuffer // nil when the caller took stdout itself
	stderr *logBuffer
	done   chan struct{} // closed when the process has been waited for
	err    error         // Wait's error, valid after done
	marker string        // the SALLYPORT_E2E_MARK value, if any
	// graceful, when set, makes stop fail the test unless the process
	// exits with status 0 on SIGTERM and its stderr shows no panic or race.
	graceful bool
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// startProc starts cmd in its own process group and registers a cleanup that
// stops it by pid (SIGTERM, then SIGKILL to its group), dumps its output if
// the test failed, and fails the test if it left processes behind. stdout and
// stderr go to buffers unless the caller set them. marker, if not empty, is
// put in the environment as SALLYPORT_E2E_MARK and used to find leftovers.
func startProc(t testing.TB, name, marker string, cmd *exec.Cmd) *proc {
	t.Helper()
	recordInputs()
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), marker: marker}
	if cmd.Stdout == nil {
		p.stdout = newLogBuffer()
		cmd.Stdout = p.stdout
	}
	if cmd.Stderr == nil {
		p.stderr = newLogBuffer()
		cmd.Stderr = p.stderr
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	if marker != "" {
		cmd.Env = append(cmd.Env, envMarker+"="+marker)
	}
	// Its own group, so that stopping it reaches whatever it spawned; and
	// killed if this test binary dies, so nothing outlives a crashed run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A grandchild holding our output pipes open must not block Wait.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			p.dump(t)
		}
	})
	return p
}

func (p *proc) dump(t testing.TB) {
	t.Helper()
	if p.stderr != nil {
		t.Logf("---- %s (pid %d) stderr ----\n%s", p.name, p.pid(), p.stderr.tail(64<<10))
	}
	if p.stdout != nil {
		if out := p.stdout.tail(16 << 10); out != "" {
			t.Logf("---- %s (pid %d) stdout ----\n%s", p.name, p.pid(), out)
		}
	}
}

// stop ends the process by pid and checks that nothing it started is left.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	pid := p.pid()
	before := processTree(pid)
	if !p.exited() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-p.done:
			if p.graceful && p.err != nil {
				t.Errorf("%s (pid %d) ended with %v on SIGTERM; want a graceful exit with status 0", p.name, pid, p.err)
			}
		case <-time.After(stopWait):
			t.Errorf("%s (pid %d) still running %v after SIGTERM; killing its process group", p.name, pid, stopWait)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-p.done
		}
	}
	if p.graceful && p.stderr != nil {
		for _, bad := range []string{"panic:", "fatal error:", "WARNING: DATA RACE"} {
			if strings.Contains(p.stderr.String(), bad) {
				t.Errorf("%s (pid %d) wrote %q to stderr", p.name, pid, bad)
			}
		}
	}
	// Whatever it spawned should be gone with it. Give exiting children a
	// moment, then kill and report what is left.
	var left []procInfo
	deadline := time.Now().Add(leftoverWait)
	for {
		left = leftovers(pid, p.marker, before)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("%s (pid %d) exited but left %d process(es) behind:\n%s", p.name, pid, len(left), formatProcs(left))
		for _, q := range left {
			_ = syscall.Kill(q.PID, syscall.SIGKILL)
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		// SIGKILL is not instant: wait (bounded) until they are gone, so
		// nothing outlives the test.
		waitFor(leftoverWait, func() bool { return len(leftovers(pid, p.marker, before)) == 0 })
	}
}

// leftovers lists live processes that belong to an exited process: members
// of its process group, processes that were its descendants before it was
// stopped, and processes carrying its marker.
func leftovers(pid int, marker string, before []procInfo) []procInfo {
	var left []procInfo
	seen := map[int]bool{}
	add := func(q procInfo) {
		if !seen[q.PID] && q.PID != pid && q.State != 'Z' && q.State != 'X' {
			seen[q.PID] = true
			left = append(left, q)
		}
	}
	all := listProcs()
	byPID := map[int]procInfo{}
	for _, q := range all {
		byPID[q.PID] = q
		if q.PGID == pid {
			add(q)
		}
		if marker != "" && hasMarker(q.PID, marker) {
			add(q)
		}
	}
	for _, b := range before {
		if q, ok := byPID[b.PID]; ok && q.Start == b.Start {
			add(q)
		}
	}
	return left
}

// ---------------------------------------------------------------------------
// /proc

// procInfo is one process as /proc shows it.
type procInfo struct {
	PID, PPID, PGID int
	State           byte
	Start           uint64 // start time in clock ticks since boot: tells a reused pid apart
	Cmdline         string
}

func (q procInfo) String() string {
	return fmt.Sprintf("pid=%d ppid=%d pgid=%d state=%c %s", q.PID, q.PPID, q.PGID, q.State, q.Cmdline)
}

func formatProcs(ps []procInfo) string {
	var b strings.Builder
	for _, q := range ps {
		b.WriteString("  " + q.String() + "\n")
	}
	return b.String()
}

func readProcInfo(pid int) (procInfo, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	// "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return procInfo{}, false
	}
	q := procInfo{PID: pid, State: f[0][0]}
	q.PPID, _ = strconv.Atoi(f[1])
	q.PGID, _ = strconv.Atoi(f[2])
	q.Start, _ = strconv.ParseUint(f[19], 10, 64)
	if cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil {
		q.Cmdline = strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return q, true
}

func listProcs() []procInfo {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var ps []procInfo
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if q, ok := readProcInfo(pid); ok {
			ps = append(ps, q)
		}
	}
	return ps
}

// processTree lists the live processes under pid: its descendants by parent
// pid, and the members of the process group pid leads. pid itself is left
// out.
func processTree(pid int) []procInfo {
	all := listProcs()
	children := map[int][]procInfo{}
	for _, q := range all {
		children[q.PPID] = append(children[q.PPID], q)
	}
	var tree []procInfo
	seen := map[int]bool{pid: true}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !seen[c.PID] {
				seen[c.PID] = true
				tree = append(tree, c)
				queue = append(queue, c.PID)
			}
		}
	}
	for _, q := range all {
		if q.PGID == pid && !seen[q.PID] {
			seen[q.PID] = true
			tree = append(tree, q)
		}
	}
	return tree
}

// liveChildren lists the processes under pid whose command line holds substr,
// leaving out zombies.
func liveChildren(pid int, substr string) []procInfo {
	var out []procInfo
	for _, q := range processTree(pid) {
		if q.State != 'Z' && q.State != 'X' && strings.Contains(q.Cmdline, substr) {
			out = append(out, q)
		}
	}
	return out
}

func hasMarker(pid int, marker string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	return slices.Contains(strings.Split(string(env), "\x00"), envMarker+"="+marker)
}

// waitFor polls cond every 50 ms until it holds or timeout passes, and
// reports whether it held.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// Network

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitListening waits until 127.0.0.1:port accepts, or p exits.
func waitListening(t testing.TB, p *proc, port int) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ok := waitFor(startupWait, func() bool {
		if p.exited() {
			return true
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	if p.exited() {
		t.Fatalf("%s exited before listening on %s: %v\n%s", p.name, addr, p.err, p.stderr.tail(8<<10))
	}
	if !ok {
		t.Fatalf("%s not listening on %s after %v\n%s", p.name, addr, startupWait, p.stderr.tail(8<<10))
	}
}

// startEverythingHTTP starts server-everything over Streamable HTTP on a
// loopback port and returns its MCP URL.
func startEverythingHTTP(t testing.TB) (string, *proc) {
	t.Helper()
	needNode(t)
	port := freePort(t)
	cmd := exec.Command(nodeBin, everythingJS(), "streamableHttp")
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port), "NODE_OPTIONS=--require "+loopbackPreload())
	p := startProc(t, "server-everything streamableHttp", "", cmd)
	waitListening(t, p, port)
	return fmt.Sprintf("http://127.0.0.1:%d/mcp", port), p
}
