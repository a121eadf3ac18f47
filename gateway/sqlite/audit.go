package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sallyport/sallyport/gateway"
	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// maxBatch caps the queue entries (Append or Enqueue calls) one group
// commit writes.
const maxBatch = 512

// Audit returns the database's audit log.
func (db *DB) Audit() gateway.AuditLog {
	db.once.Do(func() { db.audit = &auditLog{db: db} })
	return db.audit
}

// auditLog implements gateway.AuditLog. Appends are group-committed: one
// caller at a time leads, writing everything queued so far in one
// transaction; callers arriving meanwhile queue up, and when the leader is
// done it hands the lead to the first of them still waiting. Enqueued
// rows ride along with the next commit; when only they are queued, a
// goroutine leads. The chain's head is read inside each write
// transaction, so several processes can append to one file and still
// form one chain.
type auditLog struct {
	db *DB

	mu      sync.Mutex // guards queue and leading
	queue   []*pending
	leading bool
	armed   bool         // timer is set to flush enqueued rows
	timer   *time.Timer  // flushQueued
	queued  int          // rows of the async entries in queue
	shut    bool         // Close was called: refuse writes
	failed  atomic.Bool  // the last commit failed
	lost    atomic.Int64 // enqueued rows dropped, see retain

	connMu sync.Mutex // serializes commits and pruning
	insert *sql.Stmt  // prepared on the writer pool, shared with the token store
	head   *sql.Stmt  // headSQL, likewise
	closed bool
}

type pending struct {
	recs  []*gateway.AuditRecord
	async bool          // Enqueue: nobody waits
	err   error         // set before done is closed
	done  chan struct{} // closed when written or failed
	lead  chan struct{} // receives when this caller is to lead
}

const insertSQL = `INSERT INTO audit (seq, ts, session, transport, protocol_version, client_name, client_version,
	principal, token_id, direction, kind, method, message_id, ref, backend, target, arguments, decision, reasons,
	rules, policy_version, outcome, error_code, error, latency_us, bytes, skipped, prev_hash, hash, mac, policy_input, findings,
	approval) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`

// errClosed refuses writes after Close.
var errClosed = fmt.Errorf("%w: database is closed", gateway.ErrAuditUnavailable)

// Append implements gateway.AuditLog.
func (l *auditLog) Append(ctx context.Context, recs ...*gateway.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	if l.db.w == nil {
		return fmt.Errorf("%w: database is open read-only", gateway.ErrAuditUnavailable)
	}
	return l.wait(&pending{recs: recs, done: make(chan struct{}), lead: make(chan struct{}, 1)})
}

// wait queues p, which a caller waits for, leads when it is its turn, and
// returns p's outcome.
func (l *auditLog) wait(p *pending) error {
	l.mu.Lock()
	if l.shut {
		l.mu.Unlock()
		return errClosed
	}
	l.queue = append(l.queue, p)
	if !l.leading {
		l.leading = true
		l.mu.Unlock()
		l.lead(p)
	} else {
		l.mu.Unlock()
	}
	for {
		select {
		case <-p.done:
			return p.err
		case <-p.lead:
			l.lead(p)
		}
	}
}

// Enqueue implements gateway.AuditLog.
func (l *auditLog) Enqueue(recs ...*gateway.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	if l.db.w == nil {
		return fmt.Errorf("%w: database is open read-only", gateway.ErrAuditUnavailable)
	}
	l.mu.Lock()
	switch {
	case l.shut:
		l.mu.Unlock()
		return errClosed
	case l.failed.Load() || l.queued+len(recs) > maxQueued:
		// Writes are failing (find out now, and refuse if they still do),
		// or too much waits already: this caller waits too.
		l.mu.Unlock()
		return l.Append(context.Background(), recs...)
	}
	l.queue = append(l.queue, &pending{recs: recs, async: true, done: make(chan struct{})})
	l.queued += len(recs)
	if !l.leading && !l.armed {
		// Not written at once: the next request's commit takes it along
		// (one transaction instead of two), or, if none comes, the
		// timer's within flushDelay.
		l.armed = true
		if l.timer == nil {
			l.timer = time.AfterFunc(flushDelay, l.flushQueued)
		} else {
			l.timer.Reset(flushDelay)
		}
	}
	l.mu.Unlock()
	return nil
}

// flushDelay is the longest an enqueued row waits for a commit to ride
// along with.
const flushDelay = 5 * time.Millisecond

// maxQueued bounds the enqueued rows waiting for a commit; past it,
// Enqueue waits as Append does.
const maxQueued = 10000

// flushQueued commits what is queued, unless a leader is at it already.
func (l *auditLog) flushQueued() {
	l.mu.Lock()
	l.armed = false
	if l.leading || len(l.queue) == 0 || l.shut {
		l.mu.Unlock()
		return
	}
	l.leading = true
	l.mu.Unlock()
	l.lead(nil)
}

// Flush implements gateway.AuditLog.
func (l *auditLog) Flush(ctx context.Context) error {
	if l.db.w == nil {
		return nil
	}
	l.mu.Lock()
	idle := !l.leading && len(l.queue) == 0
	l.mu.Unlock()
	if idle {
		if l.failed.Load() {
			return fmt.Errorf("%w: the last write failed", gateway.ErrAuditUnavailable)
		}
		return nil
	}
	// An empty entry behind the queued rows: written when they are.
	return l.wait(&pending{done: make(chan struct{}), lead: make(chan struct{}, 1)})
}

// lead commits batches from the head of the queue until it is empty or a
// waiting caller takes the lead over. self is the caller's own entry (nil
// for the timer): once that is written and only enqueued rows remain, a
// caller hands them to a goroutine instead of going on leading for others.
func (l *auditLog) lead(self *pending) {
	for {
		l.mu.Lock()
		batch := l.queue
		if len(batch) > maxBatch {
			batch = batch[:maxBatch:maxBatch]
		}
		l.queue = l.queue[len(batch):]
		for _, q := range batch {
			if q.async {
				l.queued -= len(q.recs)
			}
		}
		l.mu.Unlock()

		err := l.commit(batch)
		l.failed.Store(err != nil)
		var retry []*pending
		for _, q := range batch {
			if err != nil && q.async {
				retry = append(retry, q) // kept for the next commit
				continue
			}
			q.err = err
			close(q.done)
		}

		l.mu.Lock()
		if len(retry) > 0 {
			retry = l.retain(retry)
			for _, q := range retry {
				l.queued += len(q.recs)
			}
			l.queue = append(retry, l.queue...)
		}
		if len(l.queue) == 0 {
			l.leading = false
			l.queue = nil
			l.mu.Unlock()
			return
		}
		for _, q := range l.queue {
			if !q.async {
				q.lead <- struct{}{}
				l.mu.Unlock()
				return
			}
		}
		if err != nil {
			// Only enqueued rows wait, and writes fail: they stay queued
			// until the next Append, Enqueue or Flush tries again.
			l.leading = false
			l.mu.Unlock()
			return
		}
		if self != nil && isDone(self) {
			// The caller's own row is written: a goroutine carries on.
			l.mu.Unlock()
			go l.lead(nil)
			return
		}
		l.mu.Unlock() // only enqueued rows wait: go on
	}
}

func isDone(p *pending) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// maxRetained bounds the enqueued rows kept while writes fail.
const maxRetained = 10000

// retain returns the enqueued entries to keep for another try, dropping
// (and counting) the newest beyond maxRetained rows. l.mu is held.
func (l *auditLog) retain(ps []*pending) []*pending {
	n := l.queued
	for i, q := range ps {
		if n += len(q.recs); n > maxRetained {
			for _, d := range ps[i:] {
				l.lost.Add(int64(len(d.recs)))
				close(d.done)
			}
			return ps[:i]
		}
	}
	return ps
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
	// BEGIN IMMEDIATE (the writer's _txlock): the write lock from the start.
	tx, err := l.db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	insert := tx.StmtContext(ctx, l.insert)
	var seq int64
	var hash string
	if err := tx.StmtContext(ctx, l.head).QueryRowContext(ctx).Scan(&seq, &hash); err != nil {
		return fmt.Errorf("read chain head: %w", err)
	}
	key, every := l.db.opts.AuditKey, l.db.opts.CheckpointEvery
	for _, p := range batch {
		for _, r := range p.recs {
			seq++
			r.Sanitize()
			r.Seq, r.PrevHash = seq, hash
			r.Hash = r.ComputeHash()
			r.MAC = ""
			if len(key) > 0 && seq%every == 0 {
				r.MAC = gateway.CheckpointMAC(key, seq, r.Hash)
			}
			hash = r.Hash
			if _, err := insert.ExecContext(ctx, seq, r.Time.UnixMicro(), r.Session, r.Transport, r.ProtocolVersion,
				r.ClientName, r.ClientVersion, r.Principal, r.TokenID, r.Direction, r.Kind, r.Method, r.MessageID,
				r.Ref, r.Backend, r.Target, r.Arguments, r.Decision, gateway.AuditListText(r.Reasons), gateway.AuditListText(r.Rules),
				r.PolicyVersion, r.Outcome, r.ErrorCode, r.Error, r.LatencyMicros, r.Bytes, r.Skipped,
				r.PrevHash, r.Hash, r.MAC, r.PolicyInput, r.Findings, r.Approval); err != nil {
				return fmt.Errorf("insert: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// open prepares the insert on the writer pool, once. No connection is
// held between commits: the token store writes through the same pool.
func (l *auditLog) open(ctx context.Context) error {
	if l.closed {
		return errors.New("database is closed")
	}
	if l.insert != nil {
		return nil
	}
	ins, err := l.db.w.PrepareContext(ctx, insertSQL)
	if err != nil {
		return err
	}
	hd, err := l.db.w.PrepareContext(ctx, headSQL)
	if err != nil {
		ins.Close()
		return err
	}
	l.insert, l.head = ins, hd
	return nil
}

// headSQL reads the seq and hash the next row chains onto: the last row's,
// else the retention anchor's, else 0 and the genesis hash.
const headSQL = `SELECT
	coalesce((SELECT seq FROM audit ORDER BY seq DESC LIMIT 1), (SELECT seq FROM audit_anchor WHERE id = 1), 0),
	coalesce((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), (SELECT hash FROM audit_anchor WHERE id = 1), '` + gateway.GenesisHash + `')`

func (l *auditLog) close() error {
	ferr := l.Flush(context.Background()) // a last try for what is queued
	l.mu.Lock()
	l.shut = true
	if l.timer != nil {
		l.timer.Stop()
	}
	left := l.queued
	l.mu.Unlock()
	l.connMu.Lock()
	defer l.connMu.Unlock()
	l.closed = true
	var errs []error
	if ferr != nil {
		errs = append(errs, ferr)
	}
	if lost := l.lost.Load() + int64(left); lost > 0 {
		errs = append(errs, fmt.Errorf("%w: %d queued rows were never written", gateway.ErrAuditUnavailable, lost))
	}
	if l.insert != nil {
		errs = append(errs, l.insert.Close(), l.head.Close())
	}
	return errors.Join(errs...)
}

// Head implements gateway.AuditLog.
func (l *auditLog) Head(ctx context.Context) (int64, string, error) {
	var seq int64
	var hash string
	if err := l.db.r.QueryRowContext(ctx, headSQL).Scan(&seq, &hash); err != nil {
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

func (l *auditLog) pruneChunk(ctx context.Context, before time.Time) (int64, error) {
	l.connMu.Lock()
	defer l.connMu.Unlock()
	if l.closed {
		return 0, errors.New("database is closed")
	}
	tx, err := l.db.w.BeginTx(ctx, nil) // BEGIN IMMEDIATE
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	// The last row to delete: older than before, within the chunk, and
	// never the newest row (the chain's head stays in the table).
	var cut sql.NullInt64
	if err := tx.QueryRowContext(ctx, `SELECT max(seq) FROM (SELECT seq FROM audit WHERE ts < ? AND seq < (SELECT max(seq) FROM audit) ORDER BY seq LIMIT ?)`,
		before.UnixMicro(), pruneChunk).Scan(&cut); err != nil {
		return 0, err
	}
	if !cut.Valid {
		return 0, tx.Commit()
	}
	var hash string
	if err := tx.QueryRowContext(ctx, "SELECT hash FROM audit WHERE seq = ?", cut.Int64).Scan(&hash); err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, "DELETE FROM audit WHERE seq <= ?", cut.Int64)
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	mac := ""
	if key := l.db.opts.AuditKey; len(key) > 0 {
		mac = gateway.AnchorMAC(key, cut.Int64, hash)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO audit_anchor (id, seq, hash, mac, ts) VALUES (1, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac, ts = excluded.ts`,
		cut.Int64, hash, mac, time.Now().UnixMicro()); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return n, nil
}

// selectSQL reads a row as its integer columns and one JSON array of its
// text columns (textColumns, in that order): SQLite builds the array in C,
// which is several times cheaper than handing over 26 columns one by one.
const selectSQL = `SELECT seq, ts, ref, error_code, latency_us, bytes, skipped,
	json_array(session, transport, protocol_version, client_name, client_version, principal, token_id,
	direction, kind, method, message_id, backend, target, arguments, decision, reasons, rules, policy_version,
	outcome, error, prev_hash, hash, mac, policy_input, findings, approval) FROM audit`

// textColumns is the number of elements of selectSQL's JSON array.
const textColumns = 26

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
	if f.Approval != "" {
		add("approval = ? AND approval != ''", f.Approval) // the partial index audit_approval
	}
	if f.AfterSeq > 0 {
		add("seq > ?", f.AfterSeq)
	}
	if f.ThroughSeq > 0 {
		add("seq <= ?", f.ThroughSeq)
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
	var text sql.RawBytes
	var fields [textColumns]string
	for rows.Next() {
		if err := rows.Scan(&r.Seq, &ts, &r.Ref, &r.ErrorCode, &r.LatencyMicros, &r.Bytes, &r.Skipped, &text); err != nil {
			return fmt.Errorf("read audit log: %w", err)
		}
		n, bad := 0, false
		err := jsonrpc.EachElement(json.RawMessage(text), func(i int, v json.RawMessage) bool {
			if i >= textColumns {
				bad = true
				return false
			}
			fields[i], bad = jsonrpc.Unquote(v)
			bad = !bad
			n++
			return !bad
		})
		if err != nil || bad || n != textColumns {
			return fmt.Errorf("read audit log: row %d: a text column does not read back as text", r.Seq)
		}
		r.Time = time.UnixMicro(ts).UTC()
		r.Session, r.Transport, r.ProtocolVersion, r.ClientName, r.ClientVersion = fields[0], fields[1], fields[2], fields[3], fields[4]
		r.Principal, r.TokenID, r.Direction, r.Kind, r.Method, r.MessageID = fields[5], fields[6], fields[7], fields[8], fields[9], fields[10]
		r.Backend, r.Target, r.Arguments, r.Decision = fields[11], fields[12], fields[13], fields[14]
		r.PolicyVersion, r.Outcome, r.Error, r.PrevHash, r.Hash, r.MAC = fields[17], fields[18], fields[19], fields[20], fields[21], fields[22]
		r.PolicyInput, r.Findings, r.Approval = fields[23], fields[24], fields[25]
		if r.Reasons, err = gateway.AppendAuditList(r.Reasons[:0], fields[15]); err != nil {
			return fmt.Errorf("read audit log: row %d: reasons: %w", r.Seq, err)
		}
		if r.Rules, err = gateway.AppendAuditList(r.Rules[:0], fields[16]); err != nil {
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

var _ gateway.AuditLog = (*auditLog)(nil)
