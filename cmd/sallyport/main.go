// Command sallyport is the Sallyport MCP gateway: one binary that serves
// the gateway over Streamable HTTP (serve) or stdio (stdio), checks and
// imports configuration, manages client tokens, and runs the demo backend.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `sallyport: a security-first MCP gateway

Usage:
  sallyport serve  [-c FILE] [--listen ADDR]   serve MCP over Streamable HTTP (/mcp); without -c, the built-in demo
  sallyport stdio  -c FILE                     serve one client over stdin/stdout (what Claude Desktop launches)
  sallyport check  -c FILE                     validate a configuration file
  sallyport import FILE                        turn a Claude Desktop config (mcpServers) into backends YAML
  sallyport tokens create -c FILE --principal NAME [--groups a,b]
  sallyport tokens list   -c FILE
  sallyport tokens revoke -c FILE ID             (tokens live in the config's database; --db FILE overrides it)
  sallyport users add     -c FILE NAME [--groups a,b] [--password-stdin]
  sallyport users passwd  -c FILE NAME [--password-stdin]
  sallyport users disable|enable -c FILE NAME
  sallyport users list    -c FILE              reviewer accounts (people; tokens are for programs). Without
                                               --password-stdin a password is generated and shown once
  sallyport audit verify [-c FILE] [--db FILE | --file EXPORT] [--key-env VAR]
                                               check the audit log's hash chain; names the first row that does not fit
  sallyport audit export [-c FILE] [--db FILE] --format csv|jsonl [--out FILE]
                         [--since T] [--until T] [--principal P] [--backend B] [--tool T] [--method M] [--decision D] [--approval ID]
  sallyport audit prune  [-c FILE] [--db FILE] --older-than AGE
  sallyport approvals list [-c FILE] [--db FILE] [--state pending|all|a,b] [--format text|json]
  sallyport approvals show ID [-c FILE] [--db FILE]
  sallyport approvals approve|deny ID --as USER [--comment TEXT] [-c FILE] [--db FILE]
                                               decide a held call as a reviewer account (its password on stdin), on the database
                                               (or with --url http://HOST:PORT and a token in $SALLYPORT_TOKEN: the API)
  sallyport policy test   [-v] [--run RE] [DIR|FILE ...]   run the Rego unit tests (test_ rules); exit 2 when one fails
  sallyport policy eval   [-p DIR] --input FILE.json       print the decision document for one input
  sallyport policy replay [-p DIR] [-c FILE] [--db FILE] [--since 7d] [--fail-on-change]
                                               evaluate a candidate policy on recorded traffic; print what changes
  sallyport policy check  [-p DIR]                         compile and capability-check a policy (for CI)
                                               (-p is repeatable; without it: the config's policy.paths, else the embedded default)
  sallyport dlp scan [FILE|-] [--format text|json] [-c FILE] [--direction D] [--backend ID] [--tool NAME] [--show-values] [--fail]
                                               print the DLP findings in a file, or in a JSON-RPC message with the
                                               actions the gateway would take; --fail exits 3 when there are findings
  sallyport dlp detectors                      list the detectors
  sallyport demo-server --sandbox DIR          the demo MCP backend, over stdio
  sallyport version
`

func main() {
	os.Exit(Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// errUsage marks errors that should print the usage text.
var errUsage = errors.New("usage")

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = runServe(ctx, rest, stderr)
	case "stdio":
		err = runStdio(ctx, rest, stdin, stdout, stderr)
	case "check":
		err = runCheck(rest, stdout)
	case "import":
		err = runImport(rest, stdout)
	case "tokens":
		err = runTokens(rest, stdout)
	case "users":
		err = runUsers(rest, stdin, stdout, stderr)
	case "audit":
		err = runAudit(ctx, rest, stdout, stderr)
	case "policy":
		err = runPolicy(ctx, rest, stdout, stderr)
	case "approvals":
		err = runApprovals(ctx, rest, stdin, stdout, stderr)
	case "dlp":
		err = runDLP(rest, stdin, stdout)
	case "demo-server":
		err = runDemo(ctx, rest, stdin, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "sallyport", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	var exit *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if exit.msg != "" {
			fmt.Fprintln(stderr, "sallyport:", exit.msg)
		}
		return exit.code
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "sallyport:", strings.TrimPrefix(err.Error(), "usage: "))
		}
		fmt.Fprint(stderr, usage)
		return 2
	default:
		fmt.Fprintln(stderr, "sallyport:", err)
		return 1
	}
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// newLogger builds the process logger from the config: text or JSON, to
// stderr or a file. It never writes to stdout.
func newLogger(level, format, file string, stderr io.Writer) (*slog.Logger, io.Closer, error) {
	var w io.Writer = stderr
	var closer io.Closer = io.NopCloser(nil)
	if file != "" {
		f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open log file: %w", err)
		}
		w, closer = f, f
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h), closer, nil
}
