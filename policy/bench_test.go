package policy

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

func benchExchange() *gateway.Exchange {
	msg := &jsonrpc.Message{ID: json.RawMessage(`7`), Method: "tools/call",
		Params: json.RawMessage(`{"name":"docs__search","arguments":{"query":"quarterly report","limit":10,"filters":{"owner":"alice","tags":["finance","q3"]}}}`)}
	x := gateway.NewExchange(nil)
	x.Direction, x.Kind, x.Method, x.Message = gateway.ClientToBackend, gateway.KindRequest, "tools/call", msg
	x.Principal = &gateway.Principal{ID: "alice", Groups: []string{"dev"}, TokenID: "tok_1"}
	x.Session = &gateway.SessionInfo{ID: "s1", Transport: "http", ProtocolVersion: "2025-11-25", ClientName: "bench", ClientVersion: "1"}
	x.Backend, x.Target = "docs", "search"
	x.Arguments, _ = jsonrpc.Member(msg.Params, "arguments")
	x.Definition = json.RawMessage(`{"name":"search","description":"Search documents","inputSchema":{"type":"object"},"annotations":{"readOnlyHint":true}}`)
	return x
}

func BenchmarkStageDefault(b *testing.B) {
	st, err := NewStage(context.Background(), Options{Backends: []config.Backend{{ID: "docs", Transport: "stdio", Trusted: true, ReadOnlyTools: []string{"search"}}}})
	if err != nil {
		b.Fatal(err)
	}
	x := benchExchange()
	next := gateway.HandlerFunc(func(context.Context, *gateway.Exchange) error { return nil })
	b.ReportAllocs()
	for b.Loop() {
		if err := st.Handle(context.Background(), x, next); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEvalDefault(b *testing.B) {
	st, err := NewStage(context.Background(), Options{Backends: []config.Backend{{ID: "docs", Transport: "stdio", Trusted: true, ReadOnlyTools: []string{"search"}}}})
	if err != nil {
		b.Fatal(err)
	}
	doc, err := st.inputs.Build(benchExchange())
	if err != nil {
		b.Fatal(err)
	}
	set := st.Current()
	b.ReportAllocs()
	for b.Loop() {
		if d := set.Eval(context.Background(), doc); !d.Allow {
			b.Fatal(d.Reasons)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	in := NewInputs([]config.Backend{{ID: "docs", Transport: "stdio", Trusted: true, ReadOnlyTools: []string{"search"}}})
	x := benchExchange()
	b.ReportAllocs()
	for b.Loop() {
		doc, _ := in.Build(x)
		Recorded(doc)
	}
}

func BenchmarkEvalTrivial(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.rego"), []byte("package sallyport\n\ndecision := {\"allow\": true}\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	set, err := Load(context.Background(), Source{Paths: []string{dir}})
	if err != nil {
		b.Fatal(err)
	}
	in := NewInputs(nil)
	doc, _ := in.Build(benchExchange())
	b.ReportAllocs()
	for b.Loop() {
		set.Eval(context.Background(), doc)
	}
}

func BenchmarkEvalExamples(b *testing.B) {
	st, err := NewStage(context.Background(), Options{Source: Source{Paths: []string{"../examples/policies"}},
		Backends: []config.Backend{{ID: "docs", Transport: "stdio", Labels: map[string]string{"kind": "filesystem"}}}})
	if err != nil {
		b.Fatal(err)
	}
	doc, err := st.inputs.Build(benchExchange())
	if err != nil {
		b.Fatal(err)
	}
	set := st.Current()
	b.ReportAllocs()
	for b.Loop() {
		set.Eval(context.Background(), doc)
	}
}
