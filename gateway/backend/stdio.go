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
	"sync/atomic"
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
// spawned, and it is killed if the gateway dies. The transport owns its
// pipes: writes carry a deadline, Close never waits behind a blocked
// write, and the leader's exit is noticed even while a child of it still
// holds stdout open.
type StdioTransport struct {
	spec *config.Backend
	log  *slog.Logger
	recv Receiver
	cmd  *exec.Cmd

	wmu    sync.Mutex // serializes writes
	stdin  *os.File
	wbuf   []byte
	closed atomic.Bool // Close was called

	exited   chan struct{} // closed after the process has been waited for
	stopOnce sync.Once
}

// pipeDrain is how long the readers may go on after the process exited
// before the read ends are closed under any child still holding them.
const pipeDrain = time.Second

// StartStdio starts the backend process described by spec.
func StartStdio(spec *config.Backend, log *slog.Logger, recv Receiver) (*StdioTransport, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		for _, f := range []*os.File{inR, inW, outR, outW} {
			f.Close()
		}
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	cmd := exec.Command(spec.Command, spec.Args...)
	cmd.Dir = spec.Cwd
	cmd.Env = backendEnv(spec)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	// The child has its ends; the gateway keeps only its own.
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("start %s: %w", spec.Command, err)
	}
	t := &StdioTransport{
		spec:   spec,
		log:    log.With(slog.Int("pid", cmd.Process.Pid)),
		recv:   recv,
		cmd:    cmd,
		stdin:  inW,
		exited: make(chan struct{}),
	}
	t.log.Debug("backend process started", slog.String("command", spec.Command))
	readers := make(chan struct{})
	var pipes sync.WaitGroup
	pipes.Add(2)
	go func() { defer pipes.Done(); t.readStdout(outR) }()
	go func() { defer pipes.Done(); t.readStderr(errR) }()
	go func() { pipes.Wait(); close(readers) }()
	go func() {
		err := cmd.Wait()
		// Whatever the backend left behind in its process group goes too.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		// Let the readers take what the process wrote, then close the
		// read ends: a child that inherited stdout must not keep the
		// session alive after its parent is gone.
		select {
		case <-readers:
		case <-time.After(pipeDrain):
		}
		outR.Close()
		errR.Close()
		<-readers
		t.stdin.Close()
		close(t.exited)
		if t.closed.Load() {
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

// Send implements Transport. The write is bounded by ctx (and by the
// request timeout when ctx has no deadline). A write that does not finish
// may have left half a message on the pipe, so the backend is stopped: it
// is not reading, or not fast enough to be served.
func (t *StdioTransport) Send(ctx context.Context, msg *jsonrpc.Message) error {
	if t.closed.Load() {
		return errors.New("backend process is not running")
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(t.spec.Timeouts.Request.D())
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.wbuf = wire.AppendLine(t.wbuf[:0], msg)
	t.stdin.SetWriteDeadline(deadline)
	_, err := t.stdin.Write(t.wbuf)
	t.stdin.SetWriteDeadline(time.Time{})
	if cap(t.wbuf) > 1<<20 {
		t.wbuf = nil
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.log.Warn("backend is not reading its input; stopping it")
			go t.Close(context.Background())
			return errors.New("backend is not reading its input")
		}
		return fmt.Errorf("write to backend: %w", err)
	}
	return nil
}

// Close stops the process: it closes stdin and waits Timeouts.Shutdown,
// then sends SIGTERM to the process group and waits again, then SIGKILL.
// Whatever the backend spawned in its process group goes with it. It never
// waits behind a blocked write, and returns when ctx ends.
func (t *StdioTransport) Close(ctx context.Context) error {
	t.stopOnce.Do(func() {
		t.closed.Store(true)
		t.stdin.Close() // also unblocks a pending write
		go t.escalate()
	})
	select {
	case <-t.exited:
	case <-ctx.Done():
		_ = syscall.Kill(-t.cmd.Process.Pid, syscall.SIGKILL)
	}
	return nil
}

// escalate signals the process group until the process has exited.
func (t *StdioTransport) escalate() {
	grace := t.spec.Timeouts.Shutdown.D()
	pgid := t.cmd.Process.Pid
	for _, sig := range []syscall.Signal{0, syscall.SIGTERM, syscall.SIGKILL} {
		if sig != 0 {
			_ = syscall.Kill(-pgid, sig)
		}
		select {
		case <-t.exited:
			// The leader is gone; take down anything left in its group.
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return
		case <-time.After(grace):
		}
	}
	<-t.exited
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func clip(b []byte, n int) string {
	s := string(b)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return strings.ToValidUTF8(s, "�")
}

var _ Transport = (*StdioTransport)(nil)
