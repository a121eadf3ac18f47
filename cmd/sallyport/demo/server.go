package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

const (
	serverName    = "sallyport-demo"
	serverTitle   = "Sallyport demo backend"
	serverVersion = "0.1.0"

	// defaultOutboxName is the outbox file created in os.TempDir() when
	// Options.Outbox is empty.
	defaultOutboxName = "sallyport-demo-outbox.jsonl"

	// stdioWorkers is how many tool calls the stdio transport runs at once
	// (mcp-go's default is 5, its maximum 100). The gateway's concurrency
	// tests run more than five slow calls side by side.
	stdioWorkers = 64
	// stdioQueueSize is how many tool calls may wait for a worker before
	// mcp-go falls back to running them on its read loop.
	stdioQueueSize = 1024
)

// Log attribute keys.
const (
	logKeyTool       = "tool"
	logKeyPath       = "path"
	logKeyReason     = "reason"
	logKeyError      = "error"
	logKeyMessageID  = "message_id"
	logKeyRecipients = "recipients"
	logKeyDeleted    = "deleted"
	logKeyNotFound   = "not_found"
	logKeyStep       = "step"
	logKeySteps      = "steps"
	logKeySandbox    = "sandbox"
	logKeyOutbox     = "outbox"
)

const instructions = `sallyport-demo is a demonstration backend for the Sallyport MCP gateway. Everything in it is fictional.

- read_file and list_files read UTF-8 text files inside one sandbox folder; paths are relative to that folder and nothing outside it can be read.
- lookup_customer returns a customer record (by customer_id such as cus_1001, or by email). Records contain personal data and payment card numbers (test numbers), so expect the gateway to redact them.
- send_email records a message in a local outbox file; no email is ever sent.
- delete_records permanently removes customer records from this server's memory (until it restarts).
- generate_report is deliberately slow, reports progress when given a progressToken, and can be cancelled.

Resources: demo://customers/{id} (one per customer) and demo://sandbox/README. Prompt: summarize_customer.`

// Options configures the demo server.
type Options struct {
	// Sandbox is the folder read_file and list_files may read from. It is
	// required and must be an existing folder.
	Sandbox string
	// Outbox is the JSONL file send_email appends messages to; it is created
	// with mode 0600. Empty means
	// filepath.Join(os.TempDir(), "sallyport-demo-outbox.jsonl").
	Outbox string
	// Logger receives the server's diagnostics. It must not write to the
	// stdout that Run serves MCP on. Nil discards them.
	Logger *slog.Logger
}

// demo holds the state behind one MCP server: the sandbox, the outbox and
// the customer store are per server, so each NewServer starts afresh.
type demo struct {
	sandbox *sandbox
	outbox  *outbox
	store   *customerStore
	log     *slog.Logger
	mcp     *server.MCPServer
}

// NewServer builds the demo MCP server from opts. It is what Run serves over
// stdio, and what tests connect to in process. It fails if opts.Sandbox is not
// an existing folder or the folder of opts.Outbox does not exist.
func NewServer(opts Options) (*server.MCPServer, error) {
	d, err := newDemo(opts)
	if err != nil {
		return nil, err
	}
	return d.mcp, nil
}

func newDemo(opts Options) (*demo, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sb, err := newSandbox(opts.Sandbox)
	if err != nil {
		return nil, err
	}
	outboxPath := opts.Outbox
	if outboxPath == "" {
		outboxPath = filepath.Join(os.TempDir(), defaultOutboxName)
	}
	ob, err := newOutbox(outboxPath)
	if err != nil {
		return nil, err
	}
	d := &demo{sandbox: sb, outbox: ob, store: newCustomerStore(), log: log}
	d.mcp = server.NewMCPServer(serverName, serverVersion,
		server.WithTitle(serverTitle),
		server.WithInstructions(instructions),
		server.WithToolCapabilities(false),
		server.WithResourceCapabilities(false, true),
		server.WithPromptCapabilities(false),
		server.WithInputSchemaValidation(),
		server.WithOutputSchemaValidation(),
		server.WithRecovery(),
		server.WithResourceRecovery(),
		server.WithLogger(log),
	)
	d.addTools()
	d.addResources()
	d.addPrompts()
	return d, nil
}

func (d *demo) addTools() {
	d.mcp.AddTool(readFileTool, d.readFile)
	d.mcp.AddTool(listFilesTool, d.listFiles)
	d.mcp.AddTool(lookupCustomerTool, d.lookupCustomer)
	d.mcp.AddTool(sendEmailTool, d.sendEmail)
	d.mcp.AddTool(deleteRecordsTool, d.deleteRecords)
	d.mcp.AddTool(generateReportTool, d.generateReport)
}

// running guards mcp-go's process-wide stdio session (see the package doc).
var running atomic.Bool

// Run serves the demo server over MCP's stdio transport: JSON-RPC messages,
// one per line, read from stdin and written to stdout. Nothing but MCP
// messages is written to stdout; diagnostics go to opts.Logger. Run returns
// nil when stdin reaches EOF or ctx ends, and an error if the options are
// invalid or reading or writing fails.
//
// mcp-go keeps a single stdio session per process, so only one Run may be
// active at a time; a second concurrent Run returns an error.
func Run(ctx context.Context, opts Options, stdin io.Reader, stdout io.Writer) error {
	if !running.CompareAndSwap(false, true) {
		return errors.New("serve stdio: another demo server is already serving stdio in this process")
	}
	defer running.Store(false)

	d, err := newDemo(opts)
	if err != nil {
		return err
	}
	stdio := server.NewStdioServer(d.mcp)
	// mcp-go logs transport errors with the standard log package, to stderr
	// by default; route them to the injected logger instead.
	stdio.SetErrorLogger(slog.NewLogLogger(d.log.Handler(), slog.LevelError))
	server.WithWorkerPoolSize(stdioWorkers)(stdio)
	server.WithQueueSize(stdioQueueSize)(stdio)

	d.log.Info("serving MCP over stdio", logKeySandbox, d.sandbox.root, logKeyOutbox, d.outbox.path)
	err = stdio.Listen(ctx, stdin, stdout)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("serve stdio: %w", err)
	}
	return nil
}

// toolError is a tool result with isError set: the model sees the message and
// can correct itself, unlike with a JSON-RPC error.
func toolError(format string, args ...any) *mcp.CallToolResult {
	return mcp.NewToolResultErrorf(format, args...)
}
