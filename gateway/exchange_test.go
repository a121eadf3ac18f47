package gateway_test

import (
	"encoding/json"
	"testing"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

func TestExchangeReplace(t *testing.T) {
	tests := []struct {
		name         string
		method       string
		params       string // the message's params before
		target       string // x.Target before
		redacted     string // params after the redaction
		wantTarget   string
		wantArgument string // x.Arguments after ("" for none)
	}{
		{
			name:   "a resource URI's password leaves the target",
			method: "resources/read", target: "postgres://app:S3cr3t@db/x",
			params:     `{"uri":"postgres://app:S3cr3t@db/x"}`,
			redacted:   `{"uri":"postgres://app:[REDACTED]@db/x"}`,
			wantTarget: "postgres://app:[REDACTED]@db/x",
		},
		{
			name:   "a namespaced tool name keeps its prefix off the target",
			method: "tools/call", target: "lookup_ghp_x",
			params:       `{"name":"demo__lookup_ghp_x","arguments":{"k":"v"}}`,
			redacted:     `{"name":"demo__lookup_[R]","arguments":{"k":"[R]"}}`,
			wantTarget:   "lookup_[R]",
			wantArgument: `{"k":"[R]"}`,
		},
		{
			name:   "a redaction reaching into the prefix takes the whole name",
			method: "tools/call", target: "x",
			params:     `{"name":"ab__x"}`,
			redacted:   `{"name":"[R]x"}`,
			wantTarget: "[R]x",
		},
		{
			name:   "a completion's reference",
			method: "completion/complete", target: "file:///k?token=abc",
			params:     `{"ref":{"type":"ref/resource","uri":"file:///k?token=abc"}}`,
			redacted:   `{"ref":{"type":"ref/resource","uri":"file:///k?token=[R]"}}`,
			wantTarget: "file:///k?token=[R]",
		},
		{
			name:   "the arguments only: the target stays",
			method: "tools/call", target: "send",
			params:       `{"name":"demo__send","arguments":{"to":"a@b.co"}}`,
			redacted:     `{"name":"demo__send","arguments":{"to":"[R]"}}`,
			wantTarget:   "send",
			wantArgument: `{"to":"[R]"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := gateway.NewExchange(nil)
			x.Method, x.Target = tt.method, tt.target
			x.Message = jsonrpc.NewRequest(json.RawMessage(`1`), tt.method, json.RawMessage(tt.params))
			x.Arguments, _ = jsonrpc.Member(x.Message.Params, "arguments")
			x.Replace(jsonrpc.NewRequest(json.RawMessage(`1`), tt.method, json.RawMessage(tt.redacted)))
			if x.Target != tt.wantTarget {
				t.Errorf("target %q, want %q", x.Target, tt.wantTarget)
			}
			if string(x.Arguments) != tt.wantArgument {
				t.Errorf("arguments %s, want %s", x.Arguments, tt.wantArgument)
			}
			if string(x.Message.Params) != tt.redacted {
				t.Errorf("message params %s, want %s", x.Message.Params, tt.redacted)
			}
		})
	}
}
