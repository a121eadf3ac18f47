package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// JSON-RPC error codes the gateway itself produces, beyond the JSON-RPC
// standard ones in package jsonrpc. They are in the implementation-defined
// range -32000..-32019.
const (
	// CodeBackendUnavailable: the backend could not be started or reached,
	// or it exited while the request was in flight.
	CodeBackendUnavailable = -32000
	// CodeTimeout: the backend did not answer within the request timeout.
	CodeTimeout = -32001
	// CodeRefused: a pipeline stage refused the message.
	CodeRefused = -32003
	// CodeAuditUnavailable: the audit log could not record the message, so
	// it was not forwarded.
	CodeAuditUnavailable = -32004
	// CodeApprovalDenied: a reviewer denied the held call; data names the
	// reviewer and their comment.
	CodeApprovalDenied = -32010
	// CodeApprovalExpired: no reviewer decided before the approval
	// expired. It is not a denial: nobody said no.
	CodeApprovalExpired = -32011
	// CodeApprovalCancelled: the approval item was cancelled (the tool
	// definition changed while it waited, or it was superseded).
	CodeApprovalCancelled = -32012
	// CodeApprovalUnavailable: the call needs an approval and none could
	// be created (the approval store failed, or the principal has too many
	// pending); nothing was forwarded.
	CodeApprovalUnavailable = -32013
	// CodeInternal is jsonrpc.CodeInternalError.
	CodeInternal = jsonrpc.CodeInternalError
	// CodeInvalidParams is jsonrpc.CodeInvalidParams.
	CodeInvalidParams = jsonrpc.CodeInvalidParams
	// CodeInvalidRequest is jsonrpc.CodeInvalidRequest.
	CodeInvalidRequest = jsonrpc.CodeInvalidRequest
	// CodeMethodNotFound is jsonrpc.CodeMethodNotFound.
	CodeMethodNotFound = jsonrpc.CodeMethodNotFound
)

// Error is an error with a JSON-RPC code; the gateway answers a refused or
// failed request with it.
type Error struct {
	Code    int
	Message string
	// Data is optional structured detail, raw JSON.
	Data []byte
	// Err is the underlying cause, if any; it is not sent to the client.
	Err error
}

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// RPCError maps any error to the JSON-RPC error the client receives. This
// is the one place errors become codes.
func RPCError(err error) *jsonrpc.Error {
	var ge *Error
	var re *jsonrpc.Error
	switch {
	case errors.As(err, &ge):
		return &jsonrpc.Error{Code: ge.Code, Message: ge.Message, Data: ge.Data}
	case errors.As(err, &re):
		return re
	case errors.Is(err, context.DeadlineExceeded):
		return &jsonrpc.Error{Code: CodeTimeout, Message: "request timed out"}
	case errors.Is(err, context.Canceled):
		return &jsonrpc.Error{Code: CodeRequestCancelled, Message: "request cancelled"}
	}
	// Anything else is not meant for clients: its text may carry paths or
	// addresses. The caller logs it.
	return &jsonrpc.Error{Code: CodeInternal, Message: "internal error"}
}

// CodeRequestCancelled is used for requests the gateway gave up on because
// the client or the gateway cancelled them.
const CodeRequestCancelled = -32800
