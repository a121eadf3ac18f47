package approvals

import (
	"encoding/json"
	"errors"
	"log/slog"
	"sync"

	"github.com/sallyport/sallyport/gateway"
)

// Limits of the live feed.
const (
	// subscriberBuffer is how many events wait for one slow subscriber;
	// past it the subscriber is dropped (it reconnects and gets the
	// pending list again), and nobody else waits for it.
	subscriberBuffer = 256
	// maxSubscribersPerPrincipal bounds one principal's feeds.
	maxSubscribersPerPrincipal = 8
	// maxSubscribers bounds every feed together.
	maxSubscribers = 512
	// feedArgumentsMax bounds the arguments an item carries on the feed;
	// GET /api/approvals/{id} has them whole.
	feedArgumentsMax = 16 << 10
)

// Event is one message of the live feed.
type Event struct {
	// Type is "snapshot" (the pending items visible to the subscriber,
	// sent first on every connection) or "item" (a new or changed item).
	Type  string                  `json:"type"`
	Item  *gateway.ApprovalItem   `json:"item,omitempty"`
	Items []*gateway.ApprovalItem `json:"items,omitempty"`
}

// Hub fans item changes out to the subscribers allowed to see them. A
// publish never blocks: a subscriber whose buffer is full is dropped.
type Hub struct {
	log *slog.Logger

	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	per    map[string]int
	drops  int64
	closed bool
}

type subscriber struct {
	p    gateway.Principal
	ch   chan []byte
	gone chan struct{}
	once sync.Once
}

func newHub(log *slog.Logger) *Hub {
	return &Hub{log: log, subs: map[*subscriber]struct{}{}, per: map[string]int{}}
}

// Errors of Subscribe.
var (
	errTooManyFeeds = errors.New("too many live feeds open for this principal")
	errHubFull      = errors.New("too many live feeds open")
)

// Subscribe adds a subscriber for principal p.
func (h *Hub) subscribe(p gateway.Principal) (*subscriber, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.per[p.ID] >= maxSubscribersPerPrincipal:
		return nil, errTooManyFeeds
	case len(h.subs) >= maxSubscribers || h.closed:
		return nil, errHubFull
	}
	s := &subscriber{p: p, ch: make(chan []byte, subscriberBuffer), gone: make(chan struct{})}
	h.subs[s] = struct{}{}
	h.per[p.ID]++
	return s, nil
}

// unsubscribe removes s; its gone channel closes.
func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		if h.per[s.p.ID]--; h.per[s.p.ID] <= 0 {
			delete(h.per, s.p.ID)
		}
	}
	h.mu.Unlock()
	s.once.Do(func() { close(s.gone) })
}

// Len returns the number of subscribers.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// publish sends it to every subscriber allowed to see it.
func (h *Hub) publish(it *gateway.ApprovalItem) {
	msg, err := json.Marshal(Event{Type: "item", Item: feedItem(it)})
	if err != nil {
		h.log.Error("encode approval event", slog.String("err", err.Error()))
		return
	}
	var slow []*subscriber
	h.mu.Lock()
	for s := range h.subs {
		if !CanSee(s.p, it) {
			continue
		}
		select {
		case s.ch <- msg:
		default:
			slow = append(slow, s)
		}
	}
	h.drops += int64(len(slow))
	h.mu.Unlock()
	for _, s := range slow {
		h.log.Warn("live feed subscriber dropped: it did not keep up", slog.String("principal", s.p.ID))
		h.unsubscribe(s)
	}
}

// close drops every subscriber and refuses new ones.
func (h *Hub) close() {
	h.mu.Lock()
	h.closed = true
	subs := make([]*subscriber, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		h.unsubscribe(s)
	}
}

// feedItem is it as the feed carries it: arguments past feedArgumentsMax
// are left out (the item's own URL has them).
func feedItem(it *gateway.ApprovalItem) *gateway.ApprovalItem {
	if len(it.Arguments) <= feedArgumentsMax {
		return it
	}
	c := *it
	c.Arguments = ""
	return &c
}
