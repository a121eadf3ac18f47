package audit_test

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers "sqlite3" for the tampering connection

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/sqlite"
)

// testKey is an audit key of the configured minimum length.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// base is the time the synthetic rows start at: fixed, so tests never
// depend on the wall clock.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// openDB opens a real SQLite database in a temporary directory and closes
// it when the test ends. It returns the database and its file.
func openDB(t testing.TB, opts sqlite.Options) (*sqlite.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "a.db")
	db, err := sqlite.Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

// rawDB opens a second, independent connection pool on the database file,
// the way an attacker with access to the file would: plain database/sql,
// not through package sqlite.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatalf("open raw connection: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// exec runs SQL on the raw connection and fails the test on error.
func exec(t testing.TB, raw *sql.DB, query string, args ...any) sql.Result {
	t.Helper()
	res, err := raw.Exec(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return res
}

// synthetic returns n records with varied, realistic content, the i-th
// (from 0) at base + i seconds.
func synthetic(n int) []*gateway.AuditRecord { return syntheticFrom(0, n) }

// syntheticFrom returns records from..from+n-1 of the sequence synthetic
// starts.
func syntheticFrom(from, n int) []*gateway.AuditRecord {
	principals := []string{"alice", "bob", "carol"}
	backends := []string{"github", "files", "jira"}
	tools := []string{"search_issues", "read_file", "create_ticket", "list_repos"}
	recs := make([]*gateway.AuditRecord, n)
	for j := range recs {
		i := from + j
		r := &gateway.AuditRecord{
			Time:            base.Add(time.Duration(i) * time.Second),
			Session:         fmt.Sprintf("sess-%04d", i/50),
			Transport:       "http",
			ProtocolVersion: "2025-06-18",
			ClientName:      "claude-code",
			ClientVersion:   "1.0.42",
			Principal:       principals[i%len(principals)],
			TokenID:         fmt.Sprintf("tok_%d", i%len(principals)),
			Direction:       gateway.ClientToBackend.String(),
			Kind:            gateway.KindRequest.String(),
			Method:          "tools/call",
			MessageID:       fmt.Sprint(i),
			Backend:         backends[i%len(backends)],
			Target:          tools[i%len(tools)],
			Arguments:       fmt.Sprintf(`{"path":"/srv/repo/file-%d.go","query":"status:open label:bug","page":%d}`, i, i%7),
			Decision:        gateway.DecisionAllow,
			Rules:           []string{"allow-read"},
			PolicyVersion:   "v12",
			Bytes:           int64(120 + i%300),
		}
		if i%20 == 4 || i%20 == 5 {
			// A call held for approval and its answer.
			r.Approval = fmt.Sprintf("apr_%04d", i/20)
		}
		if i%10 == 9 {
			r.Decision = gateway.DecisionDeny
			r.Outcome = gateway.OutcomeRefused
			r.Reasons = []string{"tool not allowed for group dev"}
			r.Rules = []string{"deny-write", "default"}
			r.ErrorCode = gateway.CodeRefused
			r.Error = "refused by policy"
		}
		recs[j] = r
	}
	return recs
}

// appendAll appends recs in batches of at most batch records per call.
func appendAll(t testing.TB, log gateway.AuditLog, recs []*gateway.AuditRecord, batch int) {
	t.Helper()
	for len(recs) > 0 {
		n := min(batch, len(recs))
		if err := log.Append(context.Background(), recs[:n]...); err != nil {
			t.Fatalf("append: %v", err)
		}
		recs = recs[n:]
	}
}

// rows returns copies of the rows f selects.
func rows(t testing.TB, log gateway.AuditLog, f gateway.AuditFilter) []gateway.AuditRecord {
	t.Helper()
	if err := log.Flush(context.Background()); err != nil {
		t.Logf("flush: %v", err)
	}
	var out []gateway.AuditRecord
	err := log.Scan(context.Background(), f, func(r *gateway.AuditRecord) error {
		out = append(out, clone(r))
		return nil
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out
}

// clone copies r, normalizing empty lists to nil so that records compare
// equal whichever way they were read.
func clone(r *gateway.AuditRecord) gateway.AuditRecord {
	c := *r
	c.Reasons, c.Rules = slices.Clone(r.Reasons), slices.Clone(r.Rules)
	if len(c.Reasons) == 0 {
		c.Reasons = nil
	}
	if len(c.Rules) == 0 {
		c.Rules = nil
	}
	return c
}
