package jsonrpc

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// toolsCallRequest is a typical ~300-byte MCP tools/call request.
const toolsCallRequest = `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"search_issues","arguments":{"repository":"sallyport/sallyport","query":"is:open label:bug sort:updated-desc","state":"open","labels":["bug","security"],"limit":20,"include_body":false},"_meta":{"progressToken":"c0ffee-1234-5678-9abc-def012345678"}}}`

// toolsListResult is a ~20 KB tools/list response.
var toolsListResult = func() string {
	var b strings.Builder
	b.WriteString(`{"jsonrpc":"2.0","id":1,"result":{"tools":[`)
	for i := 0; b.Len() < 20<<10-600; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"tool_%d","title":"Tool number %d","description":"Does thing %d to the repository: reads files, lists branches, opens pull requests and reports the result as structured content. Use with care.",`+
			`"inputSchema":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"path":{"type":"string","description":"File path relative to the repository root"},"ref":{"type":"string","description":"Git ref, defaults to the default branch"},"limit":{"type":"integer","minimum":1,"maximum":100,"default":20},"recursive":{"type":"boolean"}},"required":["path"],"additionalProperties":false},`+
			`"annotations":{"readOnlyHint":%t,"openWorldHint":false}}`, i, i, i, i%2 == 0)
	}
	b.WriteString(`],"nextCursor":"eyJwYWdlIjoyfQ=="}}`)
	return b.String()
}()

// stdMessage is what a gateway would decode into with encoding/json.
type stdMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

var benchInputs = []struct{ name, in string }{
	{"tools-call-300B", toolsCallRequest},
	{"tools-list-result-20KB", toolsListResult},
}

func BenchmarkDecode(b *testing.B) {
	for _, bi := range benchInputs {
		in := []byte(bi.in)
		b.Run(bi.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(in, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStdlibUnmarshal is the baseline for BenchmarkDecode:
// encoding/json.Unmarshal into a struct with RawMessage fields (which,
// unlike Decode, neither rejects duplicate or unknown members nor checks
// the message shape).
func BenchmarkStdlibUnmarshal(b *testing.B) {
	for _, bi := range benchInputs {
		in := []byte(bi.in)
		b.Run(bi.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				var m stdMessage
				if err := json.Unmarshal(in, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkValid(b *testing.B) {
	for _, bi := range benchInputs {
		in := []byte(bi.in)
		b.Run(bi.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Valid(in, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	m, err := Decode([]byte(toolsCallRequest), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = m.Encode()
		}
	})
	b.Run("AppendEncode-reused-buffer", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = m.AppendEncode(buf[:0])
		}
	})
	b.Run("stdlib-Marshal", func(b *testing.B) {
		sm := stdMessage{JSONRPC: "2.0", ID: m.ID, Method: m.Method, Params: m.Params}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&sm); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSetMember(b *testing.B) {
	m, err := Decode([]byte(toolsCallRequest), Limits{})
	if err != nil {
		b.Fatal(err)
	}
	meta := json.RawMessage(`{"progressToken":"abc","sallyport/trace":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}`)
	b.Run("replace", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = SetMember(m.Params, "_meta", meta)
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = SetMember(m.Params, "sallyport", meta)
		}
	})
	b.Run("Member", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := Member(m.Params, "_meta"); !ok {
				b.Fatal("missing")
			}
		}
	})
}
