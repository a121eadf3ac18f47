package approvals

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/sallyport/sallyport/gateway"
)

func newTestHub() *Hub { return newHub(slog.New(slog.DiscardHandler)) }

func mustSubscribe(t *testing.T, h *Hub, p gateway.Principal) *subscriber {
	t.Helper()
	s, err := h.subscribe(p)
	if err != nil {
		t.Fatalf("subscribe %s: %v", p.ID, err)
	}
	return s
}

// received drains what s was sent; publish is synchronous, so what it
// sent is in the buffer when it returns.
func received(t *testing.T, s *subscriber) []Event {
	t.Helper()
	var out []Event
	for {
		select {
		case msg := <-s.ch:
			var ev Event
			if err := json.Unmarshal(msg, &ev); err != nil {
				t.Fatalf("event %s: %v", msg, err)
			}
			out = append(out, ev)
		default:
			return out
		}
	}
}

func gone(s *subscriber) bool {
	select {
	case <-s.gone:
		return true
	default:
		return false
	}
}

func TestHubPublishesOnlyToWhoMaySee(t *testing.T) {
	t.Parallel()
	h := newTestHub()
	it := &gateway.ApprovalItem{ID: "apr_1", State: gateway.ApprovalPending, Reviewers: "reviewers",
		ApprovalBinding: gateway.ApprovalBinding{Principal: "alice", Target: "delete_repo"}}
	cases := []struct {
		name string
		p    gateway.Principal
		sees bool
	}{
		{"a reviewer of the item's group gets it", rita, true},
		{"a second reviewer of the group gets it", sam, true},
		{"an admin gets it", ada, true},
		{"an auditor gets it", gateway.Principal{ID: "aud", Groups: []string{"auditor"}}, true},
		{"the requester gets it", alice, true},
		{"a reviewer of another group does not", otto, false},
		{"another caller does not", bob, false},
		{"an anonymous principal does not", anon, false},
	}
	subs := make([]*subscriber, len(cases))
	for i, tc := range cases {
		subs[i] = mustSubscribe(t, h, tc.p)
	}
	h.publish(it)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			evs := received(t, subs[i])
			if !tc.sees {
				if len(evs) != 0 {
					t.Errorf("got %d events", len(evs))
				}
				return
			}
			if len(evs) != 1 || evs[0].Type != "item" || evs[0].Item == nil || evs[0].Item.ID != it.ID {
				t.Errorf("got %+v, want one item event for %s", evs, it.ID)
			}
		})
	}
}

func TestHubDropsASlowSubscriber(t *testing.T) {
	t.Parallel()
	h := newTestHub()
	slowpoke := gateway.Principal{ID: "slowpoke", Groups: []string{"reviewers"}}
	slow := mustSubscribe(t, h, slowpoke)
	fast := mustSubscribe(t, h, rita)
	// Fill the slow subscriber's buffer with its own items, which only it
	// (of the two) may see.
	for i := range subscriberBuffer {
		h.publish(&gateway.ApprovalItem{ID: fmt.Sprintf("apr_f%d", i), Reviewers: "nobody",
			ApprovalBinding: gateway.ApprovalBinding{Principal: slowpoke.ID}})
	}
	if gone(slow) {
		t.Fatal("dropped before its buffer was full")
	}
	if evs := received(t, fast); len(evs) != 0 {
		t.Fatalf("the other subscriber got %d of the slow one's items", len(evs))
	}
	// This publish must neither block nor be lost for the others.
	both := &gateway.ApprovalItem{ID: "apr_both", Reviewers: "reviewers"}
	h.publish(both)
	if !gone(slow) {
		t.Error("the subscriber whose buffer was full was not dropped")
	}
	if evs := received(t, fast); len(evs) != 1 || evs[0].Item.ID != both.ID {
		t.Errorf("the other subscriber got %+v", evs)
	}
	if n := h.Len(); n != 1 {
		t.Errorf("%d subscribers left, want 1", n)
	}
	// Dropping frees the principal's place.
	if _, err := h.subscribe(slowpoke); err != nil {
		t.Errorf("the dropped principal cannot subscribe again: %v", err)
	}
}

func TestHubCaps(t *testing.T) {
	t.Parallel()

	t.Run("one principal gets at most 8 feeds", func(t *testing.T) {
		h := newTestHub()
		var subs []*subscriber
		for range maxSubscribersPerPrincipal {
			subs = append(subs, mustSubscribe(t, h, rita))
		}
		if _, err := h.subscribe(rita); err != errTooManyFeeds {
			t.Fatalf("the 9th feed: %v, want errTooManyFeeds", err)
		}
		mustSubscribe(t, h, sam) // others are not affected
		h.unsubscribe(subs[0])
		h.unsubscribe(subs[0]) // twice is harmless
		mustSubscribe(t, h, rita)
		if _, err := h.subscribe(rita); err != errTooManyFeeds {
			t.Errorf("after one left and one came: %v, want errTooManyFeeds", err)
		}
	})

	t.Run("all principals together get at most 512 feeds", func(t *testing.T) {
		h := newTestHub()
		for i := range maxSubscribers {
			mustSubscribe(t, h, gateway.Principal{ID: fmt.Sprintf("p%d", i)})
		}
		if _, err := h.subscribe(gateway.Principal{ID: "one-more"}); err != errHubFull {
			t.Errorf("feed %d: %v, want errHubFull", maxSubscribers+1, err)
		}
	})

	t.Run("a closed hub drops every feed and takes no new one", func(t *testing.T) {
		h := newTestHub()
		s := mustSubscribe(t, h, rita)
		h.close()
		if !gone(s) || h.Len() != 0 {
			t.Error("close left a subscriber")
		}
		if _, err := h.subscribe(rita); err != errHubFull {
			t.Errorf("subscribe after close: %v", err)
		}
		h.publish(&gateway.ApprovalItem{ID: "apr_late", Reviewers: "reviewers"}) // no one to send to, no panic
	})
}

func TestFeedItemLeavesOutLargeArguments(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args string
		kept bool
	}{
		{"arguments up to 16 KiB are carried", `{"a":"` + strings.Repeat("x", feedArgumentsMax-8) + `"}`, true},
		{"arguments past 16 KiB are left out", `{"a":"` + strings.Repeat("x", feedArgumentsMax) + `"}`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			it := &gateway.ApprovalItem{ID: "apr_big", Arguments: tc.args}
			got := feedItem(it)
			if (got.Arguments == tc.args) != tc.kept {
				t.Errorf("arguments kept: %v, want %v", got.Arguments == tc.args, tc.kept)
			}
			if it.Arguments != tc.args {
				t.Error("feedItem changed the stored item")
			}
		})
	}
}
