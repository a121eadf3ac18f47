package proxy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

func TestResourcesAreRoutedByURI(t *testing.T) {
	g := newTestGateway(t, testConfig(t, demoBackend(t, "demo")))
	s, sink := initSession(t, g)
	tests := []struct {
		name, method, params string
		want                 string // in the result
		code                 int    // or this error
	}{
		{"lists the backend's resources unchanged", "resources/list", ``, `"uri":"demo://sandbox/README"`, 0},
		{"lists the templates", "resources/templates/list", ``, `"uriTemplate":"demo://customers/{id}"`, 0},
		{"reads a listed resource", "resources/read", `{"uri":"demo://sandbox/README"}`, `"contents":[`, 0},
		{"reads through a template", "resources/read", `{"uri":"demo://customers/cus_1003"}`, `cus_1003`, 0},
		{"an unknown URI is resource-not-found", "resources/read", `{"uri":"nope://x"}`, ``, CodeResourceNotFound},
		{"a missing uri is invalid params", "resources/read", `{}`, ``, jsonrpc.CodeInvalidParams},
		{"an unknown log level is invalid params", "logging/setLevel", `{"level":"loud"}`, ``, jsonrpc.CodeInvalidParams},
		{"a known log level is accepted", "logging/setLevel", `{"level":"error"}`, `{}`, 0},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := 100 + i
			s.HandleMessage(request(id, tc.method, tc.params))
			resp := sink.await(t, itoa(id))
			if tc.code != 0 {
				if resp.Error == nil || resp.Error.Code != tc.code {
					t.Fatalf("got %s / %+v, want error %d", resp.Result, resp.Error, tc.code)
				}
				return
			}
			if resp.Error != nil || !strings.Contains(string(resp.Result), tc.want) {
				t.Fatalf("got %s / %+v, want %s", resp.Result, resp.Error, tc.want)
			}
		})
	}
}

func TestTheSameURIOnTwoBackendsIsRefused(t *testing.T) {
	g := newTestGateway(t, testConfig(t, demoBackend(t, "one"), demoBackend(t, "two")))
	s, sink := initSession(t, g)
	s.HandleMessage(request(1, "resources/read", `{"uri":"demo://sandbox/README"}`))
	resp := sink.await(t, "1")
	if resp.Error == nil || !strings.Contains(resp.Error.Message, "one and two") {
		t.Fatalf("got %s / %+v, want an error naming both backends", resp.Result, resp.Error)
	}
}

func TestInitializeAdvertisesTheUnionOfCapabilities(t *testing.T) {
	g := newTestGateway(t, testConfig(t, demoBackend(t, "demo")))
	sink := newSink()
	s, _ := g.NewSession(NewSessionID(), "test", principalAlice, sink)
	s.HandleMessage(request(0, "initialize", `{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}`))
	resp := sink.await(t, "0")
	caps, _ := jsonrpc.Member(resp.Result, "capabilities")
	for _, want := range []string{"tools", "prompts", "resources"} {
		if _, ok := jsonrpc.Member(caps, want); !ok {
			t.Errorf("capabilities %s lack %s", caps, want)
		}
	}
	if _, ok := jsonrpc.Member(caps, "tasks"); ok {
		t.Errorf("tasks advertised though the gateway does not relay them: %s", caps)
	}
}

func TestAggregatedListsArePagedWithSignedCursors(t *testing.T) {
	cfg := testConfig(t, demoBackend(t, "a"), demoBackend(t, "b"))
	g := newTestGatewayWith(t, cfg, Options{PageSize: 5})
	s, sink := initSession(t, g)
	seen := map[string]bool{}
	cursor := ""
	for page := 0; ; page++ {
		params := ``
		if cursor != "" {
			params = `{"cursor":` + string(jsonrpc.Quote(cursor)) + `}`
		}
		s.HandleMessage(request(100+page, "tools/list", params))
		resp := sink.await(t, itoa(100+page))
		if resp.Error != nil {
			t.Fatalf("page %d: %+v", page, resp.Error)
		}
		var r struct {
			Tools      []struct{ Name string } `json:"tools"`
			NextCursor string                  `json:"nextCursor"`
		}
		json.Unmarshal(resp.Result, &r)
		if len(r.Tools) > 5 {
			t.Fatalf("page of %d", len(r.Tools))
		}
		for _, tl := range r.Tools {
			if seen[tl.Name] {
				t.Fatalf("%s listed twice", tl.Name)
			}
			seen[tl.Name] = true
		}
		if r.NextCursor == "" {
			break
		}
		if page == 0 {
			tampered := []byte(r.NextCursor)
			tampered[0] ^= 1
			for i, bad := range []string{string(tampered), r.NextCursor + "x", "garbage"} {
				s.HandleMessage(request(900+i, "tools/list", `{"cursor":`+string(jsonrpc.Quote(bad))+`}`))
				if resp := sink.await(t, itoa(900+i)); resp.Error == nil || resp.Error.Code != jsonrpc.CodeInvalidParams {
					t.Fatalf("tampered cursor %q: %+v", bad, resp.Error)
				}
			}
			// Another session cannot use this session's cursor.
			s2, sink2 := initSession(t, g)
			s2.HandleMessage(request(950, "tools/list", `{"cursor":`+string(jsonrpc.Quote(r.NextCursor))+`}`))
			if resp := sink2.await(t, "950"); resp.Error == nil {
				t.Fatal("a cursor worked in another session")
			}
		}
		cursor = r.NextCursor
	}
	if len(seen) != 12 { // six demo tools on each of two backends
		t.Fatalf("paged through %d tools, want 12: %v", len(seen), seen)
	}
}
