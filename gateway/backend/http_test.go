package backend

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway/config"
)

func httpSpec(url string) *config.Backend {
	return &config.Backend{
		ID: "remote", Transport: "http", URL: url, Isolation: "session",
		Headers:         map[string]string{"X-Api-Key": "SECRET-HEADER"},
		MaxMessageBytes: 1 << 20,
		Timeouts:        config.Timeouts{Startup: config.Duration(5 * time.Second), Request: config.Duration(5 * time.Second), Shutdown: config.Duration(time.Second)},
	}
}

func noRedirects() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestHTTPBackendRedirectsAreNotFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer redirecting.Close()

	l := NewLeg(Options{Spec: httpSpec(redirecting.URL + "/mcp?api_key=SECRET-QUERY"), Logger: testLogger(), HTTPClient: noRedirects(), ClientName: "t", ClientVersion: "1"})
	defer l.Close(context.Background())
	err := l.Ensure(context.Background())
	if err == nil || !strings.Contains(err.Error(), "307") {
		t.Fatalf("got %v, want the redirect refused", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the other origin got %d requests", n)
	}
}

func TestBackendURLsStayOutOfErrors(t *testing.T) {
	l := NewLeg(Options{Spec: httpSpec("http://127.0.0.1:1/mcp?api_key=SECRET-QUERY"), Logger: testLogger(), HTTPClient: noRedirects(), ClientName: "t", ClientVersion: "1"})
	defer l.Close(context.Background())
	_, err := l.Call(context.Background(), "tools/list", nil, nil)
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("got %v", err)
	}
}

func TestAnHTTPAnswerForAnotherIDFailsAtOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: no session"}}`))
	}))
	defer srv.Close()
	l := NewLeg(Options{Spec: httpSpec(srv.URL), Logger: testLogger(), HTTPClient: noRedirects(), ClientName: "t", ClientVersion: "1"})
	defer l.Close(context.Background())
	// Had the gateway waited for an answer that cannot come, the error
	// would be the startup timeout's; it must be what the backend said.
	err := l.Ensure(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no session") {
		t.Fatalf("got %v", err)
	}
}
