package audit_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// stageFunc adapts a function to gateway.Stage: the policy, DLP or
// approval stages that sit between the auditor's Outer and Gate.
type stageFunc func(ctx context.Context, x *gateway.Exchange, next gateway.Handler) error

func (f stageFunc) Handle(ctx context.Context, x *gateway.Exchange, next gateway.Handler) error {
	return f(ctx, x, next)
}

// pass is a stage that passes everything on.
var pass = stageFunc(func(ctx context.Context, x *gateway.Exchange, next gateway.Handler) error {
	return next.Handle(ctx, x)
})

// refuse is a stage that refuses everything, as policy would.
var refuse = stageFunc(func(ctx context.Context, x *gateway.Exchange, next gateway.Handler) error {
	return gateway.Errorf(gateway.CodeRefused, "tool %s is not allowed for group dev", x.Target)
})

var (
	alice   = &gateway.Principal{ID: "alice", Groups: []string{"dev"}, TokenID: "tok_x"}
	session = &gateway.SessionInfo{ID: "sess-1", Transport: "http", ProtocolVersion: "2025-06-18", ClientName: "claude-code", ClientVersion: "1.0.42"}
)

// request returns a tools/call request exchange delivered by deliver.
func request(id string, deliver func(ctx context.Context, x *gateway.Exchange) error) *gateway.Exchange {
	args := json.RawMessage(`{"query":"is:open","page":2}`)
	x := gateway.NewExchange(deliver)
	x.Direction, x.Kind, x.Method = gateway.ClientToBackend, gateway.KindRequest, "tools/call"
	x.Principal, x.Session = alice, session
	x.Backend, x.Target, x.Arguments = "github", "search_issues", args
	x.Message = jsonrpc.NewRequest(json.RawMessage(id), "tools/call",
		json.RawMessage(`{"name":"github__search_issues","arguments":{"query":"is:open","page":2}}`))
	return x
}

// result returns the exchange of the answer msg to the request req.
func result(req *gateway.Exchange, msg *jsonrpc.Message, deliver func(ctx context.Context, x *gateway.Exchange) error) *gateway.Exchange {
	x := gateway.NewExchange(deliver)
	x.Direction, x.Kind, x.Method = gateway.BackendToClient, gateway.KindResult, req.Method
	x.Principal, x.Session, x.Backend, x.Target = req.Principal, req.Session, req.Backend, req.Target
	x.Message, x.Request = msg, req
	return x
}

// notification returns a notification exchange of method on the session
// with id sess, from a backend to the client.
func notification(method, sess string, deliver func(ctx context.Context, x *gateway.Exchange) error) *gateway.Exchange {
	x := gateway.NewExchange(deliver)
	x.Direction, x.Kind, x.Method = gateway.BackendToClient, gateway.KindNotification, method
	x.Principal, x.Backend = alice, "github"
	x.Session = &gateway.SessionInfo{ID: sess, Transport: "http"}
	x.Message = jsonrpc.NewNotification(method, json.RawMessage(`{"progressToken":1,"progress":5}`))
	return x
}

func delivered(context.Context, *gateway.Exchange) error { return nil }

// view is the part of a row a stage test cares about.
type view struct {
	Direction, Kind, Decision, Outcome string
	ErrorCode                          int64
	Error                              string
	Reasons                            []string
	Ref                                int64
}

func viewOf(r gateway.AuditRecord) view {
	return view{Direction: r.Direction, Kind: r.Kind, Decision: r.Decision, Outcome: r.Outcome,
		ErrorCode: r.ErrorCode, Error: r.Error, Reasons: r.Reasons, Ref: r.Ref}
}

func views(rs []gateway.AuditRecord) []view {
	out := make([]view, len(rs))
	for i, r := range rs {
		out[i] = viewOf(r)
	}
	return out
}

// codeOf is the JSON-RPC code a client would get for err, 0 for nil.
func codeOf(err error) int {
	if err == nil {
		return 0
	}
	return gateway.RPCError(err).Code
}

func TestStageRequest(t *testing.T) {
	const (
		c2b = "client_to_backend"
		b2c = "backend_to_client"
	)
	requestRow := view{Direction: c2b, Kind: "request", Decision: "allow"}
	tests := []struct {
		name string
		mid  gateway.Stage
		// outcome is what delivery returns, after the test checked that
		// the request's row was already written; cancel cancels the
		// request's context.
		outcome func(ctx context.Context, cancel context.CancelFunc) error
		wantErr int
		// wantDelivered: whether delivery ran at all.
		wantDelivered bool
		want          []view
	}{
		{
			name:          "allow / a passed request is recorded before it is delivered",
			mid:           pass,
			outcome:       func(context.Context, context.CancelFunc) error { return nil },
			wantDelivered: true,
			want:          []view{requestRow},
		},
		{
			name:    "deny / a refusing stage is recorded with its reason and nothing is delivered",
			mid:     refuse,
			wantErr: gateway.CodeRefused,
			want: []view{{Direction: c2b, Kind: "request", Decision: "deny", Outcome: "refused", ErrorCode: gateway.CodeRefused,
				Error: "tool search_issues is not allowed for group dev", Reasons: []string{"tool search_issues is not allowed for group dev"}}},
		},
		{
			name: "deny / a stage failing with a plain error is recorded without the error's text",
			mid: stageFunc(func(context.Context, *gateway.Exchange, gateway.Handler) error {
				return errors.New("open /etc/policy.rego: permission denied")
			}),
			wantErr: gateway.CodeInternal,
			want: []view{{Direction: c2b, Kind: "request", Decision: "deny", Outcome: "refused", ErrorCode: gateway.CodeInternal,
				Error: "internal error", Reasons: []string{"internal error"}}},
		},
		{
			name: "error / the backend fails after the gate: a result row answers the request",
			mid:  pass,
			outcome: func(context.Context, context.CancelFunc) error {
				return gateway.Errorf(gateway.CodeBackendUnavailable, "backend github exited")
			},
			wantErr:       gateway.CodeBackendUnavailable,
			wantDelivered: true,
			want: []view{requestRow, {Direction: b2c, Kind: "result", Decision: "allow", Outcome: "error", ErrorCode: gateway.CodeBackendUnavailable,
				Error: "backend github exited", Ref: 1}},
		},
		{
			name: "error / the backend times out",
			mid:  pass,
			outcome: func(context.Context, context.CancelFunc) error {
				return fmt.Errorf("wait for github: %w", context.DeadlineExceeded)
			},
			wantErr:       gateway.CodeTimeout,
			wantDelivered: true,
			want: []view{requestRow, {Direction: b2c, Kind: "result", Decision: "allow", Outcome: "error", ErrorCode: gateway.CodeTimeout,
				Error: "request timed out", Ref: 1}},
		},
		{
			name: "error / an internal delivery failure is recorded without its text",
			mid:  pass,
			outcome: func(context.Context, context.CancelFunc) error {
				return errors.New("dial tcp 10.0.0.7:443: connection refused")
			},
			wantErr:       gateway.CodeInternal,
			wantDelivered: true,
			want: []view{requestRow, {Direction: b2c, Kind: "result", Decision: "allow", Outcome: "error", ErrorCode: gateway.CodeInternal,
				Error: "internal error", Ref: 1}},
		},
		{
			name: "cancelled / the client cancels while the request is in flight",
			mid:  pass,
			outcome: func(ctx context.Context, cancel context.CancelFunc) error {
				cancel()
				<-ctx.Done()
				return ctx.Err()
			},
			wantErr:       gateway.CodeRequestCancelled,
			wantDelivered: true,
			want: []view{requestRow, {Direction: b2c, Kind: "result", Decision: "allow", Outcome: "cancelled", ErrorCode: gateway.CodeRequestCancelled,
				Error: "request cancelled", Ref: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openDB(t, sqlite.Options{})
			a := audit.New(audit.Options{Log: db.Audit()})
			h := gateway.Chain(a.Outer(), tt.mid, a.Gate())
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			ran := false
			x := request("7", func(ctx context.Context, x *gateway.Exchange) error {
				ran = true
				// No audit row, no forward: the row is durable before
				// delivery starts.
				if x.AuditSeq == 0 {
					t.Error("delivery ran before the exchange's AuditSeq was set")
				}
				got := rows(t, db.Audit(), gateway.AuditFilter{})
				if len(got) != 1 || got[0].Seq != x.AuditSeq || got[0].Decision != gateway.DecisionAllow {
					t.Errorf("at delivery the log holds %+v, want exactly the allow row %d", views(got), x.AuditSeq)
				}
				return tt.outcome(ctx, cancel)
			})
			err := h.Handle(ctx, x)
			if got := codeOf(err); got != tt.wantErr {
				t.Errorf("Handle returned %v (code %d), want code %d", err, got, tt.wantErr)
			}
			if ran != tt.wantDelivered {
				t.Errorf("delivered = %v, want %v", ran, tt.wantDelivered)
			}
			got := rows(t, db.Audit(), gateway.AuditFilter{})
			if !reflect.DeepEqual(views(got), tt.want) {
				t.Errorf("rows:\n got %+v\nwant %+v", views(got), tt.want)
			}
			for _, r := range got {
				if r.Kind == "result" && (r.Arguments != "" || r.Bytes != 0 || r.LatencyMicros < 0) {
					t.Errorf("a failed delivery's result row carries arguments %q, bytes %d, latency %d", r.Arguments, r.Bytes, r.LatencyMicros)
				}
				if r.Kind == "result" && (r.Method != "tools/call" || r.MessageID != "7" || r.Principal != "alice") {
					t.Errorf("the result row does not name the request's method, id and principal: %+v", r)
				}
			}
			if rep, err := audit.VerifyLog(context.Background(), db.Audit(), nil, 0); err != nil || !rep.OK() {
				t.Errorf("the log does not verify: %+v, %v", rep, err)
			}
		})
	}
}

func TestStageResult(t *testing.T) {
	tests := []struct {
		name    string
		mid     gateway.Stage
		msg     *jsonrpc.Message
		wantErr int
		want    view
	}{
		{
			name: "ok / a result refers to the row of its request",
			mid:  pass,
			msg:  jsonrpc.NewResult(json.RawMessage("7"), json.RawMessage(`{"content":[]}`)),
			want: view{Direction: "backend_to_client", Kind: "result", Decision: "allow", Outcome: "ok", Ref: 1},
		},
		{
			name: "error / an error answer is recorded with its code and message",
			mid:  pass,
			msg:  jsonrpc.NewError(json.RawMessage("7"), jsonrpc.CodeInvalidParams, "page must be positive", nil),
			want: view{Direction: "backend_to_client", Kind: "result", Decision: "allow", Outcome: "error",
				ErrorCode: jsonrpc.CodeInvalidParams, Error: "page must be positive", Ref: 1},
		},
		{
			name: "deny / a result refused by a stage (DLP on the answer) still names its request",
			mid: stageFunc(func(context.Context, *gateway.Exchange, gateway.Handler) error {
				return gateway.Errorf(gateway.CodeRefused, "secret in result")
			}),
			msg:     jsonrpc.NewResult(json.RawMessage("7"), json.RawMessage(`{"content":[{"type":"text","text":"AKIA..."}]}`)),
			wantErr: gateway.CodeRefused,
			want: view{Direction: "backend_to_client", Kind: "result", Decision: "deny", Outcome: "refused",
				ErrorCode: gateway.CodeRefused, Error: "secret in result", Reasons: []string{"secret in result"}, Ref: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openDB(t, sqlite.Options{})
			a := audit.New(audit.Options{Log: db.Audit()})
			// The request goes through a chain that passes it; the
			// answer through one with the stage under test.
			req := request("7", delivered)
			if err := gateway.Chain(a.Outer(), pass, a.Gate()).Handle(context.Background(), req); err != nil {
				t.Fatalf("request: %v", err)
			}
			req.Time = time.Now().Add(-time.Second)
			var seenSeq int64
			res := result(req, tt.msg, func(_ context.Context, x *gateway.Exchange) error {
				seenSeq = x.AuditSeq
				return nil
			})
			err := gateway.Chain(a.Outer(), tt.mid, a.Gate()).Handle(context.Background(), res)
			if got := codeOf(err); got != tt.wantErr {
				t.Errorf("Handle returned %v (code %d), want code %d", err, got, tt.wantErr)
			}
			got := rows(t, db.Audit(), gateway.AuditFilter{})
			if len(got) != 2 {
				t.Fatalf("got %d rows, want the request's and the result's: %+v", len(got), views(got))
			}
			if v := viewOf(got[1]); !reflect.DeepEqual(v, tt.want) {
				t.Errorf("result row:\n got %+v\nwant %+v", v, tt.want)
			}
			// A result's row is queued, not waited for: delivery sees
			// that it passed the Gate, not yet its Seq.
			if tt.wantErr == 0 && seenSeq >= 0 {
				t.Errorf("delivery saw AuditSeq %d, want a negative one (queued)", seenSeq)
			}
			if got[1].LatencyMicros < time.Second.Microseconds() {
				t.Errorf("latency %dµs, want at least the second since the request entered", got[1].LatencyMicros)
			}
		})
	}
}

func TestStageNotifications(t *testing.T) {
	t.Run("a notification is recorded as allowed, without outcome", func(t *testing.T) {
		db, _ := openDB(t, sqlite.Options{})
		a := audit.New(audit.Options{Log: db.Audit()})
		h := gateway.Chain(a.Outer(), pass, a.Gate())
		if err := h.Handle(context.Background(), notification("notifications/tools/list_changed", "s1", delivered)); err != nil {
			t.Fatal(err)
		}
		got := rows(t, db.Audit(), gateway.AuditFilter{})
		want := []view{{Direction: "backend_to_client", Kind: "notification", Decision: "allow"}}
		if !reflect.DeepEqual(views(got), want) {
			t.Errorf("rows %+v, want %+v", views(got), want)
		}
	})
	for _, sample := range []int{0, 10} {
		t.Run(fmt.Sprintf("a notification the client did not take is not recorded as refused (sampling %d)", sample), func(t *testing.T) {
			db, _ := openDB(t, sqlite.Options{})
			a := audit.New(audit.Options{Log: db.Audit(), SampleNotifications: sample})
			h := gateway.Chain(a.Outer(), pass, a.Gate())
			gone := func(context.Context, *gateway.Exchange) error {
				return gateway.Errorf(gateway.CodeInternal, "client connection closed")
			}
			for range 20 {
				if err := h.Handle(context.Background(), notification("notifications/progress", "s1", gone)); err == nil {
					t.Fatal("a failed delivery returned no error")
				}
			}
			for _, r := range rows(t, db.Audit(), gateway.AuditFilter{}) {
				if r.Decision != gateway.DecisionAllow || r.Outcome != "" {
					t.Errorf("row %d says %s/%s for a notification the pipeline passed: %+v", r.Seq, r.Decision, r.Outcome, viewOf(r))
				}
			}
		})
	}
}

func TestStageServerRequest(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	a := audit.New(audit.Options{Log: db.Audit()})
	h := gateway.Chain(a.Outer(), pass, a.Gate())
	x := gateway.NewExchange(func(context.Context, *gateway.Exchange) error {
		return gateway.Errorf(gateway.CodeRequestCancelled, "client went away")
	})
	x.Direction, x.Kind, x.Method = gateway.BackendToClient, gateway.KindServerRequest, "sampling/createMessage"
	x.Session, x.Backend = session, "github"
	x.Message = jsonrpc.NewRequest(json.RawMessage(`"srv-1"`), x.Method, json.RawMessage(`{}`))
	if err := h.Handle(context.Background(), x); codeOf(err) != gateway.CodeRequestCancelled {
		t.Fatalf("Handle: %v", err)
	}
	got := views(rows(t, db.Audit(), gateway.AuditFilter{}))
	want := []view{
		{Direction: "backend_to_client", Kind: "server_request", Decision: "allow"},
		{Direction: "client_to_backend", Kind: "result", Decision: "allow", Outcome: "cancelled", ErrorCode: gateway.CodeRequestCancelled, Error: "client went away", Ref: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("a server request the client never answered:\n got %+v\nwant %+v", got, want)
	}
}

// holdWriteLock takes the database's write lock from another connection,
// as another process would, and returns the function that releases it.
func holdWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := rawDB(t, path).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				t.Errorf("release the write lock: %v", err)
			}
			conn.Close()
		})
	}
	t.Cleanup(release)
	return release
}

func TestGateRefusesWhenTheStoreFails(t *testing.T) {
	type fault struct {
		name string
		// inject makes the store fail and returns how to clear the
		// fault, nil when it cannot be cleared.
		inject func(t *testing.T, path string) (clear func())
	}
	faults := []fault{
		{"another connection holds the write lock", func(t *testing.T, path string) func() { return holdWriteLock(t, path) }},
		{"the database file was removed", func(t *testing.T, path string) func() {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
	}
	kinds := []struct {
		name string
		x    func(deliver func(context.Context, *gateway.Exchange) error) *gateway.Exchange
	}{
		{"a request", func(d func(context.Context, *gateway.Exchange) error) *gateway.Exchange { return request("9", d) }},
		{"a notification", func(d func(context.Context, *gateway.Exchange) error) *gateway.Exchange {
			return notification("notifications/cancelled", "s1", d)
		}},
	}
	for _, f := range faults {
		for _, k := range kinds {
			t.Run(f.name+" / "+k.name+" is refused and not delivered", func(t *testing.T) {
				db, path := openDB(t, sqlite.Options{BusyTimeout: 100 * time.Millisecond})
				a := audit.New(audit.Options{Log: db.Audit()})
				h := gateway.Chain(a.Outer(), pass, a.Gate())
				deliveries := 0
				deliver := func(context.Context, *gateway.Exchange) error { deliveries++; return nil }

				if err := h.Handle(context.Background(), k.x(deliver)); err != nil {
					t.Fatalf("before the fault: %v", err)
				}
				clear := f.inject(t, path)
				// Answers and notifications are queued, not waited for: the
				// first write to meet the fault is a request's, and from
				// then on queued messages are refused too.
				if err := h.Handle(context.Background(), request("probe", delivered)); codeOf(err) != gateway.CodeAuditUnavailable {
					t.Fatalf("a request meeting the fault: %v, want code %d", err, gateway.CodeAuditUnavailable)
				}
				x := k.x(deliver)
				err := h.Handle(context.Background(), x)
				if code := codeOf(err); code != gateway.CodeAuditUnavailable {
					t.Errorf("during the fault: Handle returned %v (code %d), want code %d", err, code, gateway.CodeAuditUnavailable)
				}
				if !errors.Is(err, gateway.ErrAuditUnavailable) {
					t.Errorf("the refusal %v does not wrap gateway.ErrAuditUnavailable", err)
				}
				if msg := gateway.RPCError(err).Message; strings.Contains(msg, path) || strings.Contains(msg, "locked") {
					t.Errorf("the client is told %q: store details leak to the client", msg)
				}
				if deliveries != 1 {
					t.Errorf("delivered %d times, want once (before the fault only)", deliveries)
				}
				if x.AuditSeq != 0 {
					t.Errorf("a refused exchange has AuditSeq %d", x.AuditSeq)
				}
				if clear == nil {
					return
				}
				clear()
				if err := h.Handle(context.Background(), k.x(deliver)); err != nil {
					t.Fatalf("after the fault cleared: %v", err)
				}
				if deliveries != 2 {
					t.Errorf("after the fault cleared: delivered %d times in all, want 2", deliveries)
				}
				got := rows(t, db.Audit(), gateway.AuditFilter{})
				if len(got) != 2 || got[0].Decision != "allow" || got[1].Decision != "allow" {
					t.Errorf("rows %+v, want the two delivered messages' allow rows only", views(got))
				}
				if rep, err := audit.VerifyLog(context.Background(), db.Audit(), nil, 0); err != nil || !rep.OK() {
					t.Errorf("the log does not verify after the fault: %+v, %v", rep, err)
				}
			})
		}
	}
	t.Run("a refusal during the fault still reaches the client with the stage's code", func(t *testing.T) {
		db, path := openDB(t, sqlite.Options{BusyTimeout: 100 * time.Millisecond})
		a := audit.New(audit.Options{Log: db.Audit()})
		holdWriteLock(t, path)
		err := gateway.Chain(a.Outer(), refuse, a.Gate()).Handle(context.Background(), request("1", delivered))
		if code := codeOf(err); code != gateway.CodeRefused {
			t.Errorf("Handle returned %v (code %d), want the refusal, code %d", err, code, gateway.CodeRefused)
		}
	})
}

func TestStageArguments(t *testing.T) {
	canonical := `{"a":[1,{"x":"é","y":null}],"b":"two words"}`
	sum := sha256.Sum256([]byte(canonical))
	digest := "sha256:" + hex.EncodeToString(sum[:])
	tests := []struct {
		name, mode, args, want string
	}{
		{"full / arguments are kept in canonical form", audit.ArgumentsFull, canonical, canonical},
		{"full / key order and whitespace do not matter", audit.ArgumentsFull, "{ \"b\" : \"two words\",\n\t\"a\":[1, {\"y\":null, \"x\":\"\\u00e9\"}] }", canonical},
		{"full / the default mode is full", "", `{"b":"two words","a":[1,{"y":null,"x":"é"}]}`, canonical},
		{"digest / only the digest of the canonical form is kept", audit.ArgumentsDigest, canonical, digest},
		{"digest / key order and whitespace do not change the digest", audit.ArgumentsDigest, "{\"b\":\"two words\" ,\"a\":[1,{\"y\":null,\"x\":\"é\"}]}", digest},
		{"full / arguments that are not JSON are kept as a digest of their bytes", audit.ArgumentsFull, `{"a":`, "sha256-raw:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openDB(t, sqlite.Options{})
			a := audit.New(audit.Options{Log: db.Audit(), Arguments: tt.mode})
			x := request("1", delivered)
			x.Arguments = json.RawMessage(tt.args)
			if err := gateway.Chain(a.Outer(), a.Gate()).Handle(context.Background(), x); err != nil {
				t.Fatal(err)
			}
			got := rows(t, db.Audit(), gateway.AuditFilter{})[0].Arguments
			switch {
			case strings.HasSuffix(tt.want, ":"):
				if !strings.HasPrefix(got, tt.want) || len(got) != len(tt.want)+64 {
					t.Errorf("arguments %q, want %s<64 hex digits>", got, tt.want)
				}
			case got != tt.want:
				t.Errorf("arguments %q, want %q", got, tt.want)
			}
			if tt.mode == audit.ArgumentsDigest && strings.Contains(got, "two words") {
				t.Errorf("digest mode kept the arguments' content: %q", got)
			}
		})
	}
}

func TestStageSampling(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	a := audit.New(audit.Options{Log: db.Audit(), SampleNotifications: 10})
	h := gateway.Chain(a.Outer(), pass, a.Gate())
	ctx := context.Background()
	delivered := 0
	deliver := func(context.Context, *gateway.Exchange) error { delivered++; return nil }
	send := func(x *gateway.Exchange) {
		t.Helper()
		if err := h.Handle(ctx, x); err != nil {
			t.Fatalf("%s: %v", x.Method, err)
		}
	}
	// 100 progress notifications on session s1, with requests, cancels
	// and another session's progress mixed in.
	for i := range 100 {
		send(notification("notifications/progress", "s1", deliver))
		if i%20 == 0 {
			send(notification("notifications/cancelled", "s1", deliver))
			send(request(fmt.Sprint(i), deliver))
			send(notification("notifications/progress", "s2", deliver))
		}
	}
	if delivered != 100+3*5 {
		t.Fatalf("delivered %d messages, want all %d: sampling must never drop a message", delivered, 100+3*5)
	}
	count := func() (n, skipped int64, other map[string]int) {
		other = map[string]int{}
		for _, r := range rows(t, db.Audit(), gateway.AuditFilter{}) {
			if r.Method == "notifications/progress" && r.Session == "s1" {
				n++
				skipped += r.Skipped
				continue
			}
			if r.Skipped != 0 {
				t.Errorf("row %d (%s) has skipped %d", r.Seq, r.Method, r.Skipped)
			}
			other[r.Session+" "+r.Method]++
		}
		return n, skipped, other
	}
	n, skipped, other := count()
	// The first is recorded, then one in ten, each counting the nine
	// before it: the nine after the last recorded one are counted by the
	// next recorded one.
	if n != 10 || skipped != 81 {
		t.Errorf("100 progress notifications: %d rows with %d skipped, want 10 rows with 81 skipped (and 9 pending)", n, skipped)
	}
	wantOther := map[string]int{"s1 notifications/cancelled": 5, "sess-1 tools/call": 5, "s2 notifications/progress": 1}
	if !reflect.DeepEqual(other, wantOther) {
		t.Errorf("other rows %v, want %v: cancels and requests are always recorded, another session samples on its own", other, wantOther)
	}
	// The 101st is recorded and accounts for the pending nine: rows plus
	// skipped count every notification sent.
	send(notification("notifications/progress", "s1", deliver))
	n, skipped, _ = count()
	if n+skipped != 101 || n != 11 {
		t.Errorf("after 101 progress notifications: %d rows + %d skipped = %d, want 11 rows accounting for 101", n, skipped, n+skipped)
	}
}

func TestStageRecordsNoMoreThanItShould(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	a := audit.New(audit.Options{Log: db.Audit()})
	const secret = "Bearer sk-live-0123456789"
	x := request("7", delivered)
	x.Time = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	// Things a stage can see that must not be recorded: the principal's
	// groups, the tool's definition.
	x.Principal = &gateway.Principal{ID: "alice", Groups: []string{"dev", secret}, TokenID: "tok_x"}
	x.Definition = json.RawMessage(`{"description":"` + secret + `"}`)
	if err := gateway.Chain(a.Outer(), pass, a.Gate()).Handle(context.Background(), x); err != nil {
		t.Fatal(err)
	}
	got := rows(t, db.Audit(), gateway.AuditFilter{})
	if len(got) != 1 {
		t.Fatalf("got %d rows, want 1", len(got))
	}
	r := got[0]
	if r.Hash != r.ComputeHash() {
		t.Errorf("hash %s, want %s", r.Hash, r.ComputeHash())
	}
	m := x.Message
	want := gateway.AuditRecord{
		Seq: 1, Time: time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC),
		Session: "sess-1", Transport: "http", ProtocolVersion: "2025-06-18", ClientName: "claude-code", ClientVersion: "1.0.42",
		Principal: "alice", TokenID: "tok_x",
		Direction: "client_to_backend", Kind: "request", Method: "tools/call", MessageID: "7",
		Backend: "github", Target: "search_issues", Arguments: `{"page":2,"query":"is:open"}`,
		Decision: "allow", Bytes: int64(len(m.ID) + len(m.Method) + len(m.Params)),
		PrevHash: gateway.GenesisHash, Hash: r.Hash,
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("row:\n got %+v\nwant %+v", r, want)
	}
	if c := string(r.AppendCanonical(nil)); strings.Contains(c, "sk-live") || strings.Contains(c, "dev") {
		t.Errorf("the row holds more than the principal's id and token id: %s", c)
	}
}

func TestStageClipsLongTexts(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	a := audit.New(audit.Options{Log: db.Audit()})
	long := strings.Repeat("é", 1000) // 2000 bytes
	x := request("1", delivered)
	x.Session = &gateway.SessionInfo{ID: "s", ClientName: long}
	err := gateway.Chain(a.Outer(), stageFunc(func(context.Context, *gateway.Exchange, gateway.Handler) error {
		return gateway.Errorf(gateway.CodeRefused, "%s", long)
	}), a.Gate()).Handle(context.Background(), x)
	if codeOf(err) != gateway.CodeRefused {
		t.Fatalf("Handle: %v", err)
	}
	r := rows(t, db.Audit(), gateway.AuditFilter{})[0]
	for name, s := range map[string]string{"error": r.Error, "reason": r.Reasons[0], "client_name": r.ClientName} {
		body, ok := strings.CutSuffix(s, "…")
		if !ok || len(body) > 512 || !utf8.ValidString(s) || !strings.HasPrefix(long, body) {
			t.Errorf("%s is %d bytes (valid UTF-8: %v), want at most 512 bytes of the text, then …", name, len(s), utf8.ValidString(s))
		}
	}
}

func TestStageConcurrentRequests(t *testing.T) {
	db, _ := openDB(t, sqlite.Options{})
	a := audit.New(audit.Options{Log: db.Audit()})
	h := gateway.Chain(a.Outer(), pass, a.Gate())
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			x := request(fmt.Sprint(i), func(_ context.Context, x *gateway.Exchange) error {
				var found bool
				err := db.Audit().Scan(context.Background(), gateway.AuditFilter{AfterSeq: x.AuditSeq - 1, Limit: 1}, func(r *gateway.AuditRecord) error {
					found = r.Seq == x.AuditSeq && r.MessageID == fmt.Sprint(i)
					return nil
				})
				if err != nil || !found {
					return fmt.Errorf("request %d delivered before its row %d was readable (%v)", i, x.AuditSeq, err)
				}
				return nil
			})
			if err := h.Handle(context.Background(), x); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := rows(t, db.Audit(), gateway.AuditFilter{})
	if len(got) != n {
		t.Errorf("%d rows, want %d", len(got), n)
	}
	if rep, err := audit.VerifyLog(context.Background(), db.Audit(), nil, 0); err != nil || !rep.OK() || rep.Rows != n {
		t.Errorf("the log does not verify: %+v, %v", rep, err)
	}
}

func TestStageInitialize(t *testing.T) {
	tests := []struct {
		name                          string
		session                       *gateway.SessionInfo
		params                        string
		wantName, wantVersion, wantPV string
	}{
		{"the client's self-reported info comes from the initialize request itself",
			&gateway.SessionInfo{ID: "s1", Transport: "stdio"},
			`{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"Zed \"Preview\"","version":"0.190.1"}}`,
			`Zed "Preview"`, "0.190.1", "2025-06-18"},
		{"the session's info wins when it is already known",
			session,
			`{"protocolVersion":"2024-11-05","clientInfo":{"name":"other","version":"9"}}`,
			"claude-code", "1.0.42", "2025-06-18"},
		{"an initialize request without clientInfo records none",
			&gateway.SessionInfo{ID: "s1"}, `{"protocolVersion":"2025-06-18"}`,
			"", "", "2025-06-18"},
		{"clientInfo of the wrong types records none",
			&gateway.SessionInfo{ID: "s1"}, `{"protocolVersion":7,"clientInfo":{"name":["x"],"version":1}}`,
			"", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openDB(t, sqlite.Options{})
			a := audit.New(audit.Options{Log: db.Audit()})
			x := gateway.NewExchange(delivered)
			x.Direction, x.Kind, x.Method = gateway.ClientToBackend, gateway.KindRequest, "initialize"
			x.Session = tt.session
			x.Message = jsonrpc.NewRequest(json.RawMessage("0"), "initialize", json.RawMessage(tt.params))
			if err := gateway.Chain(a.Outer(), a.Gate()).Handle(context.Background(), x); err != nil {
				t.Fatal(err)
			}
			r := rows(t, db.Audit(), gateway.AuditFilter{})[0]
			if r.ClientName != tt.wantName || r.ClientVersion != tt.wantVersion || r.ProtocolVersion != tt.wantPV {
				t.Errorf("client %q %q, protocol %q; want %q %q, %q", r.ClientName, r.ClientVersion, r.ProtocolVersion,
					tt.wantName, tt.wantVersion, tt.wantPV)
			}
		})
	}
}
