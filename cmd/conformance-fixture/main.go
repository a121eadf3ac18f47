// Command conformance-fixture is Sallyport's own fixture MCP server for the
// official conformance suite (@modelcontextprotocol/conformance). It is
// written with mcp-go's server package and exposes the tools, resources,
// resource templates and prompts that the suite's server scenarios call by
// name (test_simple_text, test://static-text, test_simple_prompt, ...): the
// same catalog as mcp-go's examples/conformance fixture, plus
// json_schema_2020_12_tool, whose input schema carries $schema, $defs and
// additionalProperties so that the json-schema-2020-12 scenario can check
// that they survive a hop.
//
// It serves MCP over stdio by default (the gateway's stdio backend in the
// conformance test), and over Streamable HTTP at /mcp with -http ADDR, so
// that it can be run by the suite directly and compared with mcp-go's own
// fixture. In stdio mode nothing but MCP messages is written to stdout; logs
// go to stderr.
//
// Unlike mcp-go's fixture, a tool that sends notifications waits (a bounded
// time) until the transport has written them before it returns its result:
// mcp-go hands notifications to a separate writer goroutine, and a result
// written ahead of them makes the client drop the late ones (mcp-go's own
// expected-failures list carries tools-call-with-logging and
// tools-call-with-progress for that reason). See delivery.go.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/server"
)

const (
	serverName    = "sallyport-conformance-fixture"
	serverVersion = "1.0.0"
	endpointPath  = "/mcp"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "conformance-fixture: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("conformance-fixture", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	httpAddr := fs.String("http", "", "serve Streamable HTTP at http://ADDR"+endpointPath+" (a loopback address) instead of stdio")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}

	logger := log.New(os.Stderr, "conformance-fixture: ", log.LstdFlags)
	sent := newDeliveries()
	mcpServer := newServer(sent, logger)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if *httpAddr == "" {
		stdio := server.NewStdioServer(mcpServer)
		stdio.SetErrorLogger(logger)
		err := stdio.Listen(ctx, os.Stdin, &countingWriter{w: os.Stdout, d: sent})
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("serve stdio: %w", err)
		}
		return nil
	}
	return serveHTTP(ctx, *httpAddr, mcpServer, sent, logger)
}

// serveHTTP serves Streamable HTTP on addr until ctx ends.
func serveHTTP(ctx context.Context, addr string, mcpServer *server.MCPServer, sent *deliveries, logger *log.Logger) error {
	if err := checkLoopback(addr); err != nil {
		return err
	}
	streamable := server.NewStreamableHTTPServer(mcpServer, server.WithEndpointPath(endpointPath))
	mux := http.NewServeMux()
	mux.Handle(endpointPath, countResponses(streamable, sent))
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: logger}
	logger.Printf("MCP endpoint http://%s%s", ln.Addr(), endpointPath)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	return nil
}

// checkLoopback refuses to listen anywhere but on a loopback address: the
// fixture has no authentication.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-http %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-http %q: not a loopback address", addr)
}
