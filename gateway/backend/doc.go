// Package backend implements the gateway's legs toward backend MCP servers:
// transports (a supervised stdio process, a Streamable HTTP client, a legacy
// HTTP+SSE client) and Leg, the MCP client session over one transport that
// allocates the gateway's own request ids and progress tokens and maps the
// answers back to their callers.
package backend
