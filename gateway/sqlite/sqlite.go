// Package sqlite implements Sallyport's stores (gateway.AuditLog,
// gateway.TokenStore) on one SQLite file with mattn/go-sqlite3.
//
// The file is in WAL mode, which Open verifies rather than assumes. Every
// connection gets busy_timeout, foreign_keys and synchronous when it is
// opened. Writes go through one connection; reads use a small pool of
// query-only connections, so exports and verification never block the
// gateway's writes. The schema comes from the numbered files of package
// migrations, each applied in one transaction and recorded; a database
// written by a newer Sallyport is refused.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/sallyport/sallyport/migrations"
)

// Synchronous settings (PRAGMA synchronous).
const (
	// SyncNormal: a committed transaction survives a crash of the process;
	// the last ones may be lost if the machine loses power.
	SyncNormal = "normal"
	// SyncFull: a committed transaction survives a power loss too, at the
	// cost of an fsync per commit.
	SyncFull = "full"
)

// Options configure Open.
type Options struct {
	// BusyTimeout is how long a statement waits for a lock another
	// connection or process holds before it fails; default 5s.
	BusyTimeout time.Duration
	// Synchronous is SyncNormal (the default) or SyncFull.
	Synchronous string
	// ReadOnly opens an existing database for reading only: no migration,
	// no writes (audit verify and export).
	ReadOnly bool
	// AuditKey, when set, keys the audit log's checkpoints and anchor.
	AuditKey []byte
	// CheckpointEvery puts a checkpoint MAC on every n-th audit row when
	// AuditKey is set; default 1000.
	CheckpointEvery int64
	// Readers is the size of the read pool; default 4.
	Readers int
}

// DB is an open Sallyport database.
type DB struct {
	path string
	opts Options
	w    *sql.DB // one connection: every write
	r    *sql.DB // query-only pool

	fd *os.File // the file as opened, held to notice it being removed or replaced

	audit *auditLog
	once  sync.Once
}

// Open opens (creating if need be) the database at path and brings its
// schema up to date.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = 5 * time.Second
	}
	switch opts.Synchronous {
	case "":
		opts.Synchronous = SyncNormal
	case SyncNormal, SyncFull:
	default:
		return nil, fmt.Errorf("open database: synchronous must be %q or %q, not %q", SyncNormal, SyncFull, opts.Synchronous)
	}
	if opts.CheckpointEvery <= 0 {
		opts.CheckpointEvery = 1000
	}
	if opts.Readers <= 0 {
		opts.Readers = 4
	}
	if path == "" || strings.ContainsRune(path, 0) || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open database: invalid path %q", path)
	}
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
	}
	db := &DB{path: path, opts: opts}
	var err error
	if !opts.ReadOnly {
		if db.w, err = db.pool(false, 1); err != nil {
			return nil, err
		}
		if err := db.checkWAL(ctx); err != nil {
			db.Close()
			return nil, err
		}
		if err := db.migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
		if db.fd, err = os.Open(path); err != nil {
			db.Close()
			return nil, fmt.Errorf("open database: %w", err)
		}
	}
	if db.r, err = db.pool(true, opts.Readers); err != nil {
		db.Close()
		return nil, err
	}
	if opts.ReadOnly {
		if err := db.checkVersion(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// pool opens a connection pool whose every connection gets the PRAGMAs.
func (db *DB) pool(readOnly bool, n int) (*sql.DB, error) {
	pragmas := []string{
		"PRAGMA busy_timeout = " + strconv.FormatInt(db.opts.BusyTimeout.Milliseconds(), 10),
		"PRAGMA foreign_keys = ON",
		"PRAGMA synchronous = " + strings.ToUpper(db.opts.Synchronous),
	}
	if readOnly {
		pragmas = append(pragmas, "PRAGMA query_only = ON")
	} else {
		pragmas = append(pragmas, "PRAGMA journal_mode = WAL")
	}
	drv := &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
		for _, p := range pragmas {
			if err := execBusy(c, p, db.opts.BusyTimeout); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		}
		return nil
	}}
	// A file: URI: SQLite decodes %XX escapes in it, so a % of the path
	// must be one.
	dsn := "file:" + strings.ReplaceAll(db.path, "%", "%25") + "?_txlock=immediate"
	if readOnly {
		dsn += "&mode=ro"
	}
	p := sql.OpenDB(connector{drv: drv, dsn: dsn})
	p.SetMaxOpenConns(n)
	p.SetMaxIdleConns(n)
	p.SetConnMaxIdleTime(0)
	p.SetConnMaxLifetime(0)
	return p, nil
}

// execBusy runs the statement p on c, retrying for up to timeout while the
// database is busy. Switching a new file to WAL upgrades a read lock to a
// write lock, for which SQLite does not call the busy handler: two
// processes creating the file at once would otherwise fail.
func execBusy(c *sqlite3.SQLiteConn, p string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := c.Exec(p, nil)
		var se sqlite3.Error
		if err == nil || !errors.As(err, &se) || se.Code != sqlite3.ErrBusy || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type connector struct {
	drv *sqlite3.SQLiteDriver
	dsn string
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.drv }

// checkWAL makes sure the database really is in WAL mode: some file
// systems cannot do it, and SQLite then silently stays in another mode.
func (db *DB) checkWAL(ctx context.Context) error {
	var mode string
	if err := db.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("open database %s: %w", db.path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("open database %s: journal_mode is %q, not wal (is it on a network file system?)", db.path, mode)
	}
	return nil
}

// Path returns the database's file.
func (db *DB) Path() string { return db.path }

// Close closes the database.
func (db *DB) Close() error {
	var errs []error
	if db.audit != nil {
		errs = append(errs, db.audit.close())
	}
	for _, p := range []*sql.DB{db.r, db.w} {
		if p != nil {
			errs = append(errs, p.Close())
		}
	}
	// Last: closing a descriptor of the file drops every POSIX lock the
	// process holds on it, SQLite's included.
	if db.fd != nil {
		errs = append(errs, db.fd.Close())
	}
	return errors.Join(errs...)
}

// checkFile reports an error when the database file was removed or
// replaced since Open: writes would then go to a file nobody will read.
func (db *DB) checkFile() error {
	// fstat of a descriptor held open is far cheaper than a stat of the
	// path: a file removed, or replaced by a rename over it, has no links.
	fi, err := db.fd.Stat()
	if err != nil {
		return fmt.Errorf("database file: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink == 0 {
		return fmt.Errorf("database file %s was removed or replaced", db.path)
	}
	return nil
}

// migration is one file of package migrations.
type migration struct {
	version int
	name    string
	sql     string
}

func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries { // ReadDir sorts by name
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || path.Ext(e.Name()) != ".sql" {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", e.Name())
		}
		if len(ms) > 0 && v != ms[len(ms)-1].version+1 || len(ms) == 0 && v != 1 {
			return nil, fmt.Errorf("migration %s: versions must count up from 1 without gaps", e.Name())
		}
		b, err := migrations.FS.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	return ms, nil
}

const createMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version INTEGER PRIMARY KEY,
	name    TEXT NOT NULL,
	applied INTEGER NOT NULL
)`

// migrate applies the migrations the database has not seen, each in its
// own transaction together with its record.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	if _, err := db.w.ExecContext(ctx, createMigrations); err != nil {
		return fmt.Errorf("migrate %s: %w", db.path, err)
	}
	current, err := db.version(ctx, db.w)
	if err != nil {
		return err
	}
	if current > len(ms) {
		return newerError(db.path, current, len(ms))
	}
	for _, m := range ms[current:] {
		if err := db.apply(ctx, m); err != nil {
			return fmt.Errorf("migrate %s: %s: %w", db.path, m.name, err)
		}
	}
	return nil
}

func newerError(path string, have, know int) error {
	return fmt.Errorf("database %s has schema version %d, newer than this sallyport knows (%d): use a newer sallyport", path, have, know)
}

func (db *DB) version(ctx context.Context, q *sql.DB) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, "SELECT max(version) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version of %s: %w", db.path, err)
	}
	return int(v.Int64), nil
}

// checkVersion refuses a read-only database whose schema this build does
// not know, or that was never initialized.
func (db *DB) checkVersion(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	v, err := db.version(ctx, db.r)
	if err != nil {
		return fmt.Errorf("%w (is it a sallyport database?)", err)
	}
	if v > len(ms) {
		return newerError(db.path, v, len(ms))
	}
	if v < len(ms) {
		return fmt.Errorf("database %s has schema version %d; open it once with this sallyport (serve) to upgrade it to %d", db.path, v, len(ms))
	}
	return nil
}

func (db *DB) apply(ctx context.Context, m migration) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Another process may have applied it since we looked (the
	// transaction holds the write lock from its start).
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE version = ?", m.version).Scan(&n); err != nil || n > 0 {
		return err
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)",
		m.version, m.name, time.Now().Unix()); err != nil {
		return err
	}
	return tx.Commit()
}
