package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
)

// t0 is the time of the first test record.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// record returns the i-th test record: a tool call a second after the one
// before.
func record(i int) *gateway.AuditRecord {
	return &gateway.AuditRecord{
		Time:      t0.Add(time.Duration(i) * time.Second),
		Session:   fmt.Sprintf("session-%d", i%7),
		Transport: "streamable-http",
		Principal: "alice",
		TokenID:   "tok_00000001",
		Direction: "client->gateway",
		Kind:      "request",
		Method:    "tools/call",
		MessageID: fmt.Sprint(i),
		Backend:   "files",
		Target:    "read_file",
		Arguments: `{"path":"/tmp/x"}`,
		Decision:  gateway.DecisionAllow,
		Reasons:   []string{"rule allow-files matched"},
		Rules:     []string{"allow-files"},
		Outcome:   gateway.OutcomeOK,
		Bytes:     int64(100 + i),
	}
}

// records returns n test records starting with the start-th.
func records(start, n int) []*gateway.AuditRecord {
	recs := make([]*gateway.AuditRecord, n)
	for i := range recs {
		recs[i] = record(start + i)
	}
	return recs
}

// scanAll returns copies of the rows f selects.
func scanAll(t testing.TB, log gateway.AuditLog, f gateway.AuditFilter) []gateway.AuditRecord {
	t.Helper()
	var out []gateway.AuditRecord
	err := log.Scan(context.Background(), f, func(r *gateway.AuditRecord) error {
		c := *r
		c.Reasons = slices.Clone(r.Reasons)
		c.Rules = slices.Clone(r.Rules)
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

// checkChain checks that rows are consecutive from the anchor on and that
// each one's hashes are right.
func checkChain(t testing.TB, rows []gateway.AuditRecord, from gateway.AuditAnchor) {
	t.Helper()
	seq, hash := from.Seq, from.Hash
	for _, r := range rows {
		if r.Seq != seq+1 {
			t.Fatalf("row seq %d follows %d", r.Seq, seq)
		}
		if r.PrevHash != hash {
			t.Fatalf("row %d: prev_hash %s, want %s", r.Seq, r.PrevHash, hash)
		}
		if want := r.ComputeHash(); r.Hash != want {
			t.Fatalf("row %d: hash %s, want %s", r.Seq, r.Hash, want)
		}
		seq, hash = r.Seq, r.Hash
	}
}

// seqs returns the Seq of each row.
func seqs(rows []gateway.AuditRecord) []int64 {
	out := []int64{}
	for _, r := range rows {
		out = append(out, r.Seq)
	}
	return out
}

func TestAppendChainsRows(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	log := db.Audit()
	var appended []*gateway.AuditRecord
	for _, n := range []int{1, 3, 1, 10, 5} { // calls of different sizes
		recs := records(len(appended)+1, n)
		if err := log.Append(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		appended = append(appended, recs...)
	}
	rows := scanAll(t, log, gateway.AuditFilter{})

	t.Run("rows get seq 1 to N with no gap", func(t *testing.T) {
		if got, want := seqs(rows), seqs(deref(appended)); !reflect.DeepEqual(got, want) || len(got) != 20 || got[0] != 1 || got[19] != 20 {
			t.Errorf("seqs = %v", got)
		}
	})
	t.Run("the first row chains onto the genesis hash", func(t *testing.T) {
		if rows[0].PrevHash != gateway.GenesisHash {
			t.Errorf("prev_hash = %s", rows[0].PrevHash)
		}
	})
	t.Run("each row's hash is its computed hash and the next row's prev_hash", func(t *testing.T) {
		checkChain(t, rows, gateway.AuditAnchor{Hash: gateway.GenesisHash})
	})
	t.Run("Append fills in the records it was given", func(t *testing.T) {
		for i, r := range appended {
			if r.Seq != rows[i].Seq || r.PrevHash != rows[i].PrevHash || r.Hash != rows[i].Hash || r.MAC != "" {
				t.Errorf("record %d = seq %d prev %s hash %s mac %q; stored %d %s %s", i, r.Seq, r.PrevHash, r.Hash, r.MAC, rows[i].Seq, rows[i].PrevHash, rows[i].Hash)
			}
		}
	})
	t.Run("appending nothing stores nothing", func(t *testing.T) {
		if err := log.Append(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(scanAll(t, log, gateway.AuditFilter{})); n != 20 {
			t.Errorf("%d rows", n)
		}
	})
	t.Run("the chain continues after the database is opened again", func(t *testing.T) {
		db.Close()
		db2 := openDB(t, db.Path(), Options{})
		recs := records(21, 2)
		if err := db2.Audit().Append(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		if recs[0].Seq != 21 || recs[0].PrevHash != rows[19].Hash {
			t.Errorf("next record: seq %d prev %s", recs[0].Seq, recs[0].PrevHash)
		}
		checkChain(t, scanAll(t, db2.Audit(), gateway.AuditFilter{}), gateway.AuditAnchor{Hash: gateway.GenesisHash})
	})
	t.Run("a closed database refuses Append as unavailable", func(t *testing.T) {
		err := log.Append(ctx, record(99))
		if !errors.Is(err, gateway.ErrAuditUnavailable) {
			t.Errorf("Append = %v", err)
		}
	})
}

func deref(recs []*gateway.AuditRecord) []gateway.AuditRecord {
	out := make([]gateway.AuditRecord, len(recs))
	for i, r := range recs {
		out[i] = *r
	}
	return out
}

func TestAppendStoresEveryField(t *testing.T) {
	ctx := context.Background()
	full := gateway.AuditRecord{
		Time: t0.Add(123456789 * time.Nanosecond), Session: "s", Transport: "stdio", ProtocolVersion: "2025-06-18",
		ClientName: "claude", ClientVersion: "1.2.3", Principal: "alice", TokenID: "tok_0000abcd", Direction: "gateway->client",
		Kind: "result", Method: "tools/call", MessageID: `"abc"`, Ref: 7, Backend: "git", Target: "commit",
		Arguments: `{"message":"x"}`, Decision: gateway.DecisionDeny, Reasons: []string{"a", "b"}, Rules: []string{"r1", "r2"},
		PolicyVersion: "sha256:abc", Outcome: gateway.OutcomeError, ErrorCode: -32001, Error: "denied", LatencyMicros: 1500,
		Bytes: 4096, Skipped: 3, Approval: "apr_00112233445566778899aabbccddeeff",
	}
	tests := []struct {
		name string
		rec  gateway.AuditRecord
	}{
		{name: "every field set", rec: full},
		{name: "only a time", rec: gateway.AuditRecord{Time: t0}},
		{name: "an approval id alone", rec: gateway.AuditRecord{Time: t0, Approval: "apr_1"}},
		{name: "no time at all", rec: gateway.AuditRecord{Method: "ping"}},
		{name: "a time in another zone", rec: gateway.AuditRecord{Time: t0.In(time.FixedZone("X", -7*3600)), Method: "ping"}},
		{name: "a time before 1970", rec: gateway.AuditRecord{Time: time.Date(1969, 7, 20, 20, 17, 40, 999_999_999, time.UTC)}},
		{name: "reasons with quotes, backslashes and control characters",
			rec: gateway.AuditRecord{Time: t0, Reasons: []string{`say "no"`, `C:\path\`, "tab\tnewline\n", "nul\x00byte", "</script>&"}, Rules: []string{`"`}}},
		{name: "reasons in unicode", rec: gateway.AuditRecord{Time: t0, Reasons: []string{"café", "日本語", "🔒 secret", "\u2028\u2029"}, Rules: []string{"règle-1"}}},
		{name: "an empty reason", rec: gateway.AuditRecord{Time: t0, Reasons: []string{""}, Rules: []string{"", ""}}},
		{name: "a NUL byte in a text field", rec: gateway.AuditRecord{Time: t0, Session: "a\x00b", Arguments: "{\"x\":\"\\u0000\"}"}},
		{name: "strings that look like SQL", rec: gateway.AuditRecord{Time: t0, Principal: "x'); DROP TABLE audit; --", Reasons: []string{"'"}}},
		{name: "negative and large numbers", rec: gateway.AuditRecord{Time: t0, ErrorCode: -32768, Bytes: 1 << 62, Ref: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name+" round-trips and still verifies", func(t *testing.T) {
			db := openDB(t, dbPath(t), Options{})
			rec := tt.rec
			rec.Reasons, rec.Rules = slices.Clone(tt.rec.Reasons), slices.Clone(tt.rec.Rules)
			if err := db.Audit().Append(ctx, &rec); err != nil {
				t.Fatal(err)
			}
			rows := scanAll(t, db.Audit(), gateway.AuditFilter{})
			if len(rows) != 1 {
				t.Fatalf("%d rows", len(rows))
			}
			checkChain(t, rows, gateway.AuditAnchor{Hash: gateway.GenesisHash})
			want := rec
			want.Time = rec.Time.Truncate(time.Microsecond).UTC()
			if rec.Time.IsZero() {
				want.Time = time.Time{}
			}
			got := rows[0]
			// An absent list may come back nil or empty.
			if len(got.Reasons) == 0 && len(want.Reasons) == 0 {
				got.Reasons, want.Reasons = nil, nil
			}
			if len(got.Rules) == 0 && len(want.Rules) == 0 {
				got.Rules, want.Rules = nil, nil
			}
			if !got.Time.Equal(want.Time) || got.Time.Location() != time.UTC && !got.Time.IsZero() {
				t.Errorf("time = %v, want %v", got.Time, want.Time)
			}
			got.Time, want.Time = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("stored\n%#v\nwant\n%#v", got, want)
			}
		})
	}
}

func TestAppendConcurrently(t *testing.T) {
	const goroutines, perGoroutine = 64, 200
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	log := db.Audit()
	assigned := make([][]*gateway.AuditRecord, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				r := record(g*perGoroutine + i)
				if err := log.Append(ctx, r); err != nil {
					t.Error(err)
					return
				}
				assigned[g] = append(assigned[g], r)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	rows := scanAll(t, log, gateway.AuditFilter{})

	t.Run("every row is stored in one unbroken chain", func(t *testing.T) {
		if len(rows) != goroutines*perGoroutine {
			t.Fatalf("%d rows, want %d", len(rows), goroutines*perGoroutine)
		}
		checkChain(t, rows, gateway.AuditAnchor{Hash: gateway.GenesisHash})
	})
	t.Run("each caller's records carry the seq and hash they were stored with", func(t *testing.T) {
		for g, recs := range assigned {
			for _, r := range recs {
				if r.Seq < 1 || int(r.Seq) > len(rows) {
					t.Fatalf("goroutine %d: seq %d", g, r.Seq)
				}
				if s := rows[r.Seq-1]; s.Hash != r.Hash || s.MessageID != r.MessageID {
					t.Fatalf("goroutine %d: record %s has seq %d hash %s; row has message %s hash %s", g, r.MessageID, r.Seq, r.Hash, s.MessageID, s.Hash)
				}
			}
		}
	})
	t.Run("one caller's appends are stored in the order it made them", func(t *testing.T) {
		for g, recs := range assigned {
			for i := 1; i < len(recs); i++ {
				if recs[i].Seq <= recs[i-1].Seq {
					t.Fatalf("goroutine %d: append %d got seq %d after %d", g, i, recs[i].Seq, recs[i-1].Seq)
				}
			}
		}
	})
}

func TestAppendFromTwoHandles(t *testing.T) {
	const goroutines, perGoroutine = 8, 100
	ctx := context.Background()
	path := dbPath(t)
	dbs := []*DB{openDB(t, path, Options{}), openDB(t, path, Options{})}
	var wg sync.WaitGroup
	for h, db := range dbs {
		for g := range goroutines {
			wg.Go(func() {
				for i := 0; i < perGoroutine; i += 2 {
					if err := db.Audit().Append(ctx, records((h*goroutines+g)*perGoroutine+i, 2)...); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	for h, db := range dbs {
		t.Run(fmt.Sprintf("handle %d sees one chain of every row from both", h), func(t *testing.T) {
			rows := scanAll(t, db.Audit(), gateway.AuditFilter{})
			if want := len(dbs) * goroutines * perGoroutine; len(rows) != want {
				t.Fatalf("%d rows, want %d", len(rows), want)
			}
			checkChain(t, rows, gateway.AuditAnchor{Hash: gateway.GenesisHash})
			seen := map[string]bool{}
			for _, r := range rows {
				if seen[r.MessageID] {
					t.Fatalf("message %s stored twice", r.MessageID)
				}
				seen[r.MessageID] = true
			}
		})
	}
}

func TestCheckpointMACs(t *testing.T) {
	ctx := context.Background()
	key := []byte("audit key for tests")
	tests := []struct {
		name  string
		opts  Options
		rows  int
		batch int
		want  []int64 // seqs with a MAC
	}{
		{name: "every 5th row carries a MAC with a key", opts: Options{AuditKey: key, CheckpointEvery: 5}, rows: 23, batch: 1, want: []int64{5, 10, 15, 20}},
		{name: "checkpoints in the middle of a batch are marked", opts: Options{AuditKey: key, CheckpointEvery: 4}, rows: 20, batch: 7, want: []int64{4, 8, 12, 16, 20}},
		{name: "every row is a checkpoint at 1", opts: Options{AuditKey: key, CheckpointEvery: 1}, rows: 3, batch: 2, want: []int64{1, 2, 3}},
		{name: "the default is every 1000th row", opts: Options{AuditKey: key}, rows: 2001, batch: 250, want: []int64{1000, 2000}},
		{name: "no row carries a MAC without a key", opts: Options{CheckpointEvery: 5}, rows: 23, batch: 3, want: []int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t, dbPath(t), tt.opts)
			var appended []*gateway.AuditRecord
			for len(appended) < tt.rows {
				recs := records(len(appended), min(tt.batch, tt.rows-len(appended)))
				if err := db.Audit().Append(ctx, recs...); err != nil {
					t.Fatal(err)
				}
				appended = append(appended, recs...)
			}
			rows := scanAll(t, db.Audit(), gateway.AuditFilter{})
			checkChain(t, rows, gateway.AuditAnchor{Hash: gateway.GenesisHash})
			got := []int64{}
			for i, r := range rows {
				if r.MAC == "" {
					continue
				}
				got = append(got, r.Seq)
				if want := gateway.CheckpointMAC(key, r.Seq, r.Hash); r.MAC != want {
					t.Errorf("row %d: MAC %s, want %s", r.Seq, r.MAC, want)
				}
				if appended[i].MAC != r.MAC {
					t.Errorf("record %d was given MAC %q, stored %q", r.Seq, appended[i].MAC, r.MAC)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("MACs on rows %v, want %v", got, tt.want)
			}
		})
	}
}

func TestScanFilters(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	rows := []gateway.AuditRecord{
		{Time: at(0), Principal: "alice", Backend: "files", Target: "read", Method: "tools/call", Decision: gateway.DecisionAllow}, // 1
		{Time: at(1), Principal: "bob", Backend: "files", Target: "write", Method: "tools/call", Decision: gateway.DecisionDeny},   // 2
		{Time: at(2), Principal: "alice", Backend: "git", Target: "status", Method: "tools/call", Decision: gateway.DecisionAllow}, // 3
		{Time: at(3), Principal: "alice", Backend: "files", Method: "tools/list", Decision: gateway.DecisionAllow},                 // 4
		{Time: at(4), Principal: "bob", Backend: "git", Target: "log", Method: "tools/call", Decision: gateway.DecisionDeny},       // 5
		{Time: at(5), Principal: "carol", Backend: "files", Target: "file:///etc/hosts", Method: "resources/read"},                 // 6
		{Time: at(6), Principal: "alice", Backend: "files", Target: "read", Method: "tools/call", Decision: gateway.DecisionDeny},  // 7
		{Time: at(7), Principal: "bob", Method: "initialize", Decision: gateway.DecisionAllow},                                     // 8
	}
	// Rows 2, 5 and 7 belong to approval items: 2 and 7 to apr_a, 5 to apr_b.
	rows[1].Approval, rows[4].Approval, rows[6].Approval = "apr_a", "apr_b", "apr_a"
	for i := range rows {
		if err := db.Audit().Append(ctx, &rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		filter gateway.AuditFilter
		want   []int64
	}{
		{name: "no filter selects every row", want: []int64{1, 2, 3, 4, 5, 6, 7, 8}},
		{name: "since includes a row at exactly that time", filter: gateway.AuditFilter{Since: at(3)}, want: []int64{4, 5, 6, 7, 8}},
		{name: "until excludes a row at exactly that time", filter: gateway.AuditFilter{Until: at(3)}, want: []int64{1, 2, 3}},
		{name: "since and until select a window", filter: gateway.AuditFilter{Since: at(2), Until: at(5)}, want: []int64{3, 4, 5}},
		{name: "a window in another zone is the same window", filter: gateway.AuditFilter{Since: at(2).In(time.FixedZone("E", 3600)), Until: at(5).In(time.FixedZone("W", -3600))}, want: []int64{3, 4, 5}},
		{name: "an empty window selects nothing", filter: gateway.AuditFilter{Since: at(5), Until: at(5)}, want: []int64{}},
		{name: "principal", filter: gateway.AuditFilter{Principal: "alice"}, want: []int64{1, 3, 4, 7}},
		{name: "backend", filter: gateway.AuditFilter{Backend: "git"}, want: []int64{3, 5}},
		{name: "target", filter: gateway.AuditFilter{Target: "read"}, want: []int64{1, 7}},
		{name: "a resource URI as target", filter: gateway.AuditFilter{Target: "file:///etc/hosts"}, want: []int64{6}},
		{name: "method", filter: gateway.AuditFilter{Method: "tools/call"}, want: []int64{1, 2, 3, 5, 7}},
		{name: "decision", filter: gateway.AuditFilter{Decision: gateway.DecisionDeny}, want: []int64{2, 5, 7}},
		{name: "approval selects exactly that item's rows", filter: gateway.AuditFilter{Approval: "apr_a"}, want: []int64{2, 7}},
		{name: "another approval", filter: gateway.AuditFilter{Approval: "apr_b"}, want: []int64{5}},
		{name: "an approval id is compared exactly, not as a prefix", filter: gateway.AuditFilter{Approval: "apr_"}, want: []int64{}},
		{name: "approval and principal", filter: gateway.AuditFilter{Approval: "apr_a", Principal: "alice"}, want: []int64{7}},
		{name: "after seq", filter: gateway.AuditFilter{AfterSeq: 5}, want: []int64{6, 7, 8}},
		{name: "after the last seq selects nothing", filter: gateway.AuditFilter{AfterSeq: 8}, want: []int64{}},
		{name: "limit takes the first rows", filter: gateway.AuditFilter{Limit: 3}, want: []int64{1, 2, 3}},
		{name: "after seq and limit page through the log", filter: gateway.AuditFilter{AfterSeq: 2, Limit: 2}, want: []int64{3, 4}},
		{name: "a negative limit is no limit", filter: gateway.AuditFilter{AfterSeq: 6, Limit: -1}, want: []int64{7, 8}},
		{name: "filters combine with and", filter: gateway.AuditFilter{Principal: "alice", Decision: gateway.DecisionDeny}, want: []int64{7}},
		{name: "principal and since", filter: gateway.AuditFilter{Principal: "alice", Since: at(2)}, want: []int64{3, 4, 7}},
		{name: "backend, target and method", filter: gateway.AuditFilter{Backend: "files", Target: "read", Method: "tools/call"}, want: []int64{1, 7}},
		{name: "a principal nobody has selects nothing", filter: gateway.AuditFilter{Principal: "mallory"}, want: []int64{}},
		{name: "a value is compared exactly, not as a pattern", filter: gateway.AuditFilter{Principal: "ali%"}, want: []int64{}},
		{name: "a value is a parameter, not SQL", filter: gateway.AuditFilter{Principal: "x' OR '1'='1"}, want: []int64{}},
	}
	for _, tt := range tests {
		t.Run("scan by "+tt.name, func(t *testing.T) {
			got := scanAll(t, db.Audit(), tt.filter)
			if !reflect.DeepEqual(seqs(got), tt.want) {
				t.Errorf("rows %v, want %v", seqs(got), tt.want)
			}
			for _, r := range got {
				if r.Hash != rows[r.Seq-1].Hash {
					t.Errorf("row %d differs from what was appended", r.Seq)
				}
			}
		})
	}

	t.Run("an error from fn stops the scan and is returned", func(t *testing.T) {
		stop := errors.New("stop")
		calls := 0
		err := db.Audit().Scan(ctx, gateway.AuditFilter{}, func(r *gateway.AuditRecord) error {
			calls++
			if r.Seq == 3 {
				return stop
			}
			return nil
		})
		if err != stop || calls != 3 {
			t.Errorf("Scan = %v after %d calls", err, calls)
		}
	})
	t.Run("a cancelled context ends the scan with an error", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := db.Audit().Scan(cctx, gateway.AuditFilter{}, func(*gateway.AuditRecord) error { return nil })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Scan = %v", err)
		}
	})
	t.Run("a row whose reasons are not a list of strings is an error naming it", func(t *testing.T) {
		if _, err := db.w.ExecContext(ctx, "UPDATE audit SET reasons = '[1]' WHERE seq = 2"); err != nil {
			t.Fatal(err)
		}
		defer db.w.ExecContext(ctx, "UPDATE audit SET reasons = '' WHERE seq = 2")
		err := db.Audit().Scan(ctx, gateway.AuditFilter{}, func(*gateway.AuditRecord) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "row 2: reasons") {
			t.Errorf("Scan = %v", err)
		}
	})
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	key := []byte("prune key")
	const n = 2*pruneChunk + 1001 // three chunks
	for _, keyed := range []bool{false, true} {
		name := "without a key"
		opts := Options{}
		if keyed {
			name = "with a key"
			opts = Options{AuditKey: key, CheckpointEvery: 100}
		}
		t.Run(name, func(t *testing.T) {
			db := openDB(t, dbPath(t), opts)
			log := db.Audit()
			for i := 0; i < n; i += maxBatch {
				if err := log.Append(ctx, records(i, min(maxBatch, n-i))...); err != nil {
					t.Fatal(err)
				}
			}
			all := scanAll(t, log, gateway.AuditFilter{})

			t.Run("pruning when every row is newer deletes nothing", func(t *testing.T) {
				deleted, err := log.Prune(ctx, t0)
				if err != nil || deleted != 0 {
					t.Fatalf("Prune = %d, %v", deleted, err)
				}
				if a, err := log.Anchor(ctx); err != nil || a != (gateway.AuditAnchor{Hash: gateway.GenesisHash}) {
					t.Errorf("Anchor = %+v, %v", a, err)
				}
			})
			t.Run("pruning deletes the rows older than the cut, across chunks", func(t *testing.T) {
				cut := 2*pruneChunk + 500 // rows 1 .. cut have times before record(cut).Time
				deleted, err := log.Prune(ctx, record(cut).Time)
				if err != nil || deleted != int64(cut) {
					t.Fatalf("Prune = %d, %v; want %d", deleted, err, cut)
				}
				rows := scanAll(t, log, gateway.AuditFilter{})
				if len(rows) != n-cut || rows[0].Seq != int64(cut+1) {
					t.Fatalf("%d rows left from seq %d", len(rows), rows[0].Seq)
				}
				a, err := log.Anchor(ctx)
				if err != nil {
					t.Fatal(err)
				}
				last := all[cut-1]
				if a.Seq != last.Seq || a.Hash != last.Hash || a.Time.IsZero() {
					t.Errorf("anchor = %+v, want seq %d hash %s", a, last.Seq, last.Hash)
				}
				checkMAC(t, a, keyed, key)
				checkChain(t, rows, a)
			})
			t.Run("pruning everything keeps the newest row", func(t *testing.T) {
				deleted, err := log.Prune(ctx, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))
				if err != nil || deleted != int64(n-(2*pruneChunk+500)-1) {
					t.Fatalf("Prune = %d, %v", deleted, err)
				}
				rows := scanAll(t, log, gateway.AuditFilter{})
				if len(rows) != 1 || rows[0].Seq != n || rows[0].Hash != all[n-1].Hash {
					t.Fatalf("rows left: %v", seqs(rows))
				}
				a, err := log.Anchor(ctx)
				if err != nil || a.Seq != n-1 || a.Hash != all[n-2].Hash {
					t.Errorf("anchor = %+v, %v", a, err)
				}
				checkMAC(t, a, keyed, key)
				checkChain(t, rows, a)
			})
			t.Run("pruning a single row deletes nothing", func(t *testing.T) {
				deleted, err := log.Prune(ctx, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))
				if err != nil || deleted != 0 {
					t.Fatalf("Prune = %d, %v", deleted, err)
				}
			})
			t.Run("appending after pruning continues the chain", func(t *testing.T) {
				recs := records(n, 3)
				if err := log.Append(ctx, recs...); err != nil {
					t.Fatal(err)
				}
				if recs[0].Seq != n+1 || recs[0].PrevHash != all[n-1].Hash {
					t.Errorf("next record: seq %d prev %s", recs[0].Seq, recs[0].PrevHash)
				}
				a, _ := log.Anchor(ctx)
				checkChain(t, scanAll(t, log, gateway.AuditFilter{}), a)
			})
			t.Run("with every row gone the chain continues from the anchor", func(t *testing.T) {
				// Not something Prune does; the head falls back to the anchor.
				if _, err := db.w.ExecContext(ctx, "UPDATE audit_anchor SET seq = ?, hash = ? WHERE id = 1", n+3, all[0].Hash); err != nil {
					t.Fatal(err)
				}
				if _, err := db.w.ExecContext(ctx, "DELETE FROM audit"); err != nil {
					t.Fatal(err)
				}
				recs := records(n+3, 1)
				if err := log.Append(ctx, recs...); err != nil {
					t.Fatal(err)
				}
				if recs[0].Seq != n+4 || recs[0].PrevHash != all[0].Hash {
					t.Errorf("record after the anchor: seq %d prev %s", recs[0].Seq, recs[0].PrevHash)
				}
			})
		})
	}
}

func checkMAC(t *testing.T, a gateway.AuditAnchor, keyed bool, key []byte) {
	t.Helper()
	switch {
	case keyed && a.MAC != gateway.AnchorMAC(key, a.Seq, a.Hash):
		t.Errorf("anchor MAC %q, want %s", a.MAC, gateway.AnchorMAC(key, a.Seq, a.Hash))
	case !keyed && a.MAC != "":
		t.Errorf("anchor MAC %q without a key", a.MAC)
	}
}

// checkRefused checks that err reports the audit log unavailable and that
// recs were left without a place in the chain.
func checkRefused(t *testing.T, err error, recs []*gateway.AuditRecord, mention string) {
	t.Helper()
	if !errors.Is(err, gateway.ErrAuditUnavailable) {
		t.Fatalf("Append = %v, want ErrAuditUnavailable", err)
	}
	if !strings.Contains(err.Error(), mention) {
		t.Errorf("error %q does not mention %q", err, mention)
	}
	for _, r := range recs {
		if r.Seq != 0 || r.PrevHash != "" || r.Hash != "" || r.MAC != "" {
			t.Errorf("refused record kept seq %d prev %q hash %q mac %q", r.Seq, r.PrevHash, r.Hash, r.MAC)
		}
	}
}

func TestAppendWhenAnotherConnectionHoldsTheWriteLock(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	db := openDB(t, path, Options{BusyTimeout: 100 * time.Millisecond, AuditKey: []byte("k"), CheckpointEvery: 3})
	log := db.Audit()
	if err := log.Append(ctx, records(1, 2)...); err != nil {
		t.Fatal(err)
	}
	other, err := rawDB(t, path).Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}

	t.Run("Append fails as unavailable and the records get no seq", func(t *testing.T) {
		recs := records(3, 3)
		checkRefused(t, log.Append(ctx, recs...), recs, "locked")
	})
	t.Run("concurrent appends all fail, none hangs", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				recs := records(10+i, 1)
				err := log.Append(ctx, recs...)
				if !errors.Is(err, gateway.ErrAuditUnavailable) || recs[0].Seq != 0 {
					t.Errorf("Append = %v, seq %d", err, recs[0].Seq)
				}
			})
		}
		wg.Wait()
	})
	t.Run("Prune fails too", func(t *testing.T) {
		if _, err := log.Prune(ctx, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)); err == nil {
			t.Error("Prune succeeded under another connection's lock")
		}
	})
	t.Run("once the lock is released Append works and the chain has no gap", func(t *testing.T) {
		if _, err := other.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		recs := records(3, 3)
		if err := log.Append(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		rows := scanAll(t, log, gateway.AuditFilter{})
		if !reflect.DeepEqual(seqs(rows), []int64{1, 2, 3, 4, 5}) {
			t.Fatalf("seqs = %v", seqs(rows))
		}
		checkChain(t, rows, gateway.AuditAnchor{Hash: gateway.GenesisHash})
		if rows[2].MAC != gateway.CheckpointMAC([]byte("k"), 3, rows[2].Hash) {
			t.Errorf("checkpoint row 3 has MAC %q", rows[2].MAC)
		}
	})
	t.Run("a lock released within the busy timeout is waited for", func(t *testing.T) {
		db := openDB(t, path, Options{BusyTimeout: time.Minute})
		if _, err := other.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			t.Fatal(err)
		}
		released := make(chan error, 1)
		go func() {
			time.Sleep(50 * time.Millisecond)
			_, err := other.ExecContext(ctx, "COMMIT")
			released <- err
		}()
		if err := db.Audit().Append(ctx, records(6, 1)...); err != nil {
			t.Errorf("Append = %v", err)
		}
		if err := <-released; err != nil {
			t.Fatal(err)
		}
	})
}

func TestAppendWhenTheFileIsGone(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		break_  func(t *testing.T, path string)
		mention string
	}{
		{name: "removed", mention: "was removed or replaced", break_: func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "replaced by another file", mention: "was removed or replaced", break_: func(t *testing.T, path string) {
			other := filepath.Join(filepath.Dir(path), "other.db")
			if err := os.WriteFile(other, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run("Append fails as unavailable when the database file was "+tt.name, func(t *testing.T) {
			path := dbPath(t)
			db := openDB(t, path, Options{})
			if err := db.Audit().Append(ctx, records(1, 3)...); err != nil {
				t.Fatal(err)
			}
			tt.break_(t, path)
			recs := records(4, 2)
			err := db.Audit().Append(ctx, recs...)
			checkRefused(t, err, recs, tt.mention)
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			// It keeps failing: the gateway must not write where nobody reads.
			checkRefused(t, db.Audit().Append(ctx, recs...), recs, tt.mention)
		})
	}
}

func TestAppendWhenTheDiskIsFull(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{AuditKey: []byte("k"), CheckpointEvery: 2})
	log := db.Audit()
	if err := log.Append(ctx, records(1, 3)...); err != nil {
		t.Fatal(err)
	}
	var pages int64
	if err := db.w.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := db.w.ExecContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	big := func(start int) []*gateway.AuditRecord {
		recs := records(start, 50)
		for _, r := range recs {
			r.Arguments = strings.Repeat("x", 2000) // needs new pages
		}
		return recs
	}

	t.Run("Append fails as unavailable and stores nothing", func(t *testing.T) {
		recs := big(4)
		checkRefused(t, log.Append(ctx, recs...), recs, "full")
		if rows := scanAll(t, log, gateway.AuditFilter{}); len(rows) != 3 {
			t.Errorf("%d rows stored, want the 3 from before", len(rows))
		}
	})
	t.Run("once there is room Append works and the chain has no gap", func(t *testing.T) {
		if _, err := db.w.ExecContext(ctx, "PRAGMA max_page_count = 1073741823"); err != nil {
			t.Fatal(err)
		}
		recs := big(4)
		if err := log.Append(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		if recs[0].Seq != 4 {
			t.Errorf("first new row has seq %d, want 4", recs[0].Seq)
		}
		rows := scanAll(t, log, gateway.AuditFilter{})
		if len(rows) != 53 {
			t.Errorf("%d rows, want 53", len(rows))
		}
		checkChain(t, rows, gateway.AuditAnchor{Hash: gateway.GenesisHash})
	})
}

func BenchmarkAppend(b *testing.B) {
	for _, sync := range []string{SyncNormal, SyncFull} {
		b.Run("synchronous="+sync, func(b *testing.B) {
			db := openDB(b, dbPath(b), Options{Synchronous: sync})
			log := db.Audit()
			ctx := context.Background()
			recs := records(0, 1024)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if err := log.Append(ctx, recs[i%len(recs)]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

func BenchmarkAppendParallel(b *testing.B) {
	const goroutines = 32
	for _, sync := range []string{SyncNormal, SyncFull} {
		b.Run("synchronous="+sync, func(b *testing.B) {
			db := openDB(b, dbPath(b), Options{Synchronous: sync})
			log := db.Audit()
			ctx := context.Background()
			b.SetParallelism(max(1, goroutines/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := record(1)
				for pb.Next() {
					if err := log.Append(ctx, r); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

func BenchmarkScan(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	db := openDB(b, dbPath(b), Options{})
	log := db.Audit()
	for i := 0; i < n; i += maxBatch {
		if err := log.Append(ctx, records(i, min(maxBatch, n-i))...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		rows := 0
		if err := log.Scan(ctx, gateway.AuditFilter{}, func(*gateway.AuditRecord) error { rows++; return nil }); err != nil {
			b.Fatal(err)
		}
		if rows != n {
			b.Fatalf("%d rows", rows)
		}
	}
	b.ReportMetric(float64(b.N)*n/b.Elapsed().Seconds(), "rows/s")
}

// TestInvalidUTF8IsStoredValid: a text that is not valid UTF-8 (an HTTP
// status line can be anything) is stored with U+FFFD instead, so the log
// still reads back and verifies.
func TestInvalidUTF8IsStoredValid(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	recs := records(1, 2)
	recs[0].Error = "500 Bad \xff gateway"
	recs[1].Reasons = []string{"x\xfe"}
	if err := db.Audit().Append(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	var got []gateway.AuditRecord
	err := db.Audit().Scan(ctx, gateway.AuditFilter{}, func(r *gateway.AuditRecord) error {
		c := *r
		c.Reasons = append([]string(nil), r.Reasons...)
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatalf("the log does not read back: %v", err)
	}
	if len(got) != 2 || got[0].Error != "500 Bad \uFFFD gateway" || got[1].Reasons[0] != "x\uFFFD" {
		t.Fatalf("rows read back as %q, %q", got[0].Error, got[1].Reasons)
	}
	for _, r := range got {
		if r.Hash != r.ComputeHash() {
			t.Errorf("row %d does not match its hash", r.Seq)
		}
	}
}

// TestAppendReturnsUnderEnqueueLoad: while others enqueue rows as fast as
// they can, a caller of Append gets its answer once its own row is written
// instead of leading commits for the others' rows for as long as they
// come (a liveness check: the bound is a hang detector, not a speed goal).
func TestAppendReturnsUnderEnqueueLoad(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := db.Audit().Enqueue(records(1, 1)...); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan error, 1)
	go func() {
		for range 20 {
			if err := db.Audit().Append(ctx, records(1, 1)...); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Append did not return while rows were being enqueued")
	}
	close(stop)
	wg.Wait()
	if err := db.Audit().Flush(ctx); err != nil {
		t.Fatal(err)
	}
}
