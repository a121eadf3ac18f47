package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// hostileCase is one malformed or unauthorised request against an
// established session.
type hostileCase struct {
	name string
	// body returns the request body for JSON-RPC id; nil sends a ping.
	body func(id int) []byte
	// mutate changes the otherwise well-formed request.
	mutate     func(r *http.Request)
	wantStatus int
	// wantCodes are the JSON-RPC error codes the body may carry; empty when
	// the contract fixes only the status (the code is then logged).
	wantCodes []int
}

func TestHostileHTTPInput(t *testing.T) {
	t.Parallel()
	needNode(t)
	g := newGateway(t, baseConfig(everythingStdio("everything", "shared")))
	alice := g.token("alice", "dev")
	bob := g.token("bob", "dev")
	g.serve()

	s := openRawSession(t, g.URL, alice)
	ping := func(id int) []byte { return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"ping"}`, id) }
	raw := func(format string) func(int) []byte {
		return func(id int) []byte { return fmt.Appendf(nil, format, id) }
	}
	header := func(k, v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set(k, v) } }

	cases := []hostileCase{
		{
			name: "a 32 MiB body is refused with 413",
			body: func(id int) []byte {
				return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"everything__echo","arguments":{"message":"%s"}}}`,
					id, strings.Repeat("A", 32<<20))
			},
			wantStatus: http.StatusRequestEntityTooLarge,
		},
		{
			name: "JSON nested 10,000 deep is refused with 400 and -32600 or -32700",
			body: func(id int) []byte {
				return fmt.Appendf(nil, `{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"everything__echo","arguments":{"message":"deep","x":%s%s}}}`,
					id, strings.Repeat("[", 10000), strings.Repeat("]", 10000))
			},
			wantStatus: http.StatusBadRequest, wantCodes: []int{-32600, -32700},
		},
		{
			name:       "a duplicate method key is refused with 400 and -32600",
			body:       raw(`{"jsonrpc":"2.0","id":%d,"method":"ping","method":"tools/call","params":{"name":"everything__echo","arguments":{"message":"dup"}}}`),
			wantStatus: http.StatusBadRequest, wantCodes: []int{-32600},
		},
		{
			name:       "a duplicate id key is refused with 400 and -32600",
			body:       raw(`{"jsonrpc":"2.0","id":%d,"id":"other","method":"ping"}`),
			wantStatus: http.StatusBadRequest, wantCodes: []int{-32600},
		},
		{
			name:       "a duplicate tool name inside params is refused with 400 and -32600",
			body:       raw(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"everything__echo","name":"everything__get-env","arguments":{"message":"dup"}}}`),
			wantStatus: http.StatusBadRequest, wantCodes: []int{-32600},
		},
		{
			name:       "a case-variant key (Method) is refused with 400 and -32600",
			body:       raw(`{"jsonrpc":"2.0","id":%d,"Method":"ping"}`),
			wantStatus: http.StatusBadRequest, wantCodes: []int{-32600},
		},
		{
			name:       "case-variant keys beside the real ones (Method, Params) are refused with 400 and -32600",
			body:       raw(`{"jsonrpc":"2.0","id":%d,"method":"ping","Method":"tools/call","Params":{"name":"everything__get-env","arguments":{}}}`),
			wantStatus: http.StatusBadRequest, wantCodes: []int{-32600},
		},
		{
			name:       "invalid UTF-8 is refused with 400 and -32700",
			body:       raw("{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{\"name\":\"everything__echo\",\"arguments\":{\"message\":\"\xff\xfe\xc0\xaf\"}}}"),
			wantStatus: http.StatusBadRequest, wantCodes: []int{-32700},
		},
		{
			name:       "the allowed Origin is accepted",
			mutate:     header("Origin", "http://localhost:6274"),
			wantStatus: http.StatusOK,
		},
		{
			name:       "a foreign Origin is refused with 403",
			mutate:     header("Origin", "https://evil.example"),
			wantStatus: http.StatusForbidden,
		},
		{
			name:       "a foreign Host is refused with 403",
			mutate:     func(r *http.Request) { r.Host = "evil.example" },
			wantStatus: http.StatusForbidden,
		},
		{
			name:       "Content-Type text/plain is refused with 415",
			mutate:     header("Content-Type", "text/plain"),
			wantStatus: http.StatusUnsupportedMediaType,
		},
		{
			name:       "a request without a token is refused with 401",
			mutate:     func(r *http.Request) { r.Header.Del("Authorization") },
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "an unknown token is refused with 401",
			mutate:     header("Authorization", "Bearer sp_"+newMarker()+newMarker()),
			wantStatus: http.StatusUnauthorized,
		},
		{
			name:       "another principal's token on this session gets 404",
			mutate:     header("Authorization", "Bearer "+bob),
			wantStatus: http.StatusNotFound,
		},
		{
			name:       "a wrong MCP-Protocol-Version header is refused with 400",
			mutate:     header("MCP-Protocol-Version", "1999-01-01"),
			wantStatus: http.StatusBadRequest,
		},
	}

	id := 100
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id++
			body := ping(id)
			if tc.body != nil {
				body = tc.body(id)
			}
			req := s.newRawRequest(t, body)
			if tc.mutate != nil {
				tc.mutate(req)
			}
			r, err := tryRaw(req)
			switch {
			case err != nil:
				t.Errorf("no HTTP response (want %d): %v", tc.wantStatus, err)
			case r.Status != tc.wantStatus:
				t.Errorf("HTTP %d, want %d; body: %.300s", r.Status, tc.wantStatus, r.Body)
			case len(tc.wantCodes) > 0:
				if e := r.rpcErr(); e == nil || !slices.Contains(tc.wantCodes, e.Code) {
					t.Errorf("JSON-RPC error %+v, want code in %v; body: %.300s", e, tc.wantCodes, r.Body)
				}
			case r.Status >= 400:
				if e := r.rpcErr(); e != nil {
					t.Logf("HTTP %d with JSON-RPC error %d %q", r.Status, e.Code, e.Message)
				} else {
					t.Logf("HTTP %d, body %.200q", r.Status, r.Body)
				}
			}

			// The session survives the hostile request.
			id++
			msg := fmt.Sprintf("still here %d", id)
			after := s.call(t, id, "everything__echo", map[string]any{"message": msg})
			m, ok := after.response()
			if after.Status != http.StatusOK || !ok || m.Error != nil || !strings.Contains(string(m.Result), "Echo: "+msg) {
				t.Errorf("normal call on the session afterwards: HTTP %d %.300s", after.Status, after.Body)
			}
		})
	}
}
