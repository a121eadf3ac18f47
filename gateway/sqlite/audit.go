package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// maxBatch caps the rows one group commit writes.
const maxBatch = 512

// Audit returns the database's audit log.
func (db *DB) Audit() gateway.AuditLog {
	db.once.Do(func() { db.audit = &auditLog{db: db} })
	return db.audit
}

// auditLog implements gateway.AuditLog. Appends are group-committed: the
// first caller to find no commit in progress becomes the leader and writes
// everything queued so far in one transaction; callers arriving meanwhile
// queue up and the next leader, the first of them, writes them all at once.
// The chain's head is read inside each write transaction, so several
// processes can append to one file and still form one chain.
type auditLog struct {
	db *DB

	mu      sync.Mutex // guards queue and leading
	queue   []*pending
	leading bool

	connMu sync.Mutex // serializes use of conn (commits, pruning)
	conn   *sql.Conn
	insert *sql.Stmt
	closed bool
}

type pending struct {
	recs []*gateway.AuditRecord
	err  error
	done chan struct{} // closed when written or failed
	lead chan struct{} // closed when this caller is to lead the next commit
}

const insertSQL = `INSERT INTO audit (seq, ts, session, transport, protocol_version, client_name, client_version,
	principal, token_id, direction, kind, method, message_id, ref, backend, target, arguments, decision, reasons,
	rules, policy_version, outcome, error_code, error, latency_us, bytes, skipped, prev_hash, hash, mac)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

// Append implements gateway.AuditLog.
func (l *auditLog) Append(ctx context.Context, recs ...*gateway.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	if l.db.w == nil {
		return fmt.Errorf("%w: database is open read-only", gateway.ErrAuditUnavailable)
	}
	p := &pending{recs: recs, done: make(chan struct{}), lead: make(chan struct{})}
	l.mu.Lock()
	l.queue = append(l.queue, p)
	if l.leading {
		l.mu.Unlock()
		select {
		case <-p.done:
			return p.err
		case <-p.lead:
		}
	} else {
		l.leading = true
		l.mu.Unlock()
	}
	// Leader: write what is queued (p included), then hand over.
	l.mu.Lock()
	batch := l.queue
	if len(batch) > maxBatch {
		batch = batch[:maxBatch:maxBatch]
	}
	l.queue = l.queue[len(batch):]
	l.mu.Unlock()

	err := l.commit(batch)
	for _, q := range batch {
		q.err = err
		close(q.done)
	}

	l.mu.Lock()
	if len(l.queue) > 0 {
		close(l.queue[0].lead)
	} else {
		l.leading = false
		l.queue = nil
	}
	l.mu.Unlock()
	<-p.done
	return p.err
}

// commit writes the rows of batch in one transaction, chaining them onto
// the log's current head.
func (l *auditLog) commit(batch []*pending) (err error) {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	defer func() {
		if err != nil {
			for _, p := range batch {
				for _, r := range p.recs {
					r.Seq, r.PrevHash, r.Hash, r.MAC = 0, "", "", ""
				}
			}
			err = fmt.Errorf("%w: %w", gateway.ErrAuditUnavailable, err)
		}
	}()
	ctx := context.Background()
	if err := l.open(ctx); err != nil {
		return err
	}
	if err := l.db.checkFile(); err != nil {
		return err
	}
	if _, err := l.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			l.conn.ExecContext(ctx, "ROLLBACK")
		}
	}()
	seq, hash, err := head(ctx, l.conn)
	if err != nil {
		return err
	}
	key, every := l.db.opts.AuditKey, l.db.opts.CheckpointEvery
	for _, p := range batch {
		for _, r := range p.recs {
			seq++
			r.Seq, r.PrevHash = seq, hash
			r.Hash = r.ComputeHash()
			r.MAC = ""
			if len(key) > 0 && seq%every == 0 {
				r.MAC = gateway.CheckpointMAC(key, seq, r.Hash)
			}
			hash = r.Hash
			if _, err := l.insert.ExecContext(ctx, seq, r.Time.UnixMicro(), r.Session, r.Transport, r.ProtocolVersion,
				r.ClientName, r.ClientVersion, r.Principal, r.TokenID, r.Direction, r.Kind, r.Method, r.MessageID,
				r.Ref, r.Backend, r.Target, r.Arguments, r.Decision, encodeList(r.Reasons), encodeList(r.Rules),
				r.PolicyVersion, r.Outcome, r.ErrorCode, r.Error, r.LatencyMicros, r.Bytes, r.Skipped,
				r.PrevHash, r.Hash, r.MAC); err != nil {
				return fmt.Errorf("insert: %w", err)
			}
		}
	}
	if _, err := l.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	committed = true
	return nil
}

// open takes the writer connection and prepares the insert, once.
func (l *auditLog) open(ctx context.Context) error {
	if l.closed {
		return errors.New("database is closed")
	}
	if l.conn != nil {
		return nil
	}
	conn, err := l.db.w.Conn(ctx)
	if err != nil {
		return err
	}
	ins, err := conn.PrepareContext(ctx, insertSQL)
	if err != nil {
		conn.Close()
		return err
	}
	l.conn, l.insert = conn, ins
	return nil
}

func (l *auditLog) close() error {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	l.closed = true
	if l.conn == nil {
		return nil
	}
	l.insert.Close()
	return l.conn.Close()
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// head returns the seq and hash the next row chains onto: the last row's,
// else the anchor's, else 0 and the genesis hash.
func head(ctx context.Context, q querier) (int64, string, error) {
	var seq int64
	var hash string
	err := q.QueryRowContext(ctx, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		err = q.QueryRowContext(ctx, "SELECT seq, hash FROM audit_anchor WHERE id = 1").Scan(&seq, &hash)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, gateway.GenesisHash, nil
		}
	}
	if err != nil {
		return 0, "", fmt.Errorf("read chain head: %w", err)
	}
	return seq, hash, nil
}

// Anchor implements gateway.AuditLog.
func (l *auditLog) Anchor(ctx context.Context) (gateway.AuditAnchor, error) {
	var a gateway.AuditAnchor
	var ts int64
	err := l.db.r.QueryRowContext(ctx, "SELECT seq, hash, mac, ts FROM audit_anchor WHERE id = 1").Scan(&a.Seq, &a.Hash, &a.MAC, &ts)
	if errors.Is(err, sql.ErrNoRows) {
		return gateway.AuditAnchor{Hash: gateway.GenesisHash}, nil
	}
	if err != nil {
		return a, fmt.Errorf("read audit anchor: %w", err)
	}
	a.Time = time.UnixMicro(ts).UTC()
	return a, nil
}

// pruneChunk bounds the rows one pruning transaction deletes, so the write
// lock is never held long.
const pruneChunk = 5000

// Prune implements gateway.AuditLog.
func (l *auditLog) Prune(ctx context.Context, before time.Time) (int64, error) {
	if l.db.w == nil {
		return 0, errors.New("prune audit log: database is open read-only")
	}
	var total int64
	for {
		n, err := l.pruneChunk(ctx, before)
		total += n
		if err != nil {
			return total, fmt.Errorf("prune audit log: %w", err)
		}
		if n < pruneChunk {
			return total, nil
		}
	}
}

func (l *auditLog) pruneChunk(ctx context.Context, before time.Time) (n int64, err error) {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if err := l.open(ctx); err != nil {
		return 0, err
	}
	if _, err := l.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			l.conn.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	// The last row to delete: older than before, within the chunk, and
	// never the newest row (the chain's head stays in the table).
	var cut sql.NullInt64
	if err := l.conn.QueryRowContext(ctx, `SELECT max(seq) FROM (SELECT seq FROM audit WHERE ts < ? AND seq < (SELECT max(seq) FROM audit) ORDER BY seq LIMIT ?)`,
		before.UnixMicro(), pruneChunk).Scan(&cut); err != nil {
		return 0, err
	}
	if !cut.Valid {
		_, err := l.conn.ExecContext(ctx, "COMMIT")
		return 0, err
	}
	var hash string
	if err := l.conn.QueryRowContext(ctx, "SELECT hash FROM audit WHERE seq = ?", cut.Int64).Scan(&hash); err != nil {
		return 0, err
	}
	res, err := l.conn.ExecContext(ctx, "DELETE FROM audit WHERE seq <= ?", cut.Int64)
	if err != nil {
		return 0, err
	}
	n, _ = res.RowsAffected()
	mac := ""
	if key := l.db.opts.AuditKey; len(key) > 0 {
		mac = gateway.CheckpointMAC(key, cut.Int64, hash)
	}
	if _, err := l.conn.ExecContext(ctx, `INSERT INTO audit_anchor (id, seq, hash, mac, ts) VALUES (1, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac, ts = excluded.ts`,
		cut.Int64, hash, mac, time.Now().UnixMicro()); err != nil {
		return 0, err
	}
	if _, err := l.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return 0, err
	}
	return n, nil
}

const selectSQL = `SELECT seq, ts, session, transport, protocol_version, client_name, client_version,
	principal, token_id, direction, kind, method, message_id, ref, backend, target, arguments, decision, reasons,
	rules, policy_version, outcome, error_code, error, latency_us, bytes, skipped, prev_hash, hash, mac FROM audit`

// Scan implements gateway.AuditLog.
func (l *auditLog) Scan(ctx context.Context, f gateway.AuditFilter, fn func(r *gateway.AuditRecord) error) error {
	var where []string
	var args []any
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if !f.Since.IsZero() {
		add("ts >= ?", f.Since.UnixMicro())
	}
	if !f.Until.IsZero() {
		add("ts < ?", f.Until.UnixMicro())
	}
	if f.Principal != "" {
		add("principal = ?", f.Principal)
	}
	if f.Backend != "" {
		add("backend = ?", f.Backend)
	}
	if f.Target != "" {
		add("target = ?", f.Target)
	}
	if f.Method != "" {
		add("method = ?", f.Method)
	}
	if f.Decision != "" {
		add("decision = ?", f.Decision)
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	q := selectSQL
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := l.db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var r gateway.AuditRecord
	var ts int64
	var reasons, rules string
	for rows.Next() {
		if err := rows.Scan(&r.Seq, &ts, &r.Session, &r.Transport, &r.ProtocolVersion, &r.ClientName, &r.ClientVersion,
			&r.Principal, &r.TokenID, &r.Direction, &r.Kind, &r.Method, &r.MessageID, &r.Ref, &r.Backend, &r.Target,
			&r.Arguments, &r.Decision, &reasons, &rules, &r.PolicyVersion, &r.Outcome, &r.ErrorCode, &r.Error,
			&r.LatencyMicros, &r.Bytes, &r.Skipped, &r.PrevHash, &r.Hash, &r.MAC); err != nil {
			return fmt.Errorf("read audit log: %w", err)
		}
		r.Time = time.UnixMicro(ts).UTC()
		if r.Reasons, err = decodeList(reasons, r.Reasons[:0]); err != nil {
			return fmt.Errorf("read audit log: row %d: reasons: %w", r.Seq, err)
		}
		if r.Rules, err = decodeList(rules, r.Rules[:0]); err != nil {
			return fmt.Errorf("read audit log: row %d: rules: %w", r.Seq, err)
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	return nil
}

// encodeList stores a list as a JSON array, "" when empty.
func encodeList(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	b := []byte{'['}
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, jsonrpc.Quote(v)...)
	}
	return string(append(b, ']'))
}

// decodeList reads what encodeList wrote, appending to dst.
func decodeList(s string, dst []string) ([]string, error) {
	if s == "" {
		return dst, nil
	}
	var bad bool
	err := jsonrpc.EachElement([]byte(s), func(_ int, v json.RawMessage) bool {
		str, ok := jsonrpc.Unquote(v)
		bad = !ok
		dst = append(dst, str)
		return ok
	})
	if err == nil && bad {
		err = errors.New("not a list of strings")
	}
	return dst, err
}

var _ gateway.AuditLog = (*auditLog)(nil)
