package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// waitTimeout bounds every wait in these tests so that a bug fails the test
// instead of hanging it. No test asserts how long anything takes.
const waitTimeout = 60 * time.Second

// outsideSecret is the content of a file next to, not inside, the test
// sandbox. It must never appear in any result.
const outsideSecret = "TOP-SECRET-OUTSIDE-THE-SANDBOX"

// testEnv is a sandbox laid out for the tests, next to a folder outside it.
type testEnv struct {
	sandbox string
	outside string
	outbox  string
}

// newTestEnv builds, in t.TempDir():
//
//	sandbox/notes/plan.md          text
//	sandbox/data/big.txt           1 MiB + 1 byte
//	sandbox/data/limit.txt         exactly 1 MiB
//	sandbox/data/blob.bin          not UTF-8
//	sandbox/link-inside.md      -> notes/plan.md
//	sandbox/escape.txt          -> ../outside/secret.txt
//	sandbox/escape-abs.txt      -> /abs/outside/secret.txt
//	sandbox/escape-dir          -> ../outside
//	outside/secret.txt             outsideSecret
func newTestEnv(t *testing.T) testEnv {
	t.Helper()
	base := t.TempDir()
	env := testEnv{
		sandbox: filepath.Join(base, "sandbox"),
		outside: filepath.Join(base, "outside"),
		outbox:  filepath.Join(base, "outbox.jsonl"),
	}
	files := map[string]string{
		"sandbox/notes/plan.md":  "# Plan\n\nShip widgets.\n",
		"sandbox/data/big.txt":   strings.Repeat("a", maxReadBytes+1),
		"sandbox/data/limit.txt": strings.Repeat("b", maxReadBytes),
		"sandbox/data/blob.bin":  "\xff\xfe\x00binary",
		"outside/secret.txt":     outsideSecret,
	}
	for name, content := range files {
		p := filepath.Join(base, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"link-inside.md": filepath.Join("notes", "plan.md"),
		"escape.txt":     filepath.Join("..", "outside", "secret.txt"),
		"escape-abs.txt": filepath.Join(env.outside, "secret.txt"),
		"escape-dir":     filepath.Join("..", "outside"),
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(env.sandbox, name)); err != nil {
			t.Skipf("symlinks unavailable: %v", err)
		}
	}
	return env
}

func (e testEnv) options(log *slog.Logger) Options {
	return Options{Sandbox: e.sandbox, Outbox: e.outbox, Logger: log}
}

// newClient starts an in-process client for a new server built from opts
// and initializes it, negotiating the given protocol version ("" lets the
// client prefer the newest).
func newClient(t *testing.T, opts Options, protocolVersion string) *client.Client {
	t.Helper()
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	var copts []client.ClientOption
	if protocolVersion != "" {
		copts = append(copts, client.WithProtocolVersion(protocolVersion))
	}
	c, err := client.NewInProcessClientWithOptions(srv, copts...)
	if err != nil {
		t.Fatalf("NewInProcessClient: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	ctx := testContext(t)
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ClientInfo = mcp.Implementation{Name: "demo-test", Version: "1.0.0"}
	init.Params.ProtocolVersion = protocolVersion
	res, err := c.Initialize(ctx, init)
	if err != nil {
		t.Fatalf("Initialize: %v", err)
	}
	if res.ServerInfo.Name != serverName {
		t.Fatalf("server name = %q, want %q", res.ServerInfo.Name, serverName)
	}
	return c
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func callTool(t *testing.T, c *client.Client, name string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(testContext(t), req)
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	return res
}

// resultText joins the text content of a tool result.
func resultText(res *mcp.CallToolResult) string {
	var parts []string
	for _, content := range res.Content {
		if text, ok := mcp.AsTextContent(content); ok {
			parts = append(parts, text.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// structured decodes a tool result's structured content into T.
func structured[T any](t *testing.T, res *mcp.CallToolResult) T {
	t.Helper()
	var out T
	raw := res.RawStructuredContent
	if len(raw) == 0 {
		var err error
		if raw, err = json.Marshal(res.StructuredContent); err != nil {
			t.Fatal(err)
		}
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("decode structured content %s: %v", raw, err)
	}
	return out
}

// logRecorder is a slog.Handler that keeps every record for inspection.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
	changed chan struct{}
}

func newLogRecorder() *logRecorder { return &logRecorder{changed: make(chan struct{}, 1)} }

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.records = append(r.records, rec.Clone())
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
	return nil
}

// waitFor waits until a record with the given message has been logged and
// returns its attributes.
func (r *logRecorder) waitFor(t *testing.T, msg string) map[string]slog.Value {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		r.mu.Lock()
		for _, rec := range r.records {
			if rec.Message == msg {
				attrs := map[string]slog.Value{}
				rec.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value; return true })
				r.mu.Unlock()
				return attrs
			}
		}
		r.mu.Unlock()
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("no log record %q", msg)
		}
	}
}

func TestNewServerOptions(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file.txt")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"a missing sandbox is an error", Options{}, "sandbox"},
		{"a sandbox that does not exist is an error", Options{Sandbox: filepath.Join(dir, "nope")}, "sandbox"},
		{"a sandbox that is a file is an error", Options{Sandbox: file}, "not a folder"},
		{"an outbox in a missing folder is an error", Options{Sandbox: dir, Outbox: filepath.Join(dir, "nope", "outbox.jsonl")}, "outbox"},
		{"an existing sandbox with the default outbox is accepted", Options{Sandbox: dir}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewServer(tt.opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("NewServer: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("NewServer error = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestListTools(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	type hints struct{ readOnly, destructive, idempotent, openWorld bool }
	want := map[string]struct {
		hints    hints
		required []string
	}{
		"read_file":       {hints{true, false, true, false}, []string{"path"}},
		"list_files":      {hints{true, false, true, false}, nil},
		"lookup_customer": {hints{true, false, true, false}, nil},
		"send_email":      {hints{false, false, false, true}, []string{"body", "subject", "to"}},
		"delete_records":  {hints{false, true, true, false}, []string{"customer_ids"}},
		"generate_report": {hints{true, false, true, false}, nil},
	}
	for _, proto := range []struct{ name, version string }{
		{"modern protocol", ""},
		{"legacy handshake", mcp.LATEST_LEGACY_PROTOCOL_VERSION},
	} {
		t.Run(proto.name, func(t *testing.T) {
			c := newClient(t, env.options(nil), proto.version)
			res, err := c.ListTools(testContext(t), mcp.ListToolsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, tool := range res.Tools {
				names = append(names, tool.Name)
			}
			slices.Sort(names)
			wantNames := slices.Sorted(func(yield func(string) bool) {
				for name := range want {
					if !yield(name) {
						return
					}
				}
			})
			if !slices.Equal(names, wantNames) {
				t.Fatalf("tools = %v, want %v", names, wantNames)
			}
			for _, tool := range res.Tools {
				t.Run(tool.Name+" is fully described", func(t *testing.T) {
					w := want[tool.Name]
					if tool.Description == "" || tool.Title == "" {
						t.Error("missing description or title")
					}
					a := tool.Annotations
					got := hints{deref(a.ReadOnlyHint), deref(a.DestructiveHint), deref(a.IdempotentHint), deref(a.OpenWorldHint)}
					if a.ReadOnlyHint == nil || a.DestructiveHint == nil || a.IdempotentHint == nil || a.OpenWorldHint == nil {
						t.Errorf("annotations not all set: %+v", a)
					}
					if got != w.hints {
						t.Errorf("annotations = %+v, want %+v", got, w.hints)
					}
					if tool.InputSchema.Type != "object" {
						t.Errorf("input schema type = %q", tool.InputSchema.Type)
					}
					if req := slices.Sorted(slices.Values(tool.InputSchema.Required)); !slices.Equal(req, w.required) {
						t.Errorf("required = %v, want %v", req, w.required)
					}
					if tool.InputSchema.AdditionalProperties != false {
						t.Errorf("input schema additionalProperties = %v, want false", tool.InputSchema.AdditionalProperties)
					}
					for name, prop := range tool.InputSchema.Properties {
						if desc, _ := prop.(map[string]any)["description"].(string); desc == "" {
							t.Errorf("property %s has no description", name)
						}
					}
					if tool.OutputSchema.Type != "object" || len(tool.OutputSchema.Required) == 0 {
						t.Errorf("output schema = %+v, want an object with required fields", tool.OutputSchema)
					}
				})
			}
		})
	}
}

func deref(b *bool) bool { return b != nil && *b }

func TestReadFile(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	c := newClient(t, env.options(nil), "")
	tests := []struct {
		name      string
		args      map[string]any
		wantError string // substring of the error text; "" means success
		wantText  string
	}{
		{"reads a file relative to the sandbox", map[string]any{"path": "notes/plan.md"}, "", "Ship widgets."},
		{"reads a file through a symlink that stays inside", map[string]any{"path": "link-inside.md"}, "", "Ship widgets."},
		{"reads an absolute path inside the sandbox", map[string]any{"path": filepath.Join(env.sandbox, "notes", "plan.md")}, "", "Ship widgets."},
		{"reads a file of exactly 1 MiB", map[string]any{"path": "data/limit.txt"}, "", "bbbb"},
		{"refuses ../../etc/passwd", map[string]any{"path": "../../etc/passwd"}, "outside the sandbox", ""},
		{"refuses a traversal to a real file next to the sandbox", map[string]any{"path": "../outside/secret.txt"}, "outside the sandbox", ""},
		{"refuses a traversal hidden in the middle of a path", map[string]any{"path": "notes/../../outside/secret.txt"}, "outside the sandbox", ""},
		{"refuses an absolute path outside the sandbox", map[string]any{"path": "/etc/passwd"}, "outside the sandbox", ""},
		{"refuses an absolute path to the file next to the sandbox", map[string]any{"path": filepath.Join(env.outside, "secret.txt")}, "outside the sandbox", ""},
		{"refuses a relative symlink pointing outside", map[string]any{"path": "escape.txt"}, "outside the sandbox", ""},
		{"refuses an absolute symlink pointing outside", map[string]any{"path": "escape-abs.txt"}, "outside the sandbox", ""},
		{"refuses a file under a symlinked folder pointing outside", map[string]any{"path": "escape-dir/secret.txt"}, "outside the sandbox", ""},
		{"refuses a file larger than 1 MiB", map[string]any{"path": "data/big.txt"}, "1 MiB", ""},
		{"refuses a file that is not UTF-8", map[string]any{"path": "data/blob.bin"}, "not UTF-8", ""},
		{"refuses a folder", map[string]any{"path": "notes"}, "folder", ""},
		{"reports a missing file", map[string]any{"path": "notes/missing.md"}, "no such file", ""},
		{"refuses an empty path", map[string]any{"path": ""}, "path", ""},
		{"refuses a missing path argument", map[string]any{}, "path", ""},
		{"refuses an unknown argument", map[string]any{"path": "notes/plan.md", "mode": "w"}, "mode", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := callTool(t, c, "read_file", tt.args)
			text := resultText(res)
			if strings.Contains(text, outsideSecret) || strings.Contains(string(res.RawStructuredContent), outsideSecret) {
				t.Fatalf("result leaks the file outside the sandbox: %q", text)
			}
			if strings.Contains(text, env.sandbox) && tt.wantError != "" {
				t.Errorf("error reveals the sandbox's host path: %q", text)
			}
			if tt.wantError != "" {
				if !res.IsError || !strings.Contains(text, tt.wantError) {
					t.Fatalf("result = %v %q, want an error mentioning %q", res.IsError, text, tt.wantError)
				}
				return
			}
			if res.IsError {
				t.Fatalf("unexpected error result: %q", text)
			}
			if !strings.Contains(text, tt.wantText) {
				t.Errorf("text = %.80q, want it to contain %q", text, tt.wantText)
			}
			out := structured[readFileResult](t, res)
			if out.Content != text || out.SizeBytes != len(text) || strings.HasPrefix(out.Path, "/") {
				t.Errorf("structured content = {%q, %d, %.20q}, want a relative path and the text", out.Path, out.SizeBytes, out.Content)
			}
		})
	}
}

func TestReadFileFromSeedSandbox(t *testing.T) {
	t.Parallel()
	c := newClient(t, Options{Sandbox: filepath.Join("..", "..", "..", "examples", "demo-sandbox"), Outbox: filepath.Join(t.TempDir(), "o.jsonl")}, "")
	tests := []struct {
		name, path, want string
	}{
		{"the config file carries the fake AWS access key", "config/app.env", "AKIAIOSFODNN7EXAMPLE"},
		{"the config file carries the AWS docs example secret", "config/app.env", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
		{"the orders export is CSV", "data/orders.csv", "order_id,customer_id"},
		{"the plan is readable", "notes/q3-plan.md", "# Q3 plan"},
		{"the README is readable", "README.md", "sandbox"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := callTool(t, c, "read_file", map[string]any{"path": tt.path})
			if res.IsError || !strings.Contains(resultText(res), tt.want) {
				t.Fatalf("read %s = %v %q, want it to contain %q", tt.path, res.IsError, resultText(res), tt.want)
			}
		})
	}
}

func TestListFiles(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	c := newClient(t, env.options(nil), "")
	tests := []struct {
		name      string
		args      map[string]any
		wantError string
		want      []listEntry // checked by name, path and type
	}{
		{"lists the top of the sandbox by default", map[string]any{}, "", []listEntry{
			{Name: "data", Path: "data", Type: "folder"},
			{Name: "escape-abs.txt", Path: "escape-abs.txt", Type: "symlink"},
			{Name: "escape-dir", Path: "escape-dir", Type: "symlink"},
			{Name: "escape.txt", Path: "escape.txt", Type: "symlink"},
			{Name: "link-inside.md", Path: "link-inside.md", Type: "symlink"},
			{Name: "notes", Path: "notes", Type: "folder"},
		}},
		{"lists a subfolder with sizes", map[string]any{"path": "notes"}, "", []listEntry{
			{Name: "plan.md", Path: "notes/plan.md", Type: "file"},
		}},
		{"refuses the parent folder", map[string]any{"path": ".."}, "outside the sandbox", nil},
		{"refuses a symlinked folder pointing outside", map[string]any{"path": "escape-dir"}, "outside the sandbox", nil},
		{"refuses an absolute path outside", map[string]any{"path": "/etc"}, "outside the sandbox", nil},
		{"refuses a file", map[string]any{"path": "notes/plan.md"}, "use read_file", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := callTool(t, c, "list_files", tt.args)
			text := resultText(res)
			if strings.Contains(text, "secret.txt") {
				t.Fatalf("listing shows the folder outside the sandbox: %q", text)
			}
			if tt.wantError != "" {
				if !res.IsError || !strings.Contains(text, tt.wantError) {
					t.Fatalf("result = %v %q, want an error mentioning %q", res.IsError, text, tt.wantError)
				}
				return
			}
			if res.IsError {
				t.Fatalf("unexpected error result: %q", text)
			}
			out := structured[listFilesResult](t, res)
			var got []listEntry
			for _, e := range out.Entries {
				if e.Type == "file" && e.SizeBytes == nil {
					t.Errorf("file %s has no size", e.Path)
				}
				got = append(got, listEntry{Name: e.Name, Path: e.Path, Type: e.Type})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("entries = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLookupCustomer(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	c := newClient(t, env.options(nil), "")
	tests := []struct {
		name      string
		args      map[string]any
		wantID    string
		wantError string
	}{
		{"finds a customer by id", map[string]any{"customer_id": "cus_1001"}, "cus_1001", ""},
		{"finds a customer by email regardless of case", map[string]any{"email": "Ben.Okafor@EXAMPLE.net"}, "cus_1002", ""},
		{"reports an unknown id as a tool error", map[string]any{"customer_id": "cus_9999"}, "", "no customer"},
		{"reports an unknown email as a tool error", map[string]any{"email": "nobody@example.com"}, "", "no customer"},
		{"refuses both id and email", map[string]any{"customer_id": "cus_1001", "email": "ana.ruiz@example.com"}, "", "not both"},
		{"refuses neither id nor email", map[string]any{}, "", "customer_id or email"},
		{"refuses a malformed id", map[string]any{"customer_id": "1001; DROP TABLE"}, "", "customer_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := callTool(t, c, "lookup_customer", tt.args)
			text := resultText(res)
			if tt.wantError != "" {
				if !res.IsError || !strings.Contains(text, tt.wantError) {
					t.Fatalf("result = %v %q, want an error mentioning %q", res.IsError, text, tt.wantError)
				}
				return
			}
			if res.IsError {
				t.Fatalf("unexpected error result: %q", text)
			}
			got := structured[customer](t, res)
			want, _ := newCustomerStore().get(tt.wantID)
			if got != want {
				t.Errorf("customer = %+v, want %+v", got, want)
			}
			if !strings.Contains(text, want.CardNumber) {
				t.Errorf("text content lacks the card number the DLP stage should find: %q", text)
			}
		})
	}
}

func TestSeedCustomers(t *testing.T) {
	e164 := regexp.MustCompile(`^\+[1-9][0-9]{7,14}$`)
	ids := map[string]bool{}
	for i, c := range seedCustomers {
		t.Run(c.ID+" is a well-formed fictional record", func(t *testing.T) {
			if want := fmt.Sprintf("cus_%d", 1001+i); c.ID != want {
				t.Errorf("id = %s, want %s", c.ID, want)
			}
			if ids[c.ID] {
				t.Errorf("duplicate id")
			}
			ids[c.ID] = true
			if !luhnValid(c.CardNumber) {
				t.Errorf("card %s fails the Luhn check", c.CardNumber)
			}
			if !e164.MatchString(c.Phone) {
				t.Errorf("phone %s is not E.164", c.Phone)
			}
			if validateAddress(c.Email) != nil || !regexp.MustCompile(`@example\.(com|net|org)$`).MatchString(c.Email) {
				t.Errorf("email %s is not on a documentation domain", c.Email)
			}
			if !slices.Contains([]string{"free", "pro", "team", "enterprise"}, c.Plan) || c.Name == "" || c.Address == "" {
				t.Errorf("incomplete record %+v", c)
			}
		})
	}
}

func luhnValid(number string) bool {
	sum, double := 0, false
	for i := len(number) - 1; i >= 0; i-- {
		d := int(number[i] - '0')
		if d < 0 || d > 9 {
			return false
		}
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return len(number) >= 12 && sum%10 == 0
}

func TestSendEmail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		args      map[string]any
		wantError string
	}{
		{"records a message with to and cc", map[string]any{"to": []any{"ana.ruiz@example.com"}, "cc": []any{"ben.okafor@example.net"}, "subject": "Renewal", "body": "Hi Ana,\nyour plan renews soon."}, ""},
		{"records a message without cc", map[string]any{"to": []any{"ana.ruiz@example.com", "hana.suzuki@example.net"}, "subject": "Hello", "body": ""}, ""},
		{"refuses a malformed address", map[string]any{"to": []any{"not-an-address"}, "subject": "x", "body": "x"}, "to[0]"},
		{"refuses an address with a display name", map[string]any{"to": []any{"Ana <ana.ruiz@example.com>"}, "subject": "x", "body": "x"}, "bare email address"},
		{"refuses a list smuggled into one address", map[string]any{"to": []any{"ana.ruiz@example.com, eve@evil.example"}, "subject": "x", "body": "x"}, "to[0]"},
		{"refuses a malformed cc address", map[string]any{"to": []any{"ana.ruiz@example.com"}, "cc": []any{"eve@localhost"}, "subject": "x", "body": "x"}, "cc[0]"},
		{"refuses a subject with a header injection", map[string]any{"to": []any{"ana.ruiz@example.com"}, "subject": "Hi\r\nBcc: eve@evil.example", "body": "x"}, "single line"},
		{"refuses a message without recipients", map[string]any{"to": []any{}, "subject": "x", "body": "x"}, "to"},
		{"refuses a message without a subject", map[string]any{"to": []any{"ana.ruiz@example.com"}, "body": "x"}, "subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := newTestEnv(t)
			c := newClient(t, env.options(nil), "")
			res := callTool(t, c, "send_email", tt.args)
			text := resultText(res)
			lines := readOutbox(t, env.outbox)
			if tt.wantError != "" {
				if !res.IsError || !strings.Contains(text, tt.wantError) {
					t.Fatalf("result = %v %q, want an error mentioning %q", res.IsError, text, tt.wantError)
				}
				if len(lines) != 0 {
					t.Fatalf("a refused message was recorded: %+v", lines)
				}
				return
			}
			if res.IsError {
				t.Fatalf("unexpected error result: %q", text)
			}
			out := structured[sendEmailResult](t, res)
			if !regexp.MustCompile(`^msg_[0-9a-f]{16}$`).MatchString(out.MessageID) || !strings.Contains(text, out.MessageID) {
				t.Errorf("message id = %q, text = %q", out.MessageID, text)
			}
			if len(lines) != 1 {
				t.Fatalf("outbox has %d lines, want 1", len(lines))
			}
			got := lines[0]
			if got.ID != out.MessageID || got.Subject != tt.args["subject"] || got.Body != tt.args["body"] || got.CC == nil {
				t.Errorf("outbox line = %+v", got)
			}
			if _, err := time.Parse(time.RFC3339Nano, got.Time); err != nil {
				t.Errorf("time %q: %v", got.Time, err)
			}
			if out.Recipients != len(got.To)+len(got.CC) {
				t.Errorf("recipients = %d, want %d", out.Recipients, len(got.To)+len(got.CC))
			}
			fi, err := os.Stat(env.outbox)
			if err != nil {
				t.Fatal(err)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("outbox mode = %v, want 0600", perm)
			}
		})
	}
}

func TestSendEmailAppends(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	c := newClient(t, env.options(nil), "")
	var wg sync.WaitGroup
	const n = 20
	for i := range n {
		wg.Go(func() {
			res := callTool(t, c, "send_email", map[string]any{
				"to": []any{"ana.ruiz@example.com"}, "subject": "Note", "body": strings.Repeat(string(rune('a'+i%26)), 16<<10),
			})
			if res.IsError {
				t.Errorf("send: %s", resultText(res))
			}
		})
	}
	wg.Wait()
	lines := readOutbox(t, env.outbox)
	ids := map[string]bool{}
	for _, l := range lines {
		ids[l.ID] = true
	}
	if len(lines) != n || len(ids) != n {
		t.Fatalf("outbox has %d lines with %d distinct ids, want %d whole lines", len(lines), len(ids), n)
	}
}

func TestSendEmailRefusesUnsafeOutbox(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	target := filepath.Join(env.outside, "victim.jsonl")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, env.outbox); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, env.options(nil), "")
	res := callTool(t, c, "send_email", map[string]any{"to": []any{"ana.ruiz@example.com"}, "subject": "x", "body": "x"})
	if !res.IsError || !strings.Contains(resultText(res), "symlink") {
		t.Fatalf("result = %v %q, want a refusal of the symlinked outbox", res.IsError, resultText(res))
	}
	if data, _ := os.ReadFile(target); len(data) != 0 {
		t.Fatalf("the symlink target was written: %q", data)
	}
}

func readOutbox(t *testing.T, path string) []outboxMessage {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []outboxMessage
	r := bufio.NewReader(f)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			var m outboxMessage
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("outbox line is not JSON: %v", err)
			}
			out = append(out, m)
		}
		if err != nil {
			return out
		}
	}
}

func TestDeleteRecords(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	c := newClient(t, env.options(nil), "")
	ctx := testContext(t)

	steps := []struct {
		name         string
		ids          []any
		wantDeleted  []string
		wantNotFound []string
	}{
		{"deletes existing records and reports unknown ids", []any{"cus_1001", "cus_1003", "cus_9999"}, []string{"cus_1001", "cus_1003"}, []string{"cus_9999"}},
		{"deleting again has no further effect", []any{"cus_1001", "cus_1003"}, []string{}, []string{"cus_1001", "cus_1003"}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			res := callTool(t, c, "delete_records", map[string]any{"customer_ids": step.ids})
			if res.IsError {
				t.Fatalf("unexpected error result: %q", resultText(res))
			}
			out := structured[deleteRecordsResult](t, res)
			if out.Deleted != len(step.wantDeleted) || !slices.Equal(out.DeletedIDs, step.wantDeleted) || !slices.Equal(out.NotFound, step.wantNotFound) {
				t.Errorf("result = %+v, want deleted %v, not found %v", out, step.wantDeleted, step.wantNotFound)
			}
		})
	}
	t.Run("a deleted customer can no longer be looked up", func(t *testing.T) {
		res := callTool(t, c, "lookup_customer", map[string]any{"customer_id": "cus_1001"})
		if !res.IsError {
			t.Fatalf("lookup of a deleted customer succeeded: %q", resultText(res))
		}
		if res := callTool(t, c, "lookup_customer", map[string]any{"customer_id": "cus_1002"}); res.IsError {
			t.Fatalf("lookup of a kept customer failed: %q", resultText(res))
		}
	})
	t.Run("a deleted customer's resource is gone", func(t *testing.T) {
		list, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range list.Resources {
			if r.URI == customerURIPrefix+"cus_1001" {
				t.Errorf("deleted customer still listed")
			}
		}
		req := mcp.ReadResourceRequest{}
		req.Params.URI = customerURIPrefix + "cus_1001"
		if _, err := c.ReadResource(ctx, req); err == nil {
			t.Errorf("reading a deleted customer's resource succeeded")
		}
	})
	t.Run("the report counts only the remaining customers", func(t *testing.T) {
		res := callTool(t, c, "generate_report", map[string]any{"seconds": 0})
		if out := structured[reportResult](t, res); out.Customers != len(seedCustomers)-2 {
			t.Errorf("report counts %d customers, want %d", out.Customers, len(seedCustomers)-2)
		}
	})
	t.Run("an empty list is refused", func(t *testing.T) {
		if res := callTool(t, c, "delete_records", map[string]any{"customer_ids": []any{}}); !res.IsError {
			t.Errorf("empty delete accepted: %q", resultText(res))
		}
	})
}

// progressParams is the params object of notifications/progress.
type progressParams struct {
	ProgressToken any     `json:"progressToken"`
	Progress      float64 `json:"progress"`
	Total         float64 `json:"total"`
	Message       string  `json:"message"`
}

// progressRecorder collects notifications/progress sent to a client.
func progressRecorder(c *client.Client) <-chan progressParams {
	ch := make(chan progressParams, 1000)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method != string(mcp.MethodNotificationProgress) {
			return
		}
		raw, _ := json.Marshal(n.Params)
		var p progressParams
		if json.Unmarshal(raw, &p) == nil {
			ch <- p
		}
	})
	return ch
}

func TestGenerateReport(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	tests := []struct {
		name         string
		protocol     string
		args         map[string]any
		token        mcp.ProgressToken
		wantProgress int
	}{
		{"sends a progress notification after each step", "", map[string]any{"seconds": 0.05, "steps": 4}, "report-1", 4},
		{"sends progress under the legacy handshake too", mcp.LATEST_LEGACY_PROTOCOL_VERSION, map[string]any{"seconds": 0, "steps": 3}, "report-2", 3},
		{"accepts a numeric progress token", "", map[string]any{"seconds": 0, "steps": 2}, 42, 2},
		{"uses the defaults and sends no progress without a token", "", map[string]any{"seconds": 0}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, env.options(nil), tt.protocol)
			progress := progressRecorder(c)
			req := mcp.CallToolRequest{}
			req.Params.Name = "generate_report"
			req.Params.Arguments = tt.args
			if tt.token != nil {
				req.Params.Meta = &mcp.Meta{ProgressToken: tt.token}
			}
			res, err := c.CallTool(testContext(t), req)
			if err != nil {
				t.Fatal(err)
			}
			if res.IsError {
				t.Fatalf("unexpected error result: %q", resultText(res))
			}
			out := structured[reportResult](t, res)
			if out.Customers != len(seedCustomers) || out.ByPlan["pro"] != 3 || !strings.Contains(resultText(res), "Customers on file: 10") {
				t.Errorf("report = %+v", out)
			}
			if _, ok := tt.args["steps"]; !ok && out.Steps != defaultReportSteps {
				t.Errorf("steps = %d, want the default %d", out.Steps, defaultReportSteps)
			}
			// Notifications travel separately from the result and may trail it.
			for i := 1; i <= tt.wantProgress; i++ {
				select {
				case p := <-progress:
					wantToken, _ := json.Marshal(tt.token)
					gotToken, _ := json.Marshal(p.ProgressToken)
					if string(gotToken) != string(wantToken) || p.Progress != float64(i) || p.Total != float64(tt.wantProgress) || p.Message == "" {
						t.Errorf("notification %d = %+v", i, p)
					}
				case <-time.After(waitTimeout):
					t.Fatalf("got %d progress notifications, want %d", i-1, tt.wantProgress)
				}
			}
			select {
			case p := <-progress:
				t.Errorf("unexpected extra progress notification %+v", p)
			default:
			}
		})
	}
	t.Run("refuses out-of-range arguments", func(t *testing.T) {
		c := newClient(t, env.options(nil), "")
		for _, args := range []map[string]any{{"seconds": 61}, {"seconds": -1}, {"steps": 0}, {"steps": 2.5}, {"steps": 101}} {
			if res := callTool(t, c, "generate_report", args); !res.IsError {
				t.Errorf("arguments %v accepted", args)
			}
		}
	})
}

func TestGenerateReportStopsOnCancellation(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	logs := newLogRecorder()
	c := newClient(t, env.options(slog.New(logs)), "")
	progress := progressRecorder(c)

	ctx, cancel := context.WithCancel(testContext(t))
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = "generate_report"
	req.Params.Arguments = map[string]any{"seconds": 60, "steps": 100}
	req.Params.Meta = &mcp.Meta{ProgressToken: "cancel-me"}
	type outcome struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := c.CallTool(ctx, req)
		done <- outcome{res, err}
	}()

	select {
	case <-progress:
	case o := <-done:
		t.Fatalf("the call ended before any progress: %v %v", o.err, resultText(o.res))
	case <-time.After(waitTimeout):
		t.Fatal("no progress before cancelling")
	}
	cancel()
	select {
	case o := <-done:
		if o.err == nil {
			t.Fatalf("a cancelled call returned a result: %q", resultText(o.res))
		}
	case <-time.After(waitTimeout):
		t.Fatal("the call did not stop when cancelled")
	}
	attrs := logs.waitFor(t, "report cancelled")
	if steps := attrs[logKeyStep].Int64(); steps < 1 || steps >= 100 {
		t.Errorf("report stopped after %d steps, want between 1 and 99", steps)
	}
}

func TestResources(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	c := newClient(t, env.options(nil), "")
	ctx := testContext(t)

	t.Run("lists one resource per customer and the sandbox README", func(t *testing.T) {
		list, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var uris []string
		for _, r := range list.Resources {
			uris = append(uris, r.URI)
		}
		slices.Sort(uris)
		var want []string
		for _, cu := range seedCustomers {
			want = append(want, customerURIPrefix+cu.ID)
		}
		want = append(want, sandboxReadmeURI)
		if !slices.Equal(uris, want) {
			t.Errorf("resources = %v, want %v", uris, want)
		}
	})
	t.Run("offers the customer resource template", func(t *testing.T) {
		list, err := c.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.ResourceTemplates) != 1 || list.ResourceTemplates[0].URITemplate.Raw() != "demo://customers/{id}" {
			t.Errorf("templates = %+v", list.ResourceTemplates)
		}
	})
	reads := []struct {
		name, uri, want string
	}{
		{"reads a customer as JSON", customerURIPrefix + "cus_1003", `"card_number": "378282246310005"`},
		{"reads the sandbox README", sandboxReadmeURI, "# The demo sandbox"},
	}
	for _, tt := range reads {
		t.Run(tt.name, func(t *testing.T) {
			req := mcp.ReadResourceRequest{}
			req.Params.URI = tt.uri
			res, err := c.ReadResource(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			text, ok := mcp.AsTextResourceContents(res.Contents[0])
			if len(res.Contents) != 1 || !ok || text.URI != tt.uri || !strings.Contains(text.Text, tt.want) {
				t.Errorf("contents = %+v, want text containing %q", res.Contents, tt.want)
			}
		})
	}
	t.Run("an unknown customer resource is an error", func(t *testing.T) {
		req := mcp.ReadResourceRequest{}
		req.Params.URI = customerURIPrefix + "cus_0000"
		if _, err := c.ReadResource(ctx, req); err == nil {
			t.Error("read succeeded")
		}
	})
}

func TestSummarizeCustomerPrompt(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	c := newClient(t, env.options(nil), "")
	ctx := testContext(t)

	list, err := c.ListPrompts(ctx, mcp.ListPromptsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Prompts) != 1 || list.Prompts[0].Name != "summarize_customer" ||
		len(list.Prompts[0].Arguments) != 1 || !list.Prompts[0].Arguments[0].Required {
		t.Fatalf("prompts = %+v", list.Prompts)
	}
	tests := []struct {
		name    string
		id      string
		wantErr bool
	}{
		{"embeds the customer resource in a user message", "cus_1002", false},
		{"an unknown customer is an error", "cus_0000", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := mcp.GetPromptRequest{}
			req.Params.Name = "summarize_customer"
			req.Params.Arguments = map[string]string{"customer_id": tt.id}
			res, err := c.GetPrompt(ctx, req)
			if tt.wantErr {
				if err == nil {
					t.Fatal("prompt for an unknown customer succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var embedded *mcp.EmbeddedResource
			for _, m := range res.Messages {
				if m.Role != mcp.RoleUser {
					t.Errorf("message role = %q, want user", m.Role)
				}
				if e, ok := mcp.AsEmbeddedResource(m.Content); ok {
					embedded = e
				}
			}
			if embedded == nil {
				t.Fatalf("no embedded resource in %+v", res.Messages)
			}
			text, ok := mcp.AsTextResourceContents(embedded.Resource)
			if !ok || text.URI != customerURIPrefix+tt.id || !strings.Contains(text.Text, "ben.okafor@example.net") {
				t.Errorf("embedded resource = %+v", embedded.Resource)
			}
		})
	}
}
