// Package jsonrpc is the strict JSON-RPC 2.0 codec every MCP message passes
// through on its way across the gateway.
//
// It is built around one hand-written, single-pass, non-recursive scanner
// that validates the whole input against RFC 8259 exactly and refuses
// anything two JSON parsers could read differently:
//
//   - invalid UTF-8 (including overlong forms and UTF-8-encoded surrogates),
//     raw control characters in strings, malformed or unpaired \u escapes;
//   - duplicate member names in any object at any depth, compared after
//     unescaping ("a" and "\u0061" are the same name);
//   - nesting deeper than [Limits.MaxDepth] (checked without recursion) and
//     input larger than [Limits.MaxBytes] (checked before scanning);
//   - anything but JSON whitespace after the value.
//
// On top of the grammar, [Decode] enforces the JSON-RPC 2.0 message shape
// with a closed member set (jsonrpc, id, method, params, result, error):
// unknown members, including case variants such as "Method", are refused.
//
// Decoding is zero-copy: the raw fields of a [Message] (ID, Params, Result,
// Error.Data) are sub-slices of the input, so members the gateway does not
// understand are forwarded byte for byte. [Message.Encode] copies them back
// verbatim. The helpers [Member], [SetMember], [DeleteMember],
// [EachMember] and [EachElement] edit and walk raw values that were
// validated earlier, again without re-encoding the bytes they do not touch.
//
// Malformed JSON is reported with [CodeParseError]; well-formed JSON that is
// not an acceptable message with [CodeInvalidRequest]. Every refusal is a
// [*DecodeError] whose [DecodeError.RPCError] is ready to send back.
package jsonrpc

import (
	"encoding/json"
	"strconv"
)

// JSON-RPC 2.0 error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// Default limits, used for zero fields of [Limits].
const (
	DefaultMaxBytes = 4 << 20 // 4 MiB
	DefaultMaxDepth = 64
	DefaultMaxBatch = 100
)

// Limits bound what Decode accepts; zero fields take the defaults.
// Negative fields also take the defaults.
type Limits struct {
	// MaxBytes is the largest input accepted, in bytes.
	MaxBytes int
	// MaxDepth is the deepest nesting of objects and arrays accepted; the
	// message object itself is at depth 1.
	MaxDepth int
	// MaxBatch is the largest number of elements accepted in a batch.
	MaxBatch int
}

func (l Limits) norm() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxBatch <= 0 {
		l.MaxBatch = DefaultMaxBatch
	}
	return l
}

// Error is a JSON-RPC error object. It implements error.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

// Error returns "jsonrpc error CODE: MESSAGE".
func (e *Error) Error() string {
	return "jsonrpc error " + strconv.Itoa(e.Code) + ": " + e.Message
}

// DecodeError is what Decode returns for input it refuses. ID is the request id
// when it could be recovered from otherwise-invalid input (so the error response can
// carry it), else nil (the response then uses null).
//
// ID is only recovered from well-formed JSON with exactly one "id" member
// whose value is a string or an integer; it is never recovered from a parse
// error. Unlike a Message's fields, ID is a copy: it does not alias the
// input.
type DecodeError struct {
	Code    int    // CodeParseError or CodeInvalidRequest
	Message string // short, lowercase, names the problem
	ID      json.RawMessage
}

// Error returns the problem prefixed with the package name and the error
// class, e.g. `jsonrpc: invalid request: unknown member "Method"`.
func (e *DecodeError) Error() string {
	switch e.Code {
	case CodeParseError:
		return "jsonrpc: parse error: " + e.Message
	case CodeInvalidRequest:
		return "jsonrpc: invalid request: " + e.Message
	}
	return "jsonrpc: " + e.Message
}

// RPCError returns the JSON-RPC error object to send back for e.
func (e *DecodeError) RPCError() *Error {
	return &Error{Code: e.Code, Message: e.Message}
}

// Message is one JSON-RPC message. Raw fields are sub-slices of the decoded
// input (zero-copy): the caller must not reuse the input buffer while the message lives.
//
// The raw sub-slices handed out by Decode have their capacity clipped to
// their length, so appending to one never writes into the input.
type Message struct {
	ID     json.RawMessage // nil when absent; a JSON string or integer; `null` only on error responses
	Method string          // "" for responses
	Params json.RawMessage // nil when absent; otherwise a JSON object
	Result json.RawMessage // nil when absent
	Error  *Error          // nil when absent
}

// IsRequest reports whether m is a request: it has a method and an id.
func (m *Message) IsRequest() bool { return m.Method != "" && m.ID != nil }

// IsNotification reports whether m is a notification: a method and no id.
func (m *Message) IsNotification() bool { return m.Method != "" && m.ID == nil }

// IsResponse reports whether m is a response: no method, and a result or an
// error.
func (m *Message) IsResponse() bool {
	return m.Method == "" && (m.Result != nil || m.Error != nil)
}

// NewRequest returns a request message. id and params are used as given
// (params may be nil).
func NewRequest(id json.RawMessage, method string, params json.RawMessage) *Message {
	return &Message{ID: id, Method: method, Params: params}
}

// NewNotification returns a notification message (a request without id).
func NewNotification(method string, params json.RawMessage) *Message {
	return &Message{Method: method, Params: params}
}

// NewResult returns a success response. A nil result becomes null.
func NewResult(id, result json.RawMessage) *Message {
	if result == nil {
		result = json.RawMessage("null")
	}
	return &Message{ID: id, Result: result}
}

// NewError returns an error response. A nil id becomes null, as JSON-RPC
// requires when the request id could not be determined.
func NewError(id json.RawMessage, code int, message string, data json.RawMessage) *Message {
	if id == nil {
		id = json.RawMessage("null")
	}
	return &Message{ID: id, Error: &Error{Code: code, Message: message, Data: data}}
}
