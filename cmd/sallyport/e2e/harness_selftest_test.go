package e2e

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestHarness checks the harness itself against server-everything with no
// gateway in between, so that a failing gateway test can be told apart from
// a broken test bed.
func TestHarness(t *testing.T) {
	t.Parallel()

	t.Run("tsclient drives server-everything over stdio", func(t *testing.T) {
		t.Parallel()
		needNode(t)
		lines := runTSClient(t, nil, "--stdio", nodeBin, everythingJS(), "stdio", "--",
			"list-tools", "call", "echo", `{"message":"hi"}`, "call", "get-sum", `{"a":2,"b":3}`, "ping")
		if len(lines) != 5 {
			t.Fatalf("got %d lines, want 5: %+v", len(lines), lines)
		}
		if lines[0].ProtocolVersion == "" || lines[0].ServerInfo == nil || lines[0].ServerInfo.Name == "" {
			t.Errorf("connect line lacks protocol version or server info: %+v", lines[0])
		}
		if names := tsToolNames(t, lines[1]); !slices.Contains(names, "echo") {
			t.Errorf("tools %v lack echo", names)
		}
		if text, _ := tsText(t, lines[2]); text != "Echo: hi" {
			t.Errorf("echo returned %q", text)
		}
		if text, _ := tsText(t, lines[3]); !strings.Contains(text, "5") {
			t.Errorf("get-sum returned %q", text)
		}
		if !lines[4].OK {
			t.Errorf("ping failed: %+v", lines[4].Error)
		}
	})

	t.Run("tsclient and mcp-go drive server-everything over Streamable HTTP on loopback", func(t *testing.T) {
		t.Parallel()
		url, p := startEverythingHTTP(t)
		for _, q := range listenersOf(p.pid()) {
			if !strings.HasPrefix(q, "127.0.0.1:") {
				t.Errorf("server-everything listens on %s: the loopback preload did not apply", q)
			}
		}

		lines := runTSClient(t, nil, "--http", url, "--token", "ignored",
			"call", "echo", `{"message":"over http"}`,
			"call", "trigger-long-running-operation", `{"duration":1,"steps":2}`)
		if text, _ := tsText(t, lines[1]); text != "Echo: over http" {
			t.Errorf("echo returned %q", text)
		}
		if len(lines[2].Progress) == 0 {
			t.Errorf("no progress from trigger-long-running-operation: %+v", lines[2])
		}

		c := dialGo(t, url, "ignored")
		if names := c.toolNames(t); !slices.Contains(names, "get-sum") {
			t.Errorf("tools %v lack get-sum", names)
		}
		if text := c.mustCall(t, "echo", map[string]any{"message": "from go"}); text != "Echo: from go" {
			t.Errorf("echo returned %q", text)
		}
	})

	t.Run("a raw session opens against server-everything and calls a tool", func(t *testing.T) {
		t.Parallel()
		url, _ := startEverythingHTTP(t)
		s := openRawSession(t, url, "")
		r := s.call(t, 2, "echo", map[string]any{"message": "raw"})
		m, ok := r.response()
		if r.Status != 200 || !ok || m.Error != nil || !strings.Contains(string(m.Result), "Echo: raw") {
			t.Errorf("raw call: HTTP %d %s", r.Status, r.Body)
		}
	})

	t.Run("stopping a process finds the children it left behind", func(t *testing.T) {
		t.Parallel()
		// sh leaves one child in its group and one in a new session of its
		// own, then becomes a sleep that SIGTERM ends.
		cmd := exec.Command("sh", "-c", "sleep 300 & setsid sleep 302 & exec sleep 301")
		rec := &recordingTB{TB: t}
		p := startProc(rec, "sh", "", cmd)
		if !waitFor(startupWait, func() bool { return len(liveChildren(p.pid(), "sleep")) == 2 }) {
			t.Fatalf("process tree of sh: %v", processTree(p.pid()))
		}
		p.stop(rec)
		got := rec.messages()
		if len(got) != 1 || !strings.Contains(got[0], "left 2 process(es) behind") {
			t.Errorf("stop reported %q; want one error about 2 leftovers", got)
		}
		if left := liveChildren(p.pid(), ""); len(left) != 0 {
			t.Errorf("leftovers survived stop: %v", left)
		}
	})
}

// recordingTB records Errorf calls instead of failing the test.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

// listenersOf returns the local addresses ("127.0.0.1:3001", "[::]:3001")
// of the TCP sockets pid listens on, read from /proc.
func listenersOf(pid int) []string {
	inodes := map[string]bool{}
	fds, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	for _, fd := range fds {
		link, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + fd.Name())
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var addrs []string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			addrs = append(addrs, decodeProcAddr(f[1]))
		}
	}
	return addrs
}

// decodeProcAddr turns /proc/net/tcp's "0100007F:0BB9" into "127.0.0.1:3001".
func decodeProcAddr(s string) string {
	hostHex, portHex, _ := strings.Cut(s, ":")
	port, _ := strconv.ParseUint(portHex, 16, 16)
	raw, err := hex.DecodeString(hostHex)
	if err != nil {
		return s
	}
	// The address is stored as 32-bit words in host (little-endian) order.
	for i := 0; i+4 <= len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	return net.JoinHostPort(net.IP(raw).String(), strconv.FormatUint(port, 10))
}
