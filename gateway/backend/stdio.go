package backend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/wire"
)

// safeEnv names the gateway environment variables every stdio backend
// inherits. Everything else (tokens, Vault addresses, cloud credentials)
// stays in the gateway unless the backend's env_passthrough names it.
var safeEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"}

// maxStderrLine bounds one logged stderr line of a backend.
const maxStderrLine = 8 << 10

// StdioTransport is a backend process spoken to over stdin/stdout. The
// process runs in its own process group, so Close reaps whatever it
// spawned, and it is killed if the gateway dies.
type StdioTransport struct {
	spec *config.Backend
	log  *slog.Logger
	recv Receiver
	cmd  *exec.Cmd

	wmu    sync.Mutex
	stdin  io.WriteCloser
	wbuf   []byte
	closed bool

	exited   chan struct{} // closed after Wait returned
	exitErr  error
	stopOnce sync.Once
}

// StartStdio starts the backend process described by spec.
func StartStdio(spec *config.Backend, log *slog.Logger, recv Receiver) (*StdioTransport, error) {
	cmd := exec.Command(spec.Command, spec.Args...)
	cmd.Dir = spec.Cwd
	cmd.Env = backendEnv(spec)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Command, err)
	}
	t := &StdioTransport{
		spec:   spec,
		log:    log.With(slog.Int("pid", cmd.Process.Pid)),
		recv:   recv,
		cmd:    cmd,
		stdin:  stdin,
		exited: make(chan struct{}),
	}
	t.log.Debug("backend process started", slog.String("command", spec.Command))
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() { defer pipes.Done(); t.readStdout(stdout) }()
	go func() { defer pipes.Done(); t.readStderr(stderr) }()
	go func() {
		pipes.Wait()
		err := cmd.Wait()
		t.exitErr = err
		close(t.exited)
		t.wmu.Lock()
		wasClosed := t.closed
		t.closed = true
		t.wmu.Unlock()
		if wasClosed {
			recv.Closed(nil)
			return
		}
		if err == nil {
			err = errors.New("exited")
		}
		t.log.Warn("backend process ended", slog.String("err", err.Error()))
		recv.Closed(fmt.Errorf("backend process %s", describeExit(err)))
	}()
	return t, nil
}

// Pid returns the process id of the backend process.
func (t *StdioTransport) Pid() int { return t.cmd.Process.Pid }

func describeExit(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	return err.Error()
}

func backendEnv(spec *config.Backend) []string {
	env := make([]string, 0, len(safeEnv)+len(spec.EnvPassthrough)+len(spec.Env))
	seen := map[string]bool{}
	for _, names := range [][]string{safeEnv, spec.EnvPassthrough} {
		for _, name := range names {
			if v, ok := os.LookupEnv(name); ok && !seen[name] {
				seen[name] = true
				env = append(env, name+"="+v)
			}
		}
	}
	for k, v := range spec.Env {
		env = append(env, k+"="+v)
	}
	return env
}

// readStdout parses each stdout line as one JSON-RPC message. Lines that
// are not valid messages (a banner, a stray log line, an oversized line)
// are dropped and logged; they never end the session.
func (t *StdioTransport) readStdout(r io.Reader) {
	lr := wire.NewLineReader(r, t.spec.MaxMessageBytes.Int())
	lim := jsonrpc.Limits{MaxBytes: t.spec.MaxMessageBytes.Int()}
	for {
		line, err := lr.ReadLine()
		if err != nil {
			if errors.Is(err, wire.ErrTooLong) {
				t.log.Warn("backend stdout line dropped", slog.String("err", err.Error()))
				continue
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				t.log.Debug("backend stdout read", slog.String("err", err.Error()))
			}
			return
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		msg, err := jsonrpc.Decode(line, lim)
		if err != nil {
			t.log.Warn("backend stdout line is not a JSON-RPC message; dropped",
				slog.String("err", err.Error()), slog.String("line", clip(line, 200)))
			continue
		}
		t.recv.Message(msg)
	}
}

func (t *StdioTransport) readStderr(r io.Reader) {
	lr := wire.NewLineReader(r, maxStderrLine)
	for {
		line, err := lr.ReadLine()
		if errors.Is(err, wire.ErrTooLong) {
			t.log.Info("backend stderr", slog.String("line", "(line over 8 KiB dropped)"))
			continue
		}
		if err != nil {
			return
		}
		// slog quotes control characters, so a backend cannot forge log records.
		t.log.Info("backend stderr", slog.String("line", string(line)))
	}
}

// Send implements Transport.
func (t *StdioTransport) Send(_ context.Context, msg *jsonrpc.Message) error {
	t.wmu.Lock()
	defer t.wmu.Unlock()
	if t.closed {
		return errors.New("backend process is not running")
	}
	t.wbuf = wire.AppendLine(t.wbuf[:0], msg)
	if _, err := t.stdin.Write(t.wbuf); err != nil {
		return fmt.Errorf("write to backend: %w", err)
	}
	if cap(t.wbuf) > 1<<20 {
		t.wbuf = nil
	}
	return nil
}

// Close stops the process: it closes stdin and waits Timeouts.Shutdown,
// then sends SIGTERM to the process group and waits again, then SIGKILL.
// Whatever the backend spawned in its process group goes with it.
func (t *StdioTransport) Close(ctx context.Context) error {
	t.stopOnce.Do(func() {
		t.wmu.Lock()
		t.closed = true
		t.stdin.Close()
		t.wmu.Unlock()
		grace := t.spec.Timeouts.Shutdown.D()
		pgid := t.cmd.Process.Pid
		steps := []struct {
			sig  syscall.Signal
			wait time.Duration
		}{{0, grace}, {syscall.SIGTERM, grace}, {syscall.SIGKILL, 5 * time.Second}}
		for _, s := range steps {
			if s.sig != 0 {
				_ = syscall.Kill(-pgid, s.sig)
			}
			timer := time.NewTimer(s.wait)
			select {
			case <-t.exited:
				timer.Stop()
				// The leader is gone; take down anything left in its group.
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				return
			case <-ctx.Done():
				timer.Stop()
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				<-t.exited
				return
			case <-timer.C:
			}
		}
	})
	<-t.exited
	return nil
}

func clip(b []byte, n int) string {
	s := string(b)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strings.ToValidUTF8(s, "�")
}

var _ Transport = (*StdioTransport)(nil)
