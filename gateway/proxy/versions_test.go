package proxy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

func TestClientsGetOnlyWhatTheirVersionHas(t *testing.T) {
	g := newTestGateway(t, testConfig(t, demoBackend(t, "demo")))
	session := func(version string) (*Session, *chanSink) {
		sink := newSink()
		s, _ := g.NewSession(NewSessionID(), "test", principalAlice, sink)
		s.HandleMessage(request(0, "initialize", `{"protocolVersion":"`+version+`","capabilities":{},"clientInfo":{"name":"t","version":"1"}}`))
		sink.await(t, "0")
		s.HandleMessage(jsonrpc.NewNotification("notifications/initialized", nil))
		return s, sink
	}
	newS, newSink := session("2025-11-25")
	oldS, oldSink := session("2025-03-26")

	newS.HandleMessage(request(1, "tools/list", ""))
	oldS.HandleMessage(request(1, "tools/list", ""))
	newList, oldList := newSink.await(t, "1").Result, oldSink.await(t, "1").Result
	if !strings.Contains(string(newList), `"outputSchema"`) {
		t.Fatalf("a 2025-11-25 client lost outputSchema: %s", newList)
	}
	for _, f := range []string{`"outputSchema"`, `"icons"`, `"execution"`} {
		if strings.Contains(string(oldList), f) {
			t.Errorf("a 2025-03-26 client got %s", f)
		}
	}
	var tools struct {
		Tools []map[string]json.RawMessage `json:"tools"`
	}
	json.Unmarshal(oldList, &tools)
	for _, tl := range tools.Tools {
		if _, ok := tl["title"]; ok {
			t.Errorf("a 2025-03-26 client got a tool title: %s", tl["name"])
		}
		if _, ok := tl["inputSchema"]; !ok {
			t.Errorf("inputSchema must stay: %s", tl["name"])
		}
	}

	call := `{"name":"demo__lookup_customer","arguments":{"customer_id":"cus_1001"}}`
	newS.HandleMessage(request(2, "tools/call", call))
	oldS.HandleMessage(request(2, "tools/call", call))
	newRes, oldRes := newSink.await(t, "2").Result, oldSink.await(t, "2").Result
	if !strings.Contains(string(newRes), `"structuredContent"`) {
		t.Fatalf("a 2025-11-25 client lost structuredContent: %s", newRes)
	}
	if strings.Contains(string(oldRes), `"structuredContent"`) || !strings.Contains(string(oldRes), "cus_1001") {
		t.Fatalf("a 2025-03-26 client should get the text only: %s", oldRes)
	}
}

func TestAdaptResultKeepsStructuredDataAsText(t *testing.T) {
	in := json.RawMessage(`{"content":[{"type":"resource_link","uri":"file:///a","name":"a"}],"structuredContent":{"k": 1}}`)
	got := string(adaptResult("tools/call", in, "2024-11-05"))
	want := `{"content":[{"type":"text","text":"Resource link: file:///a"},{"type":"text","text":"{\"k\":1}"}]}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if got := string(adaptResult("tools/call", in, "2025-06-18")); got != string(in) {
		t.Fatalf("a 2025-06-18 client's result changed: %s", got)
	}
}
