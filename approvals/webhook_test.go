package approvals

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
)

func TestWebhookIsPostedForANewItem(t *testing.T) {
	t.Parallel()
	type post struct {
		header http.Header
		body   []byte
	}
	posts := make(chan post, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		posts <- post{r.Header.Clone(), b}
	}))
	t.Cleanup(hook.Close)

	e := newEnv(t, envOptions{noRun: true})
	StartWebhooks(e.svc, []config.Webhook{{URL: hook.URL + "/notify?token=hooktoken", Headers: map[string]string{"X-Hook-Secret": "s3cret"}}},
		"https://gw.example", slog.New(slog.DiscardHandler))
	const secretValue = "acme/the-confidential-repo"
	c := deleteCall().with(func(c *call) {
		c.args = `{"repo":"` + secretValue + `"}`
		c.findings = []gateway.Finding{{Detector: "EMAIL_ADDRESS", Category: "pii", Path: "params.arguments.owner", Offset: 0, Length: 17, Action: "redact"}}
	})
	f := e.start(c)
	it := e.waitHeld(f, c)

	var p post
	select {
	case p = <-posts:
	case <-time.After(patience):
		t.Fatal("no webhook was posted")
	}
	if ct, secret := p.header.Get("Content-Type"), p.header.Get("X-Hook-Secret"); ct != "application/json" || secret != "s3cret" {
		t.Errorf("Content-Type %q, X-Hook-Secret %q", ct, secret)
	}
	var n WebhookNotice
	if err := json.Unmarshal(p.body, &n); err != nil {
		t.Fatalf("body %s: %v", p.body, err)
	}
	if n.Event != "approval.pending" || n.ID != it.ID || n.Principal != "alice" || n.Target != "delete_repo" ||
		n.Reviewers != "reviewers" || n.URL != "https://gw.example/api/approvals/"+it.ID {
		t.Errorf("notice %+v", n)
	}
	if !strings.Contains(string(n.Findings), `"detector":"EMAIL_ADDRESS"`) {
		t.Errorf("findings %s, want the DLP finding", n.Findings)
	}
	if strings.Contains(string(p.body), secretValue) || strings.Contains(string(p.body), `"arguments":`) {
		t.Errorf("the notice carries the call's arguments: %s", p.body)
	}
}

func TestWebhookErrorsNeverNameTheURL(t *testing.T) {
	t.Parallel()
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	client := &http.Client{Timeout: patience}
	cases := []struct {
		name, url, want string
	}{
		{"an unreachable hook", downURL + "/hook?token=TOKEN123", "post webhook"},
		{"a hook answering an error", failing.URL + "/hook?token=TOKEN123", "status 500"},
		{"an invalid URL", "http://[::1/hook?token=TOKEN123", "invalid URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is an error without the URL's token", func(t *testing.T) {
			err := postOnce(client, config.Webhook{URL: tc.url}, []byte(`{}`))
			if err == nil {
				t.Fatal("no error")
			}
			contains(t, "the error", err.Error(), tc.want)
			if strings.Contains(err.Error(), "TOKEN123") {
				t.Errorf("the error %q names the URL's token", err)
			}
		})
	}
}
