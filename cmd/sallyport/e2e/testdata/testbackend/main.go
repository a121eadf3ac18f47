// Command testbackend is a small stdio MCP server the end-to-end tests build
// and put behind the gateway. It has two modes.
//
// Without flags it is an mcp-go server (github.com/mark3labs/mcp-go/server)
// with two tools:
//
//   - progress_then_sample {nonce}: sends three notifications/progress under
//     the caller's progress token, each carrying the nonce in its message,
//     waits until they are written out, then asks the client for sampling
//     (sampling/createMessage) with the nonce in the prompt, and returns the
//     nonce, the sampled text and the model. When the sampling request
//     fails, the result has isError set and says why. (mcp-go writes
//     notifications from a goroutine of their own, so without the wait they
//     could follow the sampling request, or even the result.)
//   - offered_capabilities: returns the client capabilities the backend was
//     offered at initialize, as JSON.
//
// With -mutable FILE it also has a tool whose definition changes on demand:
//
//   - mutable {note}: appends the note and a newline to FILE (the evidence
//     that a call ran) and returns "noted NOTE". Its description names its
//     definition version, 1 at start.
//   - redefine: raises mutable's definition version (a new description),
//     which makes mcp-go send notifications/tools/list_changed, and returns
//     the new version.
//
// With -raw FILE it speaks the line protocol by hand: FILE is a JSON object
// from method name to the result to answer that method with, written out
// byte for byte as it stands in FILE (so results can carry members no SDK
// knows). Requests for other methods get -32601; notifications and answers
// are ignored. With -log FILE every line received is appended to FILE.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

func main() {
	raw := flag.String("raw", "", "answer from this JSON file of canned results instead of running the mcp-go server")
	logFile := flag.String("log", "", "append every line received to this file (raw mode)")
	mutable := flag.String("mutable", "", "add the tools mutable and redefine; mutable appends its notes to this file")
	flag.Parse()
	var err error
	if *raw != "" {
		err = serveRaw(*raw, *logFile)
	} else {
		err = serveMCPGo(*mutable)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbackend:", err)
		os.Exit(1)
	}
}

// ---------------------------------------------------------------------------
// mcp-go mode

func serveMCPGo(mutableFile string) error {
	out := &progressWriter{w: os.Stdout, waiters: map[string]chan struct{}{}}
	var mu sync.Mutex
	var offered json.RawMessage = []byte("null")
	hooks := &server.Hooks{}
	hooks.AddAfterInitialize(func(_ context.Context, _ any, req *mcp.InitializeRequest, _ *mcp.InitializeResult) {
		caps, _ := json.Marshal(req.Params.Capabilities)
		mu.Lock()
		offered = caps
		mu.Unlock()
	})
	s := server.NewMCPServer("sallyport-e2e-testbackend", "1.0.0", server.WithHooks(hooks))

	s.AddTool(mcp.NewTool("offered_capabilities",
		mcp.WithDescription("The client capabilities this backend was offered at initialize."),
	), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		mu.Lock()
		defer mu.Unlock()
		return mcp.NewToolResultText(string(offered)), nil
	})

	s.AddTool(mcp.NewTool("progress_then_sample",
		mcp.WithDescription("Sends three progress notifications, then asks the client for sampling with the nonce."),
		mcp.WithString("nonce", mcp.Required()),
	), func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		nonce, err := req.RequireString("nonce")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		srv := server.ServerFromContext(ctx)
		if req.Params.Meta != nil && req.Params.Meta.ProgressToken != nil {
			last := out.expect(fmt.Sprintf("step 3 for %s", nonce))
			for i := 1; i <= 3; i++ {
				err := srv.SendNotificationToClient(ctx, "notifications/progress", map[string]any{
					"progressToken": req.Params.Meta.ProgressToken,
					"progress":      i,
					"total":         3,
					"message":       fmt.Sprintf("step %d for %s", i, nonce),
				})
				if err != nil {
					return mcp.NewToolResultError("progress: " + err.Error()), nil
				}
			}
			// Notifications are written in order: once the last is out,
			// all are.
			select {
			case <-last:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		//lint:ignore SA1019 sampling is what this backend is for (MCP 2025-11-25 has it)
		res, err := srv.RequestSampling(ctx, mcp.CreateMessageRequest{
			CreateMessageParams: mcp.CreateMessageParams{
				Messages: []mcp.SamplingMessage{{
					Role:    mcp.RoleUser,
					Content: mcp.NewTextContent("nonce:" + nonce),
				}},
				MaxTokens: 32,
			},
		})
		if err != nil {
			return mcp.NewToolResultError("sampling failed: " + err.Error()), nil
		}
		text := ""
		if tc, ok := res.Content.(mcp.TextContent); ok {
			text = tc.Text
		}
		return mcp.NewToolResultText(fmt.Sprintf("nonce=%s sampled=%s model=%s", nonce, text, res.Model)), nil
	})
	if mutableFile != "" {
		addMutable(s, mutableFile)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return server.NewStdioServer(s).Listen(ctx, os.Stdin, out)
}

// addMutable adds the tools mutable and redefine (see the package doc).
func addMutable(s *server.MCPServer, file string) {
	define := func(version int64) mcp.Tool {
		return mcp.NewTool("mutable",
			mcp.WithDescription(fmt.Sprintf("Appends its note to the backend's file. Definition version %d.", version)),
			mcp.WithString("note", mcp.Required()),
		)
	}
	var mu sync.Mutex
	run := func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		note, err := req.RequireString("note")
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		mu.Lock()
		defer mu.Unlock()
		f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		_, err = f.WriteString(note + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return mcp.NewToolResultError(err.Error()), nil
		}
		return mcp.NewToolResultText("noted " + note), nil
	}
	var version int64 = 1
	s.AddTool(define(version), run)
	s.AddTool(mcp.NewTool("redefine",
		mcp.WithDescription("Changes the definition of mutable (its description) and tells the client the tool list changed."),
	), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		mu.Lock()
		version++
		v := version
		mu.Unlock()
		// AddTool replaces the definition and notifies every initialized
		// session (tools listChanged is on).
		s.AddTool(define(v), run)
		return mcp.NewToolResultText(fmt.Sprintf("mutable is now at definition version %d", v)), nil
	})
}

// progressWriter is the server's stdout. It tells waiters when the progress
// notification with a given message has been written.
type progressWriter struct {
	w       io.Writer
	mu      sync.Mutex
	waiters map[string]chan struct{}
}

// expect returns a channel closed once a progress notification with this
// message has been written.
func (p *progressWriter) expect(message string) <-chan struct{} {
	ch := make(chan struct{})
	p.mu.Lock()
	p.waiters[message] = ch
	p.mu.Unlock()
	return ch
}

// Write writes one message (mcp-go writes each with one call).
func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if err == nil && bytes.Contains(b, []byte(`"notifications/progress"`)) {
		var msg struct {
			Params struct {
				Message string `json:"message"`
			} `json:"params"`
		}
		if json.Unmarshal(b, &msg) == nil {
			p.mu.Lock()
			if ch := p.waiters[msg.Params.Message]; ch != nil {
				close(ch)
				delete(p.waiters, msg.Params.Message)
			}
			p.mu.Unlock()
		}
	}
	return n, err
}

// ---------------------------------------------------------------------------
// Raw mode

func serveRaw(path, logPath string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var results map[string]json.RawMessage // RawMessage keeps the bytes as they are
	if err := json.Unmarshal(data, &results); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var logw *os.File
	if logPath != "" {
		if logw, err = os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600); err != nil {
			return err
		}
		defer logw.Close()
	}
	out := bufio.NewWriter(os.Stdout)
	in := bufio.NewReader(os.Stdin)
	for {
		line, err := in.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			if logw != nil {
				if _, err := logw.Write(append([]byte(strings.TrimRight(string(line), "\r\n")), '\n')); err != nil {
					return err
				}
			}
			var msg struct {
				ID     json.RawMessage `json:"id"`
				Method string          `json:"method"`
			}
			if json.Unmarshal(line, &msg) == nil && msg.ID != nil && msg.Method != "" {
				if res, ok := results[msg.Method]; ok {
					fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%s,"result":%s}`+"\n", msg.ID, res)
				} else {
					fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"method not found"}}`+"\n", msg.ID)
				}
				if err := out.Flush(); err != nil {
					return err
				}
			}
		}
		if err != nil {
			return nil // EOF: the gateway closed stdin
		}
	}
}
