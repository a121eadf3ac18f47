// Package wire frames MCP messages on byte streams: newline-delimited JSON
// for stdio, and Server-Sent Events for HTTP. Every reader is bounded: a
// line or event larger than the configured limit is skipped (and reported),
// never buffered without end.
package wire
