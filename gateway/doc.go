// Package gateway holds Sallyport's domain types: the exchange that carries
// one MCP message through the pipeline, the principal it acts for, the stage
// interface the pipeline is built from, and the errors the pipeline maps to
// JSON-RPC. It imports no third-party package; the packages that wrap a
// dependency (policy, dlp, vault, gateway/sqlite, ui) implement its
// interfaces.
package gateway
