// Package demo is Sallyport's demo backend: a small but real MCP server that
// the gateway binary serves over stdio as `sallyport demo-server --sandbox DIR`.
// It exists so that the gateway's features (DLP, policy, approvals, progress and
// cancellation handling) have something honest to work against.
//
// The server, "sallyport-demo", offers six tools:
//
//   - read_file and list_files read UTF-8 text under a sandbox folder. Paths are
//     checked lexically, then resolved with filepath.EvalSymlinks and checked
//     again, and the file is finally opened through an os.Root, so neither
//     "../" traversal, absolute paths nor symlinks can leave the sandbox, not
//     even by swapping a symlink between the check and the open.
//   - lookup_customer returns a record from ten fictional customers carrying
//     PII (email, E.164 phone, well-known test card numbers, address) for the
//     DLP stage to find.
//   - send_email validates its addresses and appends the message as one JSON
//     line to an outbox file; it sends nothing.
//   - delete_records removes customers from the in-memory store of this
//     process (destructive, idempotent).
//   - generate_report is slow on purpose: it sleeps in steps, sends
//     notifications/progress after each step when the request carries a
//     progressToken, and stops when its request is cancelled.
//
// It also offers one resource per customer (demo://customers/{id}, listed and
// as a resource template), a static resource demo://sandbox/README, and a
// prompt, summarize_customer, that embeds a customer resource.
//
// # mcp-go's stdio transport
//
// Run uses mcp-go's server.StdioServer (v1.2.1). What the gateway needs to
// know about it:
//
//   - Input has no line-length limit: lines are read with
//     bufio.Reader.ReadString('\n'), which grows its buffer as needed, so a
//     2 MB request works (see the tests). The flip side is that memory is
//     unbounded per line; the gateway, not this server, has to cap message size.
//   - Every message is written as a single Write of one JSON line under a
//     mutex, so lines never interleave.
//   - Tool calls run on a worker pool (5 workers by default; Run raises it to
//     64, with a queue of 1024) so that slow calls run side by side; when the
//     queue is full a tool call runs on the read loop and blocks reading until
//     it finishes. Other requests run on their own goroutines.
//   - Notifications, progress included, go through a separate 100-slot channel
//     and writer goroutine, so a progress notification can reach stdout after
//     the response to its request. A full channel drops the notification.
//   - notifications/cancelled cancels the request's context, but the handler's
//     response (here a JSON-RPC error) is still written.
//   - When stdin reaches EOF, in-flight requests are cancelled and queued tool
//     calls may be dropped without a response, as the MCP stdio shutdown
//     sequence (close stdin, then wait for exit) expects.
//   - When ctx ends, Listen returns but the goroutine blocked reading stdin
//     stays until stdin yields a line or EOF.
//   - The stdio session is a package-level singleton in mcp-go, so only one
//     stdio server may be served per process at a time; Run enforces this.
package demo
