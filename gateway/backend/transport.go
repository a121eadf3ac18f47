package backend

import (
	"context"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// Transport carries JSON-RPC messages to and from one backend connection.
// Incoming messages are delivered to the Receiver given when the transport
// was opened, one at a time, in order.
type Transport interface {
	// Send delivers one message to the backend. For a request, an error
	// means the request did not reach the backend (or its answer cannot
	// arrive), and the caller fails it.
	Send(ctx context.Context, msg *jsonrpc.Message) error
	// Close shuts the connection down gracefully within ctx and releases
	// everything it holds (processes, streams, sessions). It is safe to call
	// more than once.
	Close(ctx context.Context) error
}

// Receiver receives what a transport reads.
type Receiver interface {
	// Message is called for each valid incoming message.
	Message(msg *jsonrpc.Message)
	// Closed is called once when the connection ends by itself (process
	// exit, stream lost) or after Close; err says why (nil after Close).
	Closed(err error)
}

// protocolVersionSetter is implemented by transports that must announce
// the negotiated protocol version (Streamable HTTP sends it as a header).
type protocolVersionSetter interface {
	SetProtocolVersion(v string)
}
