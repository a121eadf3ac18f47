package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bounds on waiting for processes. They only turn a hang into an error;
// nothing here is a measurement.
const (
	readyWait    = 60 * time.Second // a server becoming ready
	termWait     = 25 * time.Second // a server exiting after SIGTERM (sallyport allows itself 20 s)
	leftoverWait = 6 * time.Second  // descendants exiting after their parent (supergateway waits 5 s)
	pollEvery    = 25 * time.Millisecond
)

// tailBuffer keeps the last max bytes written to it, and lets a caller wait
// for a pattern to appear in the output seen so far.
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	limit   int
	changed chan struct{} // closed and replaced on every write
}

func newTailBuffer(limit int) *tailBuffer {
	return &tailBuffer{limit: limit, changed: make(chan struct{})}
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.limit {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.limit:]...)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// waitMatch waits until re matches the output and returns the submatches,
// or returns nil when done closes, ctx ends or timeout passes first.
func (b *tailBuffer) waitMatch(ctx context.Context, re *regexp.Regexp, done <-chan struct{}, timeout time.Duration) []string {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		m := re.FindSubmatch(b.buf)
		changed := b.changed
		b.mu.Unlock()
		if m != nil {
			out := make([]string, len(m))
			for i := range m {
				out[i] = string(m[i])
			}
			return out
		}
		select {
		case <-changed:
		case <-done:
			return nil
		case <-ctx.Done():
			return nil
		case <-deadline.C:
			return nil
		}
	}
}

// proc is a server process the harness started in its own process group.
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *tailBuffer   // its stdout and stderr
	done   chan struct{} // closed once Wait has returned
	waitMu sync.Mutex
	err    error
	once   sync.Once
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

// exitError describes how the process ended, with the tail of its output.
func (p *proc) exitError() error {
	p.waitMu.Lock()
	err := p.err
	p.waitMu.Unlock()
	return fmt.Errorf("%s (pid %d) exited early: %v\n---- its output ----\n%s", p.name, p.pid(), err, p.out.String())
}

// reaper starts processes and stops every one of them, by pid, exactly once.
type reaper struct {
	mu    sync.Mutex
	stops []func()
}

// add registers a stop function; stopAll runs it if nothing else has.
func (r *reaper) add(stop func()) func() {
	var once sync.Once
	f := func() { once.Do(stop) }
	r.mu.Lock()
	r.stops = append(r.stops, f)
	r.mu.Unlock()
	return f
}

// stopAll stops every process still registered, newest first.
func (r *reaper) stopAll() {
	r.mu.Lock()
	stops := r.stops
	r.stops = nil
	r.mu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}

// start starts cmd in its own process group (killed if the harness dies)
// with its output collected in a tail buffer, and registers it to be stopped.
func (r *reaper) start(name string, cmd *exec.Cmd) (*proc, error) {
	p := &proc{name: name, cmd: cmd, out: newTailBuffer(64 << 10), done: make(chan struct{})}
	if cmd.Stdout == nil {
		cmd.Stdout = p.out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = p.out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		err := cmd.Wait()
		p.waitMu.Lock()
		p.err = err
		p.waitMu.Unlock()
		close(p.done)
	}()
	r.add(p.stop)
	return p, nil
}

// stop ends the process: SIGTERM to its pid, then SIGKILL to its process
// group if it is still there after termWait; then whatever it had spawned
// (which may sit in process groups of its own) is given leftoverWait to go
// and is killed by pid if it has not.
func (p *proc) stop() {
	p.once.Do(func() {
		pid := p.pid()
		before := descendants(pid)
		if !p.exited() {
			_ = syscall.Kill(pid, syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(termWait):
				fmt.Fprintf(os.Stderr, "sallyport-bench: %s (pid %d) still running %v after SIGTERM; killing its process group\n", p.name, pid, termWait)
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				<-p.done
			}
		}
		_ = syscall.Kill(-pid, syscall.SIGKILL) // stragglers left in its group
		reapLeftovers(before)
	})
}

// reapLeftovers waits up to leftoverWait for the processes in before to
// exit and SIGKILLs, by pid, those that have not (matching their start time
// so that a reused pid is never hit).
func reapLeftovers(before []procInfo) {
	deadline := time.Now().Add(leftoverWait)
	for {
		left := alive(before)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, q := range left {
				fmt.Fprintf(os.Stderr, "sallyport-bench: killing leftover process %d (%s)\n", q.PID, q.Cmdline)
				_ = syscall.Kill(q.PID, syscall.SIGKILL)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitPort polls 127.0.0.1:port until it accepts a connection, the process
// exits, ctx ends or readyWait passes.
func waitPort(ctx context.Context, p *proc, port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(readyWait)
	for time.Now().Before(deadline) {
		if p.exited() {
			return p.exitError()
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(pollEvery):
		}
	}
	return fmt.Errorf("%s (pid %d) not listening on %s after %v\n---- its output ----\n%s", p.name, p.pid(), addr, readyWait, p.out.String())
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
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

// descendants lists the live processes under pid: its descendants by
// parent pid and the members of the process group pid leads; pid itself is
// left out.
func descendants(pid int) []procInfo {
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

// alive returns the processes of ps that still run: same pid, same start
// time, not a zombie.
func alive(ps []procInfo) []procInfo {
	var out []procInfo
	for _, b := range ps {
		q, ok := readProcInfo(b.PID)
		if ok && q.Start == b.Start && q.State != 'Z' && q.State != 'X' {
			out = append(out, q)
		}
	}
	return out
}

// statusKB reads a "<field>: N kB" line of /proc/<pid>/status.
func statusKB(pid int, field string) (int64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != field {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, errors.New("no " + field + " in /proc/" + strconv.Itoa(pid) + "/status")
}
