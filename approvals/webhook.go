package approvals

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/config"
)

// webhookQueue bounds the notices waiting to be posted; past it new ones
// are dropped (and logged): a webhook never blocks a call.
const webhookQueue = 256

// WebhookNotice is what a webhook is posted for a new pending item: what
// a reviewer needs to find it, never an argument value.
type WebhookNotice struct {
	Event     string    `json:"event"` // "approval.pending"
	ID        string    `json:"id"`
	Principal string    `json:"principal"`
	Backend   string    `json:"backend"`
	Method    string    `json:"method"`
	Target    string    `json:"target"`
	Reason    string    `json:"reason,omitempty"`
	Reviewers string    `json:"reviewers"`
	Quorum    int       `json:"quorum"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	// Findings are the DLP findings (detector, path, action).
	Findings json.RawMessage `json:"findings,omitempty"`
	// URL is the item on the gateway's API.
	URL string `json:"url"`
}

// StartWebhooks posts each new pending item of q to hooks, in the
// background, retrying a failed post a few times.
func StartWebhooks(q *Service, hooks []config.Webhook, base string, log *slog.Logger) {
	ch := make(chan WebhookNotice, webhookQueue)
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q.OnCreate(func(it *gateway.ApprovalItem) {
		n := WebhookNotice{Event: "approval.pending", ID: it.ID, Principal: it.Principal, Backend: it.Backend, Method: it.Method,
			Target: it.Target, Reason: it.Reason, Reviewers: it.Reviewers, Quorum: it.Quorum, Created: it.Created, Expires: it.Expires,
			URL: base + "/api/approvals/" + it.ID}
		if it.Findings != "" {
			n.Findings = json.RawMessage(it.Findings)
		}
		select {
		case ch <- n:
		default:
			log.Warn("approval webhook queue full: notice dropped", slog.String("approval", it.ID))
		}
	})
	go func() {
		for n := range ch {
			body, _ := json.Marshal(n)
			for _, h := range hooks {
				postWebhook(client, h, body, n.ID, log)
			}
		}
	}()
}

// webhookBackoff are the waits before each retry.
var webhookBackoff = []time.Duration{time.Second, 3 * time.Second, 10 * time.Second}

func postWebhook(client *http.Client, h config.Webhook, body []byte, id string, log *slog.Logger) {
	var err error
	for attempt := 0; ; attempt++ {
		if err = postOnce(client, h, body); err == nil {
			return
		}
		if attempt == len(webhookBackoff) {
			break
		}
		time.Sleep(webhookBackoff[attempt])
	}
	// The URL may carry a token in its query: it is not logged.
	log.Warn("approval webhook failed", slog.String("approval", id), slog.String("err", err.Error()))
}

func postOnce(client *http.Client, h config.Webhook, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: invalid URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sallyport-approvals")
	for k, v := range h.Headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("post webhook: %s", redactURLError(err))
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post webhook: status %s", resp.Status)
	}
	return nil
}

// redactURLError leaves the URL out of a client error.
func redactURLError(err error) string {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && u.Unwrap() != nil {
		return u.Unwrap().Error()
	}
	return "request failed"
}
