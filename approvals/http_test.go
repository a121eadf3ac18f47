package approvals

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sallyport/sallyport/gateway"
)

// principalHeader names the test principal of a request. It stands in
// for the frontend's authentication, which puts the principal in the
// request context before the API sees it.
const principalHeader = "X-Test-Principal"

var principals = map[string]gateway.Principal{
	"alice": alice, "bob": bob, "rita": rita, "sam": sam, "otto": otto, "ada": ada, "anon": anon,
	"aud": {ID: "aud", Groups: []string{"auditor"}},
}

// serve serves the env's API as the frontend would, behind a middleware
// that authenticates the principal the request names.
func (e *env) serve(opts HandlerOptions) *httptest.Server {
	h := e.svc.Handler(opts)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name := r.Header.Get(principalHeader); name != "" {
			p, ok := principals[name]
			if !ok {
				http.Error(w, "unknown test principal", http.StatusUnauthorized)
				return
			}
			r = r.WithContext(gateway.WithPrincipal(r.Context(), p))
		}
		h.ServeHTTP(w, r)
	}))
	e.t.Cleanup(srv.Close)
	return srv
}

// do sends a request as who ("" for no principal) and returns the status
// and body.
func do(t *testing.T, method, url, who, contentType string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if who != "" {
		req.Header.Set(principalHeader, who)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, url, ct)
	}
	return resp.StatusCode, b
}

// listIDs lists as who and returns the ids, sorted.
func listIDs(t *testing.T, srv *httptest.Server, who, query string) (int, []string) {
	t.Helper()
	status, body := do(t, "GET", srv.URL+"/api/approvals"+query, who, "", nil)
	if status != http.StatusOK {
		return status, nil
	}
	var out struct {
		Items []*gateway.ApprovalItem `json:"items"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("list body %s: %v", body, err)
	}
	ids := []string{}
	for _, it := range out.Items {
		ids = append(ids, it.ID)
	}
	sort.Strings(ids)
	return status, ids
}

func sorted(ids ...string) []string {
	out := append([]string{}, ids...)
	sort.Strings(out)
	return out
}

func TestAPIListAndGet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noRun: true})
	srv := e.serve(HandlerOptions{})
	// a: alice's, pending, for the reviewers; b: bob's, pending, for the
	// finance reviewers; c: alice's, denied, on another backend.
	a := e.pendingItem(deleteCall())
	b := e.pendingItem(deleteCall().with(func(c *call) {
		c.principal, c.target, c.args, c.approval.Reviewers = bob, "pay_invoice", `{"invoice":7}`, "finance-reviewers"
	}))
	c := e.pendingItem(deleteCall().with(func(c *call) { c.backend = "gitlab" }))
	e.decide(c.ID, rita, false, "no")

	t.Run("each principal lists what it may see", func(t *testing.T) {
		cases := []struct {
			who  string
			want []string
		}{
			{"rita", sorted(a.ID, c.ID)},
			{"sam", sorted(a.ID, c.ID)},
			{"otto", sorted(b.ID)},
			{"ada", sorted(a.ID, b.ID, c.ID)},
			{"aud", sorted(a.ID, b.ID, c.ID)},
			{"alice", sorted(a.ID, c.ID)},
			{"bob", sorted(b.ID)},
		}
		for _, tc := range cases {
			t.Run(tc.who, func(t *testing.T) {
				status, ids := listIDs(t, srv, tc.who, "")
				if status != http.StatusOK || !slices.Equal(ids, tc.want) {
					t.Errorf("status %d, ids %v; want %v", status, ids, tc.want)
				}
			})
		}
	})

	t.Run("filters select", func(t *testing.T) {
		cases := []struct {
			name, who, query string
			want             []string
		}{
			{"by state", "ada", "?state=pending", sorted(a.ID, b.ID)},
			{"by two states in one value", "ada", "?state=pending,denied", sorted(a.ID, b.ID, c.ID)},
			{"by two state values", "ada", "?state=denied&state=pending", sorted(a.ID, b.ID, c.ID)},
			{"by principal", "ada", "?principal=bob", sorted(b.ID)},
			{"by backend", "ada", "?backend=gitlab", sorted(c.ID)},
			{"by tool", "ada", "?tool=pay_invoice", sorted(b.ID)},
			{"by state and visibility", "rita", "?state=pending", sorted(a.ID)},
			{"a filter never widens what one sees", "rita", "?principal=bob", []string{}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				status, ids := listIDs(t, srv, tc.who, tc.query)
				if status != http.StatusOK || !slices.Equal(ids, tc.want) {
					t.Errorf("status %d, ids %v; want %v", status, ids, tc.want)
				}
			})
		}
		if _, ids := listIDs(t, srv, "ada", "?limit=1"); len(ids) != 1 {
			t.Errorf("limit=1 gave %d items", len(ids))
		}
	})

	t.Run("bad queries are refused", func(t *testing.T) {
		for _, q := range []string{"?state=bogus", "?state=pending,", "?color=red", "?limit=0", "?limit=1001",
			"?limit=ten", "?backend=a&backend=b"} {
			t.Run(q, func(t *testing.T) {
				if status, body := do(t, "GET", srv.URL+"/api/approvals"+q, "ada", "", nil); status != http.StatusBadRequest {
					t.Errorf("status %d %s, want 400", status, body)
				}
			})
		}
	})

	t.Run("get shows a visible item whole", func(t *testing.T) {
		status, body := do(t, "GET", srv.URL+"/api/approvals/"+a.ID, "rita", "", nil)
		var it gateway.ApprovalItem
		if status != http.StatusOK || json.Unmarshal(body, &it) != nil || it.ID != a.ID || it.Arguments != a.Arguments {
			t.Errorf("status %d, body %s", status, body)
		}
	})

	t.Run("refusals", func(t *testing.T) {
		cases := []struct {
			name, method, path, who string
			status                  int
		}{
			{"get of an item one may not see is not found", "GET", "/api/approvals/" + b.ID, "rita", 404},
			{"get of an unknown item is not found", "GET", "/api/approvals/apr_nope", "rita", 404},
			{"a list with no principal is forbidden", "GET", "/api/approvals", "", 403},
			{"a list by an anonymous principal is forbidden", "GET", "/api/approvals", "anon", 403},
			{"a get by an anonymous principal is forbidden", "GET", "/api/approvals/" + a.ID, "anon", 403},
			{"an unknown path is not found", "GET", "/api/approvals/" + a.ID + "/votes", "rita", 404},
			{"a get of approve is not allowed", "GET", "/api/approvals/" + a.ID + "/approve", "rita", 405},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				status, body := do(t, tc.method, srv.URL+tc.path, tc.who, "", nil)
				if status != tc.status {
					t.Errorf("status %d %s, want %d", status, body, tc.status)
				}
				var e struct{ Error string }
				if json.Unmarshal(body, &e) != nil || e.Error == "" {
					t.Errorf("body %s has no error", body)
				}
			})
		}
	})
}

func TestAPIDecide(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noRun: true})
	srv := e.serve(HandlerOptions{})
	it := e.pendingItem(deleteCall())
	samsItem := e.pendingItem(deleteCall().with(func(c *call) { c.principal = sam }))
	decided := e.pendingItem(deleteCall().with(func(c *call) { c.args = `{"repo":"acme/decided"}` }))
	e.decide(decided.ID, rita, false, "no")
	late := e.pendingItem(deleteCall().with(func(c *call) { c.args = `{"repo":"acme/late"}`; c.approval.Timeout = 50 * time.Millisecond }))
	waitFor(t, "the item's expiry to pass", func() bool { return time.Now().After(late.Expires) })

	big := []byte(`{"comment":"` + strings.Repeat("x", 16<<10) + `"}`)
	// Its first 16 KiB decode on their own: only the size refuses it.
	padded := []byte(`{"comment":"ok"}` + strings.Repeat(" ", 16<<10))
	cases := []struct {
		name, verb, id, who, contentType string
		body                             []byte
		status                           int
	}{
		{"an unknown field is refused", "approve", it.ID, "rita", "application/json", []byte(`{"comment":"ok","force":true}`), 400},
		{"a body over 16 KiB is refused", "approve", it.ID, "rita", "application/json", big, 400},
		{"a valid object padded past 16 KiB is refused", "approve", it.ID, "rita", "application/json", padded, 400},
		{"a body that is not JSON is refused", "deny", it.ID, "rita", "application/json", []byte(`comment=no`), 400},
		{"a body that is not an object is refused", "deny", it.ID, "rita", "application/json", []byte(`["no"]`), 400},
		{"a form post is refused", "approve", it.ID, "rita", "application/x-www-form-urlencoded", []byte(`comment=ok`), 415},
		{"a text post is refused", "approve", it.ID, "rita", "text/plain", []byte(`{"comment":"ok"}`), 415},
		{"a body with no content type is refused", "approve", it.ID, "rita", "", []byte(`{"comment":"ok"}`), 415},
		{"an empty post with no content type is refused (no preflight would guard it)", "approve", it.ID, "rita", "", nil, 415},
		{"a comment over 2000 bytes is refused", "deny", it.ID, "rita", "application/json", []byte(`{"comment":"` + strings.Repeat("y", 2001) + `"}`), 400},
		{"no principal is forbidden", "approve", it.ID, "", "application/json", []byte(`{}`), 403},
		{"an anonymous principal is forbidden", "approve", it.ID, "anon", "application/json", []byte(`{}`), 403},
		{"the requester is forbidden", "approve", samsItem.ID, "sam", "application/json", []byte(`{}`), 403},
		{"the requester who is no reviewer is forbidden", "approve", it.ID, "alice", "application/json", []byte(`{}`), 403},
		{"an admin who sees it but is no reviewer is forbidden", "approve", it.ID, "ada", "application/json", []byte(`{}`), 403},
		{"a reviewer of another group is told it does not exist", "approve", it.ID, "otto", "application/json", []byte(`{}`), 404},
		{"an unknown item is not found", "approve", "apr_nope", "rita", "application/json", []byte(`{}`), 404},
		{"a decided item is a conflict", "approve", decided.ID, "sam", "application/json", []byte(`{}`), 409},
		{"an item past its expiry is gone", "deny", late.ID, "rita", "application/json", []byte(`{}`), 410},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before *gateway.ApprovalItem
			if tc.id != "apr_nope" {
				before = e.item(tc.id)
			}
			status, body := do(t, "POST", srv.URL+"/api/approvals/"+tc.id+"/"+tc.verb, tc.who, tc.contentType, tc.body)
			if status != tc.status {
				t.Errorf("status %d %s, want %d", status, body, tc.status)
			}
			if before != nil {
				if after := e.item(tc.id); after.Rev != before.Rev || after.State != before.State || len(after.Votes) != len(before.Votes) {
					t.Errorf("the refused decision changed the item: %s rev %d, was %s rev %d", after.State, after.Rev, before.State, before.Rev)
				}
			}
		})
	}

	t.Run("an approval with a comment is recorded", func(t *testing.T) {
		status, body := do(t, "POST", srv.URL+"/api/approvals/"+it.ID+"/approve", "rita", "application/json; charset=utf-8",
			[]byte(`{"comment":"checked with the owner"}`))
		var got gateway.ApprovalItem
		if status != http.StatusOK || json.Unmarshal(body, &got) != nil {
			t.Fatalf("status %d %s", status, body)
		}
		if got.State != gateway.ApprovalApproved || len(got.Votes) != 1 || got.Votes[0].Reviewer != "rita" || got.Votes[0].Comment != "checked with the owner" {
			t.Errorf("item %s, votes %+v", got.State, got.Votes)
		}
	})

	t.Run("a denial with an empty JSON body is recorded", func(t *testing.T) {
		other := e.pendingItem(deleteCall().with(func(c *call) { c.args = `{"repo":"acme/empty"}` }))
		status, body := do(t, "POST", srv.URL+"/api/approvals/"+other.ID+"/deny", "sam", "application/json", nil)
		if status != http.StatusOK {
			t.Fatalf("status %d %s", status, body)
		}
		if got := e.item(other.ID); got.State != gateway.ApprovalDenied {
			t.Errorf("item %s", got.State)
		}
	})
}

func TestAPIDenyReachesTheWaitingCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	srv := e.serve(HandlerOptions{})
	c := deleteCall()
	f := e.start(c)
	it := e.waitHeld(f, c)
	status, body := do(t, "POST", srv.URL+"/api/approvals/"+it.ID+"/deny", "rita", "application/json", []byte(`{"comment":"use archive_repo"}`))
	if status != http.StatusOK {
		t.Fatalf("status %d %s", status, body)
	}
	ge := wantCode(t, f.wait(t), gateway.CodeApprovalDenied)
	contains(t, "the denial", ge.Message, "rita", "use archive_repo")
	if n := e.backend.delivered.Load(); n != 0 {
		t.Errorf("delivered %d times", n)
	}
}

// feedURL is the live feed's WebSocket URL on srv.
func feedURL(srv *httptest.Server) string {
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/api/approvals/ws"
}

// dial opens a live feed as who, with origin if set.
func dial(t *testing.T, srv *httptest.Server, who, origin string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	h := http.Header{}
	if who != "" {
		h.Set(principalHeader, who)
	}
	if origin != "" {
		h.Set("Origin", origin)
	}
	d := websocket.Dialer{HandshakeTimeout: patience}
	conn, resp, err := d.Dial(feedURL(srv), h)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if conn != nil {
		t.Cleanup(func() { conn.Close() })
	}
	return conn, resp, err
}

// mustDial opens a feed and reads its snapshot.
func mustDial(t *testing.T, srv *httptest.Server, who string) (*websocket.Conn, []*gateway.ApprovalItem) {
	t.Helper()
	conn, resp, err := dial(t, srv, who, "")
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial as %s: %v (status %d)", who, err, status)
	}
	ev := readEvent(t, conn)
	if ev.Type != "snapshot" {
		t.Fatalf("the first event is %q, want the snapshot", ev.Type)
	}
	return conn, ev.Items
}

// readEvent reads the next event, failing after patience.
func readEvent(t *testing.T, conn *websocket.Conn) Event {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(patience))
	var ev Event
	if err := conn.ReadJSON(&ev); err != nil {
		t.Fatalf("read event: %v", err)
	}
	return ev
}

// nextItem reads events until one about an item, and returns it.
func nextItem(t *testing.T, conn *websocket.Conn) *gateway.ApprovalItem {
	t.Helper()
	ev := readEvent(t, conn)
	if ev.Type != "item" || ev.Item == nil {
		t.Fatalf("event %q with no item", ev.Type)
	}
	return ev.Item
}

func TestLiveFeed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	srv := e.serve(HandlerOptions{})
	// Waiting when the feeds connect: one for the reviewers, one for the
	// finance reviewers, and one denied already.
	early := e.pendingItem(deleteCall().with(func(c *call) { c.args = `{"repo":"acme/early"}` }))
	finance := e.pendingItem(deleteCall().with(func(c *call) {
		c.principal, c.target, c.args, c.approval.Reviewers = bob, "pay_invoice", `{"invoice":1}`, "finance-reviewers"
	}))
	denied := e.pendingItem(deleteCall().with(func(c *call) { c.args = `{"repo":"acme/denied"}` }))
	e.decide(denied.ID, rita, false, "")

	ritaConn, ritaSnap := mustDial(t, srv, "rita")
	samConn, _ := mustDial(t, srv, "sam")
	ottoConn, ottoSnap := mustDial(t, srv, "otto")

	t.Run("the snapshot holds the pending items one may see", func(t *testing.T) {
		var ids []string
		for _, it := range ritaSnap {
			ids = append(ids, it.ID)
		}
		if !slices.Equal(ids, []string{early.ID}) {
			t.Errorf("rita's snapshot %v, want only %s", ids, early.ID)
		}
		if len(ottoSnap) != 1 || ottoSnap[0].ID != finance.ID {
			t.Errorf("otto's snapshot %+v, want only %s", ottoSnap, finance.ID)
		}
	})

	// A new call is held: both reviewers are told of it.
	c := deleteCall()
	f := e.start(c)
	it := e.waitHeld(f, c)
	for _, r := range []struct {
		name string
		conn *websocket.Conn
	}{{"rita", ritaConn}, {"sam", samConn}} {
		t.Run(r.name+" is pushed the new item", func(t *testing.T) {
			got := nextItem(t, r.conn)
			if got.ID != it.ID || got.State != gateway.ApprovalPending || got.Target != "delete_repo" {
				t.Errorf("pushed %s %s %s, want the new pending %s", got.ID, got.State, got.Target, it.ID)
			}
		})
	}

	t.Run("a reviewer of another group is not pushed it", func(t *testing.T) {
		// The next item otto may see comes after; he must get it first.
		bc := deleteCall().with(func(c *call) {
			c.principal, c.target, c.args, c.approval.Reviewers = bob, "pay_invoice", `{"invoice":2}`, "finance-reviewers"
		})
		g := e.start(bc)
		mine := e.waitHeld(g, bc)
		if got := nextItem(t, ottoConn); got.ID != mine.ID {
			t.Errorf("otto was pushed %s (%s's, for %s), before his own group's %s", got.ID, got.Principal, got.Reviewers, mine.ID)
		}
	})

	t.Run("a decision is pushed", func(t *testing.T) {
		e.decide(it.ID, sam, true, "")
		if err := f.wait(t); err != nil {
			t.Fatal(err)
		}
		// Approved (then claimed), then executed, in that order; a
		// pending state may still come first from the item's creation.
		var states []gateway.ApprovalState
		for len(states) == 0 || states[len(states)-1] != gateway.ApprovalExecuted {
			got := nextItem(t, ritaConn)
			if got.ID != it.ID {
				t.Fatalf("pushed %s, want changes of %s", got.ID, it.ID)
			}
			if got.State == gateway.ApprovalPending && len(states) == 0 {
				continue
			}
			states = append(states, got.State)
		}
		for i, st := range states {
			want := gateway.ApprovalApproved
			if i == len(states)-1 {
				want = gateway.ApprovalExecuted
			}
			if st != want {
				t.Errorf("states pushed %v; want approved, then executed", states)
				break
			}
		}
	})
}

func TestLiveFeedRequesterSeesOwnItems(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	srv := e.serve(HandlerOptions{})
	aliceConn, snap := mustDial(t, srv, "alice")
	if len(snap) != 0 {
		t.Fatalf("snapshot %+v, want empty", snap)
	}
	// bob's call first: alice must not be told of it.
	bc := deleteCall().with(func(c *call) { c.principal = bob })
	g := e.start(bc)
	e.waitHeld(g, bc)
	c := deleteCall()
	f := e.start(c)
	it := e.waitHeld(f, c)
	if got := nextItem(t, aliceConn); got.ID != it.ID {
		t.Errorf("alice was pushed %s (%s's) before her own %s", got.ID, got.Principal, it.ID)
	}
}

func TestLiveFeedRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	srv := e.serve(HandlerOptions{AllowedOrigins: []string{"https://Console.Example.com"}})
	host := strings.TrimPrefix(srv.URL, "http://")

	cases := []struct {
		name, who, origin string
		status            int // 0: the feed opens
	}{
		{"a foreign origin is refused", "rita", "https://evil.example", 403},
		{"a same-host origin on another port is refused", "rita", "http://127.0.0.1:1", 403},
		{"an origin of another scheme is refused", "rita", "ftp://" + host, 403},
		{"the null origin is refused", "rita", "null", 403},
		{"the gateway's own origin passes", "rita", "http://" + host, 0},
		{"an allow-listed origin passes, whatever its case", "rita", "https://console.example.com", 0},
		{"no origin (not a browser) passes", "rita", "", 0},
		{"no principal is refused", "", "", 403},
		{"an anonymous principal is refused", "anon", "", 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, resp, err := dial(t, srv, tc.who, tc.origin)
			if tc.status == 0 {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				if ev := readEvent(t, conn); ev.Type != "snapshot" {
					t.Errorf("first event %q", ev.Type)
				}
				conn.Close()
				return
			}
			if err == nil {
				t.Fatal("the feed opened")
			}
			if resp == nil || resp.StatusCode != tc.status {
				t.Errorf("dial: %v, response %+v; want status %d", err, resp, tc.status)
			}
		})
	}

	t.Run("a plain GET of the feed is a bad request", func(t *testing.T) {
		if status, _ := do(t, "GET", srv.URL+"/api/approvals/ws", "rita", "", nil); status != http.StatusBadRequest {
			t.Errorf("status %d, want 400", status)
		}
	})
}

func TestLiveFeedCapPerPrincipal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	srv := e.serve(HandlerOptions{})
	var conns []*websocket.Conn
	for range maxSubscribersPerPrincipal {
		conn, _ := mustDial(t, srv, "rita")
		conns = append(conns, conn)
	}
	_, resp, err := dial(t, srv, "rita", "")
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the 9th feed: %v, %+v; want 429", err, resp)
	}
	mustDial(t, srv, "sam") // another principal is not affected

	t.Run("a closed feed frees its place", func(t *testing.T) {
		conns[0].Close()
		// rita's seven left and sam's one.
		waitFor(t, "the closed feed to leave the hub", func() bool { return e.svc.Hub().Len() == maxSubscribersPerPrincipal-1+1 })
		mustDial(t, srv, "rita")
	})
}

func TestLiveFeedPings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	srv := e.serve(HandlerOptions{PingPeriod: 30 * time.Millisecond})
	conn, _ := mustDial(t, srv, "rita")
	var pings atomic.Int64
	conn.SetPingHandler(func(data string) error {
		pings.Add(1)
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(patience))
	})
	done := make(chan error, 1)
	go func() {
		conn.SetReadDeadline(time.Now().Add(patience))
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				done <- err
				return
			}
		}
	}()
	waitFor(t, "three pings", func() bool { return pings.Load() >= 3 })
	conn.Close()
	<-done
}

func TestLiveFeedClosedOnStop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noRun: true})
	srv := e.serve(HandlerOptions{})
	conn, _ := mustDial(t, srv, "rita")
	e.svc.Stop()
	conn.SetReadDeadline(time.Now().Add(patience))
	_, _, err := conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseTryAgainLater {
		t.Errorf("read after Stop: %v; want a close frame with code %d", err, websocket.CloseTryAgainLater)
	}
	if _, resp, err := dial(t, srv, "rita", ""); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a feed after Stop: %v; want it refused", err)
	}
}

func TestAPIStoreDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{noRun: true})
	srv := e.serve(HandlerOptions{})
	it := e.pendingItem(deleteCall())
	e.db.Close()
	cases := []struct{ name, method, path string }{
		{"a list", "GET", "/api/approvals"},
		{"a get", "GET", "/api/approvals/" + it.ID},
		{"an approval", "POST", "/api/approvals/" + it.ID + "/approve"},
	}
	for _, tc := range cases {
		t.Run(tc.name+" answers 503 when the store fails", func(t *testing.T) {
			ct := ""
			if tc.method == "POST" {
				ct = "application/json"
			}
			status, body := do(t, tc.method, srv.URL+tc.path, "rita", ct, nil)
			if status != http.StatusServiceUnavailable {
				t.Errorf("status %d %s, want 503", status, body)
			}
			if strings.Contains(string(body), "database") || strings.Contains(string(body), e.path) {
				t.Errorf("the error names the store's internals: %s", body)
			}
		})
	}
}
