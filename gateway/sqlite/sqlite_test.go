package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sallyport/sallyport/gateway"
)

// dbPath returns a path for a new database file in a temporary directory.
func dbPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "sallyport.db")
}

// openDB opens the database at path, closing it when the test ends.
func openDB(t testing.TB, path string, opts Options) *DB {
	t.Helper()
	db, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// rawDB opens path with the plain sqlite3 driver, as another program
// would, outside the package's pools.
func rawDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// pragma returns the value of PRAGMA name on conn.
func pragma(t *testing.T, conn *sql.Conn, name string) string {
	t.Helper()
	var v string
	if err := conn.QueryRowContext(context.Background(), "PRAGMA "+name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

// conns takes n distinct connections from pool (all at once, so that none
// is a reused one), releasing them when the test ends.
func conns(t *testing.T, pool *sql.DB, n int) []*sql.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cs []*sql.Conn
	for range n {
		c, err := pool.Conn(ctx)
		if err != nil {
			t.Fatalf("take connection %d of %d: %v", len(cs)+1, n, err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return cs
}

func TestOpenCreatesTheSchema(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, dbPath(t), Options{})
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations embedded")
	}

	t.Run("the tables of the migrations exist", func(t *testing.T) {
		for _, table := range []string{"schema_migrations", "audit", "audit_anchor", "tokens", "counters"} {
			var n int
			if err := db.r.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?", table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Errorf("table %s missing", table)
			}
		}
	})
	t.Run("schema_migrations records every version with its name", func(t *testing.T) {
		rows, err := db.r.QueryContext(ctx, "SELECT version, name, applied FROM schema_migrations ORDER BY version")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		i := 0
		for rows.Next() {
			var v, applied int64
			var name string
			if err := rows.Scan(&v, &name, &applied); err != nil {
				t.Fatal(err)
			}
			if i >= len(ms) {
				t.Fatalf("extra migration row %d %s", v, name)
			}
			if v != int64(ms[i].version) || name != ms[i].name || applied <= 0 {
				t.Errorf("row %d = (%d, %q, %d), want (%d, %q, >0)", i, v, name, applied, ms[i].version, ms[i].name)
			}
			i++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if i != len(ms) {
			t.Errorf("%d migrations recorded, want %d", i, len(ms))
		}
	})
	t.Run("the tokens version starts at zero", func(t *testing.T) {
		v, err := db.Tokens().TokensVersion(ctx)
		if err != nil || v != 0 {
			t.Errorf("TokensVersion = %d, %v", v, err)
		}
	})
	t.Run("the anchor starts at the genesis hash", func(t *testing.T) {
		a, err := db.Audit().Anchor(ctx)
		if err != nil || a != (gateway.AuditAnchor{Hash: gateway.GenesisHash}) {
			t.Errorf("Anchor = %+v, %v", a, err)
		}
	})
	t.Run("the file really is in WAL mode", func(t *testing.T) {
		var mode string
		if err := rawDB(t, db.Path()).QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" {
			t.Errorf("journal_mode = %q", mode)
		}
	})
	t.Run("opening it again applies nothing twice", func(t *testing.T) {
		db.Close()
		db2 := openDB(t, db.Path(), Options{})
		var n int
		if err := db2.r.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != len(ms) {
			t.Errorf("%d migration rows, want %d", n, len(ms))
		}
	})
}

func TestOpenSetsPragmasOnEveryConnection(t *testing.T) {
	tests := []struct {
		name        string
		opts        Options
		busyTimeout string
		synchronous string // as PRAGMA synchronous reports it
	}{
		{name: "the defaults are a 5s busy timeout and synchronous normal", opts: Options{}, busyTimeout: "5000", synchronous: "1"},
		{name: "synchronous full and a short busy timeout are applied", opts: Options{Synchronous: SyncFull, BusyTimeout: 250 * time.Millisecond},
			busyTimeout: "250", synchronous: "2"},
		{name: "synchronous normal is applied", opts: Options{Synchronous: SyncNormal, BusyTimeout: time.Minute, Readers: 2},
			busyTimeout: "60000", synchronous: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t, dbPath(t), tt.opts)
			readers := tt.opts.Readers
			if readers == 0 {
				readers = 4
			}
			check := func(t *testing.T, c *sql.Conn, queryOnly string) {
				if got := pragma(t, c, "busy_timeout"); got != tt.busyTimeout {
					t.Errorf("busy_timeout = %s, want %s", got, tt.busyTimeout)
				}
				if got := pragma(t, c, "foreign_keys"); got != "1" {
					t.Errorf("foreign_keys = %s, want 1", got)
				}
				if got := pragma(t, c, "synchronous"); got != tt.synchronous {
					t.Errorf("synchronous = %s, want %s", got, tt.synchronous)
				}
				if got := pragma(t, c, "journal_mode"); got != "wal" {
					t.Errorf("journal_mode = %s, want wal", got)
				}
				if got := pragma(t, c, "query_only"); got != queryOnly {
					t.Errorf("query_only = %s, want %s", got, queryOnly)
				}
			}
			t.Run("on the writer connection", func(t *testing.T) {
				for _, c := range conns(t, db.w, 1) {
					check(t, c, "0")
				}
			})
			t.Run("on every reader connection", func(t *testing.T) {
				for _, c := range conns(t, db.r, readers) {
					check(t, c, "1")
				}
			})
		})
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		opts Options
		err  string
	}{
		{name: "an unknown synchronous setting", path: filepath.Join(dir, "a.db"), opts: Options{Synchronous: "off"}, err: `synchronous must be "normal" or "full", not "off"`},
		{name: "an empty path", path: "", err: "invalid path"},
		{name: "a path with a query string", path: filepath.Join(dir, "a.db?mode=memory"), err: "invalid path"},
		{name: "a path with a fragment", path: filepath.Join(dir, "a.db#x"), err: "invalid path"},
		{name: "a path with a NUL byte", path: filepath.Join(dir, "a\x00.db"), err: "invalid path"},
		{name: "a path in a missing directory", path: filepath.Join(dir, "missing", "a.db"), err: "open database"},
	}
	for _, tt := range tests {
		t.Run("Open refuses "+tt.name, func(t *testing.T) {
			db, err := Open(context.Background(), tt.path, tt.opts)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error = %v, want one containing %q", err, tt.err)
			}
		})
	}
}

func TestOpenRefusesANewerDatabase(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	db := openDB(t, path, Options{})
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	newer := len(ms) + 1
	if _, err := db.w.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, 1)", newer, "9999_future.sql"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	for _, readOnly := range []bool{false, true} {
		name := "a database written by a newer sallyport is refused"
		if readOnly {
			name += " read-only too"
		}
		t.Run(name, func(t *testing.T) {
			db, err := Open(ctx, path, Options{ReadOnly: readOnly})
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			for _, want := range []string{"newer", path, "use a newer sallyport"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error = %v, want one containing %q", err, want)
				}
			}
		})
	}
	t.Run("the refused database is left as it was", func(t *testing.T) {
		var n int
		if err := rawDB(t, path).QueryRow("SELECT max(version) FROM schema_migrations").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != newer {
			t.Errorf("schema version now %d, want %d", n, newer)
		}
	})
}

func TestOpenReadOnlyRefusesWhatIsNotASallyportDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()

	other := filepath.Join(dir, "other.db")
	raw := rawDB(t, other)
	if _, err := raw.Exec("CREATE TABLE notes (body TEXT)"); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	text := filepath.Join(dir, "text.db")
	if err := os.WriteFile(text, bytes.Repeat([]byte("not a database\n"), 100), 0o600); err != nil {
		t.Fatal(err)
	}

	old := filepath.Join(dir, "old.db")
	db := openDB(t, old, Options{})
	if _, err := db.w.ExecContext(ctx, "DELETE FROM schema_migrations"); err != nil {
		t.Fatal(err)
	}
	db.Close()

	tests := []struct {
		name string
		path string
		err  []string
	}{
		{name: "a missing file", path: filepath.Join(dir, "missing.db"), err: []string{"open database", "no such file"}},
		{name: "an SQLite file of another program", path: other, err: []string{other, "is it a sallyport database?"}},
		{name: "a file that is not SQLite at all", path: text, err: []string{text}},
		{name: "a database older than this sallyport", path: old, err: []string{old, "schema version 0", "open it once"}},
	}
	for _, tt := range tests {
		t.Run("a read-only open refuses "+tt.name, func(t *testing.T) {
			db, err := Open(ctx, tt.path, Options{ReadOnly: true})
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			for _, want := range tt.err {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error = %v, want one containing %q", err, want)
				}
			}
		})
	}
	t.Run("a read-only open creates no file", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Stat = %v", err)
		}
	})
}

func TestOpenReadOnlyNeverWrites(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	rw := openDB(t, path, Options{})
	if err := rw.Audit().Append(ctx, records(1, 10)...); err != nil {
		t.Fatal(err)
	}
	if err := rw.Tokens().InsertToken(ctx, tokenRecord("tok_00000001", 1)); err != nil {
		t.Fatal(err)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	ro := openDB(t, path, Options{ReadOnly: true})
	t.Run("reads work", func(t *testing.T) {
		rows := scanAll(t, ro.Audit(), gateway.AuditFilter{})
		if len(rows) != 10 {
			t.Fatalf("%d rows, want 10", len(rows))
		}
		checkChain(t, rows, gateway.AuditAnchor{Hash: gateway.GenesisHash})
		toks, err := ro.Tokens().Tokens(ctx)
		if err != nil || len(toks) != 1 {
			t.Errorf("Tokens = %v, %v", toks, err)
		}
	})
	t.Run("Append is refused as the audit log being unavailable", func(t *testing.T) {
		recs := records(11, 1)
		err := ro.Audit().Append(ctx, recs...)
		if !errors.Is(err, gateway.ErrAuditUnavailable) || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("Append = %v", err)
		}
		if recs[0].Seq != 0 || recs[0].Hash != "" {
			t.Errorf("refused record got seq %d hash %q", recs[0].Seq, recs[0].Hash)
		}
	})
	t.Run("Prune is refused", func(t *testing.T) {
		n, err := ro.Audit().Prune(ctx, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))
		if err == nil || n != 0 {
			t.Errorf("Prune = %d, %v", n, err)
		}
	})
	t.Run("token writes are refused", func(t *testing.T) {
		if err := ro.Tokens().InsertToken(ctx, tokenRecord("tok_00000002", 2)); err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("InsertToken = %v", err)
		}
		if err := ro.Tokens().RevokeToken(ctx, "tok_00000001", t0); err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("RevokeToken = %v", err)
		}
	})
	t.Run("the reader connections cannot write either", func(t *testing.T) {
		if _, err := ro.r.ExecContext(ctx, "DELETE FROM audit"); err == nil {
			t.Error("DELETE through a reader connection succeeded")
		}
	})
	t.Run("the file is unchanged", func(t *testing.T) {
		if err := ro.Close(); err != nil {
			t.Fatal(err)
		}
		after, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(before, after) {
			t.Error("the database file changed under a read-only open")
		}
		if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
			t.Errorf("a read-only open left a %d-byte WAL", fi.Size())
		}
	})
}

func TestOpenReadOnlyWhileAWriterAppends(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	rw := openDB(t, path, Options{})
	if err := rw.Audit().Append(ctx, records(1, 5)...); err != nil {
		t.Fatal(err)
	}
	ro := openDB(t, path, Options{ReadOnly: true}) // `sallyport audit export` while `serve` runs
	t.Run("the reader sees what was committed", func(t *testing.T) {
		if n := len(scanAll(t, ro.Audit(), gateway.AuditFilter{})); n != 5 {
			t.Errorf("%d rows, want 5", n)
		}
	})
	t.Run("the reader sees later commits", func(t *testing.T) {
		if err := rw.Audit().Append(ctx, records(6, 5)...); err != nil {
			t.Fatal(err)
		}
		rows := scanAll(t, ro.Audit(), gateway.AuditFilter{})
		if len(rows) != 10 {
			t.Errorf("%d rows, want 10", len(rows))
		}
		checkChain(t, rows, gateway.AuditAnchor{Hash: gateway.GenesisHash})
	})
	t.Run("a scan in progress does not block appends", func(t *testing.T) {
		err := ro.Audit().Scan(ctx, gateway.AuditFilter{Limit: 1}, func(*gateway.AuditRecord) error {
			return rw.Audit().Append(ctx, records(11, 1)...)
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestConcurrentOpenOfANewFile(t *testing.T) {
	// The race is between the handles' first statements, so each case is
	// run on several new files.
	const rounds = 25
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{2, 8} {
		t.Run(strconv.Itoa(n)+" handles opening one new file at once all succeed and apply each migration once", func(t *testing.T) {
			for round := range rounds {
				openAtOnce(t, n, round, len(ms))
				if t.Failed() {
					return
				}
			}
		})
	}
}

// openAtOnce opens n handles on one new file at the same moment, checks
// that the schema was applied once, and that every handle can append to
// one chain.
func openAtOnce(t *testing.T, n, round, migrations int) {
	t.Helper()
	path := dbPath(t)
	dbs := make([]*DB, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			dbs[i], errs[i] = Open(context.Background(), path, Options{})
		})
	}
	close(start)
	wg.Wait()
	defer func() {
		for _, db := range dbs {
			if db != nil {
				db.Close()
			}
		}
	}()
	for i, err := range errs {
		if err != nil {
			t.Errorf("round %d: Open %d: %v", round, i, err)
		}
	}
	if t.Failed() {
		return
	}
	var count, max int
	if err := dbs[0].r.QueryRow("SELECT count(*), max(version) FROM schema_migrations").Scan(&count, &max); err != nil {
		t.Fatal(err)
	}
	if count != migrations || max != migrations {
		t.Errorf("round %d: schema_migrations has %d rows up to version %d, want %d", round, count, max, migrations)
	}
	var awg sync.WaitGroup
	for i, db := range dbs {
		awg.Go(func() {
			if err := db.Audit().Append(context.Background(), records(i*10, 10)...); err != nil {
				t.Errorf("round %d: Append on handle %d: %v", round, i, err)
			}
		})
	}
	awg.Wait()
	rows := scanAll(t, dbs[0].Audit(), gateway.AuditFilter{})
	if len(rows) != 10*n {
		t.Errorf("round %d: %d rows, want %d", round, len(rows), 10*n)
	}
	checkChain(t, rows, gateway.AuditAnchor{Hash: gateway.GenesisHash})
}
