package audit_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/audit"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// logRows is the size of the logs the verification tests tamper with.
const logRows = 1000

// buildLog returns a database holding logRows synthetic rows, with a
// checkpoint MAC every 100 rows, and its file.
func buildLog(t testing.TB) (*sqlite.DB, string) {
	t.Helper()
	db, path := openDB(t, sqlite.Options{AuditKey: testKey, CheckpointEvery: 100})
	appendAll(t, db.Audit(), synthetic(logRows), 250)
	return db, path
}

// insertRow writes r into the audit table behind the log's back.
func insertRow(t testing.TB, raw *sql.DB, r *gateway.AuditRecord) {
	t.Helper()
	exec(t, raw, `INSERT INTO audit (seq, ts, principal, direction, kind, method, decision, prev_hash, hash, mac)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.Seq, r.Time.UnixMicro(), r.Principal, r.Direction, r.Kind, r.Method, r.Decision, r.PrevHash, r.Hash, r.MAC)
}

// rewriteChain alters every row and recomputes the whole chain, as an
// attacker with write access to the file but without the key would. When
// stripMACs, the checkpoint MACs are removed rather than left stale.
func rewriteChain(t testing.TB, log gateway.AuditLog, raw *sql.DB, stripMACs bool) {
	t.Helper()
	all := rows(t, log, gateway.AuditFilter{})
	tx, err := raw.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	prev := gateway.GenesisHash
	for _, r := range all {
		r.Arguments = strings.ReplaceAll(r.Arguments, "/srv/repo/", "/etc/")
		r.PrevHash = prev
		r.Hash = r.ComputeHash()
		if stripMACs {
			r.MAC = ""
		}
		prev = r.Hash
		if _, err := tx.Exec("UPDATE audit SET arguments = ?, prev_hash = ?, hash = ?, mac = ? WHERE seq = ?",
			r.Arguments, r.PrevHash, r.Hash, r.MAC, r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// hashOf returns the stored hash of row seq.
func hashOf(t testing.TB, raw *sql.DB, seq int64) string {
	t.Helper()
	var h string
	if err := raw.QueryRow("SELECT hash FROM audit WHERE seq = ?", seq).Scan(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestVerifyLog(t *testing.T) {
	// prune retention-prunes the first 300 rows.
	prune := func(t *testing.T, db *sqlite.DB) {
		t.Helper()
		n, err := db.Audit().Prune(context.Background(), base.Add(300*time.Second))
		if err != nil || n != 300 {
			t.Fatalf("Prune: %d rows, %v; want 300", n, err)
		}
	}
	forged := func(seq int64, prevHash string) *gateway.AuditRecord {
		return &gateway.AuditRecord{Seq: seq, Time: base.Add(time.Hour), Principal: "mallory", Direction: "client_to_backend",
			Kind: "request", Method: "tools/call", Decision: "allow", PrevHash: prevHash}
	}
	tests := []struct {
		name   string
		keyed  bool
		tamper func(t *testing.T, db *sqlite.DB, raw *sql.DB)
		// wantBad is the seq the report names, 0 when the log must
		// verify; wantProblem a part of the report's problem.
		wantBad     int64
		wantProblem string
		// For logs that verify: the rows checked, from where, and how
		// many checkpoints the key confirmed.
		wantFirst, wantRows, wantCheckpoints int64
	}{
		{
			name: "intact / a log of 1000 rows verifies without the key", tamper: func(*testing.T, *sqlite.DB, *sql.DB) {},
			wantFirst: 1, wantRows: 1000,
		},
		{
			name: "intact / with the key every checkpoint MAC is confirmed", keyed: true, tamper: func(*testing.T, *sqlite.DB, *sql.DB) {},
			wantFirst: 1, wantRows: 1000, wantCheckpoints: 10,
		},
		{
			name: "altered / a row's arguments were changed",
			tamper: func(t *testing.T, _ *sqlite.DB, raw *sql.DB) {
				exec(t, raw, `UPDATE audit SET arguments = '{"path":"/etc/shadow"}' WHERE seq = 500`)
			},
			wantBad: 500, wantProblem: "row 500: its content does not match its hash (the row was altered)",
		},
		{
			name: "altered / a row was moved to another approval item",
			tamper: func(t *testing.T, _ *sqlite.DB, raw *sql.DB) {
				exec(t, raw, `UPDATE audit SET approval = 'apr_0003' WHERE seq = 45`)
			},
			wantBad: 45, wantProblem: "row 45: its content does not match its hash",
		},
		{
			name: "altered / a row's approval was removed",
			tamper: func(t *testing.T, _ *sqlite.DB, raw *sql.DB) {
				exec(t, raw, `UPDATE audit SET approval = '' WHERE seq = 46`)
			},
			wantBad: 46, wantProblem: "altered",
		},
		{
			name: "altered / a row was given an approval",
			tamper: func(t *testing.T, _ *sqlite.DB, raw *sql.DB) {
				exec(t, raw, `UPDATE audit SET approval = 'apr_0002' WHERE seq = 47`)
			},
			wantBad: 47, wantProblem: "altered",
		},
		{
			name: "altered / a row's time was moved",
			tamper: func(t *testing.T, _ *sqlite.DB, raw *sql.DB) {
				exec(t, raw, `UPDATE audit SET ts = ts + 1 WHERE seq = 777`)
			},
			wantBad: 777, wantProblem: "altered",
		},
		{
			name: "altered / a deny turned into an allow, with its hash recomputed",
			tamper: func(t *testing.T, db *sqlite.DB, raw *sql.DB) {
				r := rows(t, db.Audit(), gateway.AuditFilter{AfterSeq: 9, Limit: 1})[0]
				r.Decision, r.Outcome, r.Reasons = "allow", "", nil
				exec(t, raw, `UPDATE audit SET decision = 'allow', outcome = '', reasons = '', hash = ? WHERE seq = 10`, r.ComputeHash())
			},
			wantBad: 11, wantProblem: "row 11 does not chain onto row 10",
		},
		{
			name: "deleted / a row in the middle",
			tamper: func(t *testing.T, _ *sqlite.DB, raw *sql.DB) {
				exec(t, raw, `DELETE FROM audit WHERE seq = 500`)
			},
			wantBad: 500, wantProblem: "row 500 is missing (deleted)",
		},
		{
			name: "deleted / ten rows in the middle",
			tamper: func(t *testing.T, _ *sqlite.DB, raw *sql.DB) {
				exec(t, raw, `DELETE FROM audit WHERE seq BETWEEN 400 AND 409`)
			},
			wantBad: 400, wantProblem: "rows 400 to 409 are missing (deleted)",
		},
		{
			name: "deleted / the first row, without pruning",
			tamper: func(t *testing.T, _ *sqlite.DB, raw *sql.DB) {
				exec(t, raw, `DELETE FROM audit WHERE seq = 1`)
			},
			wantBad: 1, wantProblem: "row 1 is missing (deleted)",
		},
		{
			name: "deleted / the first 50 rows, without pruning",
			tamper: func(t *testing.T, _ *sqlite.DB, raw *sql.DB) {
				exec(t, raw, `DELETE FROM audit WHERE seq <= 50`)
			},
			wantBad: 1, wantProblem: "rows 1 to 50 are missing (deleted)",
		},
		{
			name: "inserted / a forged row at the end with a wrong prev_hash",
			tamper: func(t *testing.T, _ *sqlite.DB, raw *sql.DB) {
				r := forged(1001, hashOf(t, raw, 999))
				r.Hash = r.ComputeHash()
				insertRow(t, raw, r)
			},
			wantBad: 1001, wantProblem: "row 1001 does not chain onto row 1000",
		},
		{
			name: "inserted / a forged row at the end with a wrong hash",
			tamper: func(t *testing.T, _ *sqlite.DB, raw *sql.DB) {
				r := forged(1001, hashOf(t, raw, 1000))
				r.Hash = hashOf(t, raw, 1000)
				insertRow(t, raw, r)
			},
			wantBad: 1001, wantProblem: "row 1001: its content does not match its hash",
		},
		{
			name: "inserted / a forged row renumbered into a gap",
			tamper: func(t *testing.T, _ *sqlite.DB, raw *sql.DB) {
				exec(t, raw, `DELETE FROM audit WHERE seq = 600`)
				r := forged(600, hashOf(t, raw, 599))
				r.Hash = r.ComputeHash()
				insertRow(t, raw, r)
			},
			wantBad: 601, wantProblem: "row 601 does not chain onto row 600",
		},
		{
			name: "rewritten / a consistently recomputed chain passes without the key",
			tamper: func(t *testing.T, db *sqlite.DB, raw *sql.DB) {
				rewriteChain(t, db.Audit(), raw, false)
			},
			wantFirst: 1, wantRows: 1000,
		},
		{
			name: "rewritten / with the key it fails at the first checkpoint", keyed: true,
			tamper: func(t *testing.T, db *sqlite.DB, raw *sql.DB) {
				rewriteChain(t, db.Audit(), raw, false)
			},
			wantBad: 100, wantProblem: "row 100: its checkpoint MAC is not valid under the key",
		},
		{
			name: "pruned / retention pruned the start: the rest verifies from the anchor", keyed: true,
			tamper:    func(t *testing.T, db *sqlite.DB, _ *sql.DB) { prune(t, db) },
			wantFirst: 301, wantRows: 700, wantCheckpoints: 7,
		},
		{
			name:      "pruned / without the key too",
			tamper:    func(t *testing.T, db *sqlite.DB, _ *sql.DB) { prune(t, db) },
			wantFirst: 301, wantRows: 700,
		},
		{
			name: "pruned / the anchor's hash was altered: the key catches the anchor", keyed: true,
			tamper: func(t *testing.T, db *sqlite.DB, raw *sql.DB) {
				prune(t, db)
				exec(t, raw, `UPDATE audit_anchor SET hash = ? WHERE id = 1`, hashOf(t, raw, 301))
			},
			wantBad: 300, wantProblem: "the anchor left by retention pruning does not carry a valid MAC",
		},
		{
			name: "pruned / the anchor's hash was altered: without the key the next row does not chain",
			tamper: func(t *testing.T, db *sqlite.DB, raw *sql.DB) {
				prune(t, db)
				exec(t, raw, `UPDATE audit_anchor SET hash = ? WHERE id = 1`, hashOf(t, raw, 301))
			},
			wantBad: 301, wantProblem: "row 301 does not chain onto row 300",
		},
		{
			name: "pruned / the anchor moved forward over deleted rows", keyed: true,
			tamper: func(t *testing.T, db *sqlite.DB, raw *sql.DB) {
				prune(t, db)
				h := hashOf(t, raw, 350)
				exec(t, raw, `DELETE FROM audit WHERE seq <= 350`)
				exec(t, raw, `UPDATE audit_anchor SET seq = 350, hash = ? WHERE id = 1`, h)
			},
			wantBad: 350, wantProblem: "anchor",
		},
		{
			name: "pruned / rows right after the anchor were deleted",
			tamper: func(t *testing.T, db *sqlite.DB, raw *sql.DB) {
				prune(t, db)
				exec(t, raw, `DELETE FROM audit WHERE seq <= 320`)
			},
			wantBad: 301, wantProblem: "rows 301 to 320 are missing",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, path := buildLog(t)
			tt.tamper(t, db, rawDB(t, path))
			var key []byte
			if tt.keyed {
				key = testKey
			}
			rep, err := audit.VerifyLog(context.Background(), db.Audit(), key, 100)
			if err != nil {
				t.Fatalf("VerifyLog: %v", err)
			}
			if rep.Keyed != tt.keyed {
				t.Errorf("Keyed = %v, want %v", rep.Keyed, tt.keyed)
			}
			if tt.wantBad != 0 {
				if rep.OK() || rep.Bad != tt.wantBad || !strings.Contains(rep.Problem, tt.wantProblem) {
					t.Errorf("report %+v, want row %d named with %q", rep, tt.wantBad, tt.wantProblem)
				}
				return
			}
			if !rep.OK() || rep.First != tt.wantFirst || rep.Rows != tt.wantRows || rep.Last != tt.wantFirst+tt.wantRows-1 ||
				rep.Checkpoints != tt.wantCheckpoints || rep.Gaps != 0 {
				t.Errorf("report %+v, want OK: rows %d from %d, %d checkpoints", rep, tt.wantRows, tt.wantFirst, tt.wantCheckpoints)
			}
			if tt.wantCheckpoints > 0 && rep.LastCheckpoint != 1000 {
				t.Errorf("last checkpoint %d, want 1000", rep.LastCheckpoint)
			}
		})
	}
}

// TestVerifyLogStrippedMACs: an attacker rewrites the chain and removes
// the checkpoint MACs instead of leaving them stale. Knowing the interval,
// the Verifier fails at the first checkpoint row without its MAC.
func TestVerifyLogStrippedMACs(t *testing.T) {
	db, path := buildLog(t)
	rewriteChain(t, db.Audit(), rawDB(t, path), true)
	rep, err := audit.VerifyLog(context.Background(), db.Audit(), testKey, 100)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Bad != 100 || !strings.Contains(rep.Problem, "without its MAC") {
		t.Errorf("report %+v: want a failure at row 100, the first checkpoint row", rep)
	}
}

func TestVerifyLogEmptyAndUnreadable(t *testing.T) {
	t.Run("an empty log verifies with no rows", func(t *testing.T) {
		db, _ := openDB(t, sqlite.Options{})
		rep, err := audit.VerifyLog(context.Background(), db.Audit(), testKey, 100)
		if err != nil || !rep.OK() || rep.Rows != 0 {
			t.Errorf("VerifyLog = %+v, %v", rep, err)
		}
	})
	t.Run("a log that cannot be read is an error, not a verdict", func(t *testing.T) {
		db, _ := openDB(t, sqlite.Options{})
		appendAll(t, db.Audit(), synthetic(3), 3)
		db.Close()
		if _, err := audit.VerifyLog(context.Background(), db.Audit(), nil, 0); err == nil {
			t.Error("VerifyLog of a closed database returned no error")
		}
	})
	t.Run("a cancelled context stops the scan with an error", func(t *testing.T) {
		db, _ := buildLog(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := audit.VerifyLog(ctx, db.Audit(), nil, 0); !errors.Is(err, context.Canceled) {
			t.Errorf("VerifyLog with a cancelled context: %v, want context.Canceled", err)
		}
	})
}

// verifyExport checks an export with a Verifier, as `sallyport audit
// verify --file` does.
func verifyExport(t testing.TB, data []byte, v *audit.Verifier) audit.Report {
	t.Helper()
	errStop := errors.New("stop")
	err := audit.ReadExport(bytes.NewReader(data), func(r *gateway.AuditRecord) error {
		if !v.Check(r) {
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		t.Fatalf("ReadExport: %v", err)
	}
	return v.Report()
}

func TestVerifyExport(t *testing.T) {
	db, _ := buildLog(t)
	log := db.Audit()
	alice := gateway.AuditFilter{Principal: "alice"} // every third row
	window := gateway.AuditFilter{Since: base.Add(200 * time.Second), Until: base.Add(700 * time.Second)}
	lineOf := func(data []byte, seq string) int {
		for i, l := range bytes.SplitAfter(data, []byte("\n")) {
			if bytes.HasPrefix(l, []byte(`{"seq":`+seq+`,`)) || bytes.HasPrefix(l, []byte(seq+",")) {
				return i
			}
		}
		t.Fatalf("no line for row %s", seq)
		return 0
	}
	edit := func(data []byte, seq string, fn func(line []byte) []byte) []byte {
		lines := bytes.SplitAfter(data, []byte("\n"))
		i := lineOf(data, seq)
		lines[i] = fn(lines[i])
		return bytes.Join(lines, nil)
	}
	tests := []struct {
		name      string
		filter    gateway.AuditFilter
		format    string
		allowGaps bool
		edit      func(data []byte) []byte
		wantBad   int64
		// For exports that verify.
		wantRows, wantGaps, wantCheckpoints int64
	}{
		{name: "a full jsonl export verifies", format: audit.FormatJSONL, wantRows: 1000, wantCheckpoints: 10},
		{name: "a full csv export verifies", format: audit.FormatCSV, wantRows: 1000, wantCheckpoints: 10},
		{name: "a time-range export is contiguous and verifies without gaps", filter: window, format: audit.FormatCSV,
			wantRows: 500, wantCheckpoints: 5},
		{name: "a filtered export verifies with gaps allowed", filter: alice, format: audit.FormatJSONL, allowGaps: true,
			wantRows: 334, wantGaps: 333, wantCheckpoints: 4},
		{name: "a filtered csv export verifies with gaps allowed", filter: alice, format: audit.FormatCSV, allowGaps: true,
			wantRows: 334, wantGaps: 333, wantCheckpoints: 4},
		{name: "a filtered export without gaps allowed names the first row left out", filter: alice, format: audit.FormatJSONL,
			wantBad: 2},
		{name: "a tampered jsonl line fails at its row", format: audit.FormatJSONL, allowGaps: true,
			edit: func(d []byte) []byte {
				return edit(d, "500", func(l []byte) []byte { return bytes.Replace(l, []byte(`"bob"`), []byte(`"mallory"`), 1) })
			},
			wantBad: 500},
		{name: "a tampered line of a filtered jsonl export fails at its row", filter: alice, format: audit.FormatJSONL, allowGaps: true,
			edit: func(d []byte) []byte {
				return edit(d, "499", func(l []byte) []byte { return bytes.Replace(l, []byte(`"allow"`), []byte(`"deny"`), 1) })
			},
			wantBad: 499},
		{name: "a tampered csv cell fails at its row", format: audit.FormatCSV, allowGaps: true,
			edit: func(d []byte) []byte {
				return edit(d, "41", func(l []byte) []byte { return bytes.Replace(l, []byte("files"), []byte("github"), 1) })
			},
			wantBad: 41},
		{name: "an export of rows with an approval verifies", filter: gateway.AuditFilter{Approval: "apr_0002"}, format: audit.FormatCSV,
			wantRows: 2},
		{name: "a jsonl row moved to another approval fails at its row", format: audit.FormatJSONL, allowGaps: true,
			edit: func(d []byte) []byte {
				return edit(d, "45", func(l []byte) []byte { return bytes.Replace(l, []byte(`"apr_0002"`), []byte(`"apr_0003"`), 1) })
			},
			wantBad: 45},
		{name: "a jsonl row whose approval was emptied fails at its row", format: audit.FormatJSONL, allowGaps: true,
			edit: func(d []byte) []byte {
				return edit(d, "46", func(l []byte) []byte { return bytes.Replace(l, []byte(`"apr_0002"`), []byte(`""`), 1) })
			},
			wantBad: 46},
		{name: "a jsonl row whose approval key was dropped fails at its row", format: audit.FormatJSONL, allowGaps: true,
			edit: func(d []byte) []byte {
				return edit(d, "46", func(l []byte) []byte { return bytes.Replace(l, []byte(`,"approval":"apr_0002"`), nil, 1) })
			},
			wantBad: 46},
		{name: "a jsonl row given an approval it did not have fails at its row", format: audit.FormatJSONL, allowGaps: true,
			edit: func(d []byte) []byte {
				return edit(d, "47", func(l []byte) []byte {
					return bytes.Replace(l, []byte(`"approval":""`), []byte(`"approval":"apr_0002"`), 1)
				})
			},
			wantBad: 47},
		{name: "a csv row moved to another approval fails at its row", format: audit.FormatCSV, allowGaps: true,
			edit: func(d []byte) []byte {
				return edit(d, "45", func(l []byte) []byte { return bytes.Replace(l, []byte(",apr_0002\r\n"), []byte(",apr_0003\r\n"), 1) })
			},
			wantBad: 45},
		{name: "a csv row whose approval cell was emptied fails at its row", format: audit.FormatCSV, allowGaps: true,
			edit: func(d []byte) []byte {
				return edit(d, "46", func(l []byte) []byte { return bytes.Replace(l, []byte(",apr_0002\r\n"), []byte(",\r\n"), 1) })
			},
			wantBad: 46},
		{name: "a checkpoint MAC altered in an export fails at its row", format: audit.FormatJSONL, allowGaps: true,
			edit: func(d []byte) []byte {
				return edit(d, "300", func(l []byte) []byte { return bytes.Replace(l, []byte(`"mac":"`), []byte(`"mac":"00`), 1) })
			},
			wantBad: 300},
		{name: "a duplicated line fails", format: audit.FormatJSONL, allowGaps: true,
			edit:    func(d []byte) []byte { return edit(d, "10", func(l []byte) []byte { return append(l, l...) }) },
			wantBad: 10},
		{name: "a deleted line of a full export fails without gaps allowed", format: audit.FormatJSONL,
			edit:    func(d []byte) []byte { return edit(d, "10", func([]byte) []byte { return nil }) },
			wantBad: 10},
		{name: "a deleted line of a full export shows as a gap when gaps are allowed", format: audit.FormatJSONL, allowGaps: true,
			edit:     func(d []byte) []byte { return edit(d, "10", func([]byte) []byte { return nil }) },
			wantRows: 999, wantGaps: 1, wantCheckpoints: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := exportAll(t, log, tt.filter, tt.format)
			if tt.edit != nil {
				edited := tt.edit(bytes.Clone(data))
				if bytes.Equal(edited, data) {
					t.Fatal("the edit changed nothing")
				}
				data = edited
			}
			rep := verifyExport(t, data, &audit.Verifier{Key: testKey, AllowGaps: tt.allowGaps})
			if tt.wantBad != 0 {
				if rep.OK() || rep.Bad != tt.wantBad {
					t.Errorf("report %+v, want it to name row %d", rep, tt.wantBad)
				}
				return
			}
			if !rep.OK() || rep.Rows != tt.wantRows || rep.Gaps != tt.wantGaps || rep.Checkpoints != tt.wantCheckpoints {
				t.Errorf("report %+v, want OK with %d rows, %d gaps, %d checkpoints", rep, tt.wantRows, tt.wantGaps, tt.wantCheckpoints)
			}
		})
	}
}

func TestVerifier(t *testing.T) {
	// chain returns n well-chained rows from seq first on, after prev.
	chain := func(first int64, prev string, n int) []gateway.AuditRecord {
		out := make([]gateway.AuditRecord, n)
		for i := range out {
			r := gateway.AuditRecord{Seq: first + int64(i), Time: base.Add(time.Duration(i) * time.Second), Method: "ping", PrevHash: prev}
			r.Hash = r.ComputeHash()
			if r.Seq%5 == 0 {
				r.MAC = gateway.CheckpointMAC(testKey, r.Seq, r.Hash)
			}
			prev = r.Hash
			out[i] = r
		}
		return out
	}
	rs := chain(1, gateway.GenesisHash, 10)
	tests := []struct {
		name    string
		v       audit.Verifier
		anchor  *gateway.AuditAnchor // Start's argument; nil: no Start
		rows    []gateway.AuditRecord
		wantBad int64
		wantOK  bool
	}{
		{"without Start the first row is taken as it is", audit.Verifier{}, nil, rs[3:], 0, true},
		{"from the zero anchor the first row must be row 1", audit.Verifier{}, &gateway.AuditAnchor{}, rs[3:], 1, false},
		{"from the zero anchor a full chain verifies", audit.Verifier{Key: testKey}, &gateway.AuditAnchor{}, rs, 0, true},
		{"an anchor with a valid MAC starts the chain", audit.Verifier{Key: testKey},
			&gateway.AuditAnchor{Seq: 3, Hash: rs[2].Hash, MAC: gateway.AnchorMAC(testKey, 3, rs[2].Hash)}, rs[3:], 0, true},
		{"an anchor without MAC fails with the key", audit.Verifier{Key: testKey},
			&gateway.AuditAnchor{Seq: 3, Hash: rs[2].Hash}, rs[3:], 3, false},
		{"a checkpoint row's MAC does not pass for an anchor's", audit.Verifier{Key: testKey},
			&gateway.AuditAnchor{Seq: 3, Hash: rs[2].Hash, MAC: gateway.CheckpointMAC(testKey, 3, rs[2].Hash)}, rs[3:], 3, false},
		{"an anchor under another key fails", audit.Verifier{Key: []byte("another key, also 32 bytes long!")},
			&gateway.AuditAnchor{Seq: 3, Hash: rs[2].Hash, MAC: gateway.AnchorMAC(testKey, 3, rs[2].Hash)}, rs[3:], 3, false},
		{"an anchor's MAC is not checked without the key", audit.Verifier{},
			&gateway.AuditAnchor{Seq: 3, Hash: rs[2].Hash, MAC: "bogus"}, rs[3:], 0, true},
		{"checkpoint MACs under another key fail at the first", audit.Verifier{Key: []byte("another key, also 32 bytes long!")},
			&gateway.AuditAnchor{}, rs, 5, false},
		{"rows out of order fail", audit.Verifier{AllowGaps: true}, nil, []gateway.AuditRecord{rs[0], rs[2], rs[1]}, 2, false},
		{"a gap is allowed only when gaps are", audit.Verifier{AllowGaps: true}, nil, []gateway.AuditRecord{rs[0], rs[4], rs[5]}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.v
			started := true
			if tt.anchor != nil {
				started = v.Start(*tt.anchor)
			}
			for i := range tt.rows {
				if !started || !v.Check(&tt.rows[i]) {
					break
				}
			}
			rep := v.Report()
			if rep.OK() != tt.wantOK || rep.Bad != tt.wantBad {
				t.Errorf("report %+v, want OK %v, bad %d", rep, tt.wantOK, tt.wantBad)
			}
		})
	}
	t.Run("after the first failure every Check fails and the report keeps the first", func(t *testing.T) {
		var v audit.Verifier
		bad := rs[1]
		bad.Method = "tools/call"
		v.Check(&rs[0])
		if v.Check(&bad) || v.Check(&rs[2]) {
			t.Error("Check passed after a failure")
		}
		if rep := v.Report(); rep.Bad != 2 || rep.Rows != 1 || rep.Last != 1 {
			t.Errorf("report %+v, want row 2 named after 1 good row", rep)
		}
	})
}
