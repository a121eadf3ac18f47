package sqlite

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/sallyport/sallyport/gateway"
)

// Approvals returns the database's approval store.
//
// Each item is a row of the approvals table: the whole item as JSON in
// item, and beside it the columns the store selects on (state, principal,
// backend, target, the binding and call keys, created, expires, rev), which
// every write derives from the item; a row whose columns do not match its
// item is refused when read. Every write is one BEGIN IMMEDIATE
// transaction on the writer connection that also raises
// counters.approvals_version, whose new value becomes the item's Rev, so
// another process sharing the file sees the change with ApprovalsSince.
func (db *DB) Approvals() gateway.ApprovalStore { return approvalStore{db} }

type approvalStore struct{ db *DB }

// approvalColumns are the columns of an approvals row besides item.
type approvalColumns struct {
	id, state, principal, reviewers, backend, target, binding, callKey string
	created, expires, rev                                              int64
}

func columnsOf(it *gateway.ApprovalItem) approvalColumns {
	return approvalColumns{id: it.ID, state: string(it.State), principal: it.Principal, reviewers: it.Reviewers, backend: it.Backend,
		target: it.Target, binding: bindingKey(it.ApprovalBinding), callKey: callKey(it.ApprovalBinding),
		created: it.Created.UnixMicro(), expires: it.Expires.UnixMicro(), rev: it.Rev}
}

// bindingKey is the binding column: the hex SHA-256 of the binding's seven
// fields, each length-prefixed so that no two bindings share an encoding.
func bindingKey(b gateway.ApprovalBinding) string {
	return keyOf("sallyport approval binding", b.Principal, b.Backend, b.Method, b.Target, b.DefinitionHash,
		b.ArgumentsHash, b.PolicyVersion)
}

// callKey is the call_key column: the same for the fields that make a call
// the same call whatever the tool's definition and the policy's version.
func callKey(b gateway.ApprovalBinding) string {
	return keyOf("sallyport approval call", b.Principal, b.Backend, b.Method, b.Target, b.ArgumentsHash)
}

func keyOf(domain string, fields ...string) string {
	h := sha256.New()
	var n [8]byte
	for _, f := range append([]string{domain}, fields...) {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// check refuses an item the store cannot keep faithfully: no id, an
// unknown state, or text in a field it selects on that is not UTF-8 (the
// JSON in item would not carry it unchanged).
func check(it *gateway.ApprovalItem) error {
	if it.ID == "" {
		return errors.New("the item has no id")
	}
	if !slices.Contains(gateway.ApprovalStates, it.State) {
		return fmt.Errorf("unknown state %q", it.State)
	}
	for _, f := range []struct{ name, v string }{{"id", it.ID}, {"principal", it.Principal}, {"reviewers", it.Reviewers}, {"backend", it.Backend},
		{"method", it.Method}, {"target", it.Target}, {"definition_hash", it.DefinitionHash},
		{"arguments_hash", it.ArgumentsHash}, {"policy_version", it.PolicyVersion}} {
		if !utf8.ValidString(f.v) {
			return fmt.Errorf("%s is not valid UTF-8", f.name)
		}
	}
	return nil
}

// errReadOnly refuses writes to a database opened read-only.
var errReadOnly = errors.New("database is open read-only")

// write runs fn in one write transaction (BEGIN IMMEDIATE, the writer's
// _txlock) and, when fn returns nil, commits it. fn gets the store's next
// revision: counters.approvals_version raised by one.
func (s approvalStore) write(ctx context.Context, fn func(tx *sql.Tx, rev int64) error) error {
	if s.db.w == nil {
		return errReadOnly
	}
	if s.db.fd != nil {
		if err := s.db.checkFile(); err != nil {
			return err
		}
	}
	tx, err := s.db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var rev int64
	err = tx.QueryRowContext(ctx, "UPDATE counters SET value = value + 1 WHERE name = 'approvals_version' RETURNING value").Scan(&rev)
	if errors.Is(err, sql.ErrNoRows) {
		return errors.New("the approvals_version counter is missing")
	}
	if err != nil {
		return err
	}
	if err := fn(tx, rev); err != nil {
		return err
	}
	return tx.Commit()
}

// encode returns the item's JSON and its columns, the item carrying rev.
func encode(it *gateway.ApprovalItem, rev int64) ([]byte, approvalColumns, error) {
	c := *it
	c.Rev = rev
	raw, err := json.Marshal(&c)
	if err != nil {
		return nil, approvalColumns{}, err
	}
	return raw, columnsOf(&c), nil
}

// InsertApproval implements gateway.ApprovalStore.
func (s approvalStore) InsertApproval(ctx context.Context, it *gateway.ApprovalItem, maxPending int) error {
	if it == nil {
		return errors.New("insert approval: no item")
	}
	if err := check(it); err != nil {
		return fmt.Errorf("insert approval: %w", err)
	}
	var rev int64
	err := s.write(ctx, func(tx *sql.Tx, next int64) error {
		if maxPending > 0 {
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM approvals WHERE principal = ? AND state = ?",
				it.Principal, gateway.ApprovalPending).Scan(&n); err != nil {
				return err
			}
			if n >= maxPending {
				return gateway.ErrApprovalLimit
			}
		}
		raw, c, err := encode(it, next)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO approvals (id, state, principal, reviewers, backend, target, binding, call_key,
			created, expires, rev, item) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.id, c.state, c.principal, c.reviewers, c.backend, c.target, c.binding, c.callKey, c.created, c.expires, c.rev, string(raw))
		var se sqlite3.Error
		if errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintPrimaryKey {
			return fmt.Errorf("an approval with id %s exists already", it.ID)
		}
		if err != nil {
			return err
		}
		rev = next
		return nil
	})
	if err != nil {
		return fmt.Errorf("insert approval: %w", err)
	}
	it.Rev = rev
	return nil
}

// UpdateApproval implements gateway.ApprovalStore. fn runs while the
// transaction holds the database's only writer connection: it must be
// quick, and must not use the store or write to the database (the audit
// log included), which would wait for that connection forever.
func (s approvalStore) UpdateApproval(ctx context.Context, id string, fn func(it *gateway.ApprovalItem) error) (*gateway.ApprovalItem, error) {
	var out *gateway.ApprovalItem
	var fnErr error
	err := s.write(ctx, func(tx *sql.Tx, next int64) error {
		it, err := readItem(tx.QueryRowContext(ctx, "SELECT "+itemColumns+" FROM approvals WHERE id = ?", id))
		if err != nil {
			return err
		}
		from := it.State
		if err := fn(it); err != nil {
			fnErr = err
			return err
		}
		if it.State != from && !from.CanMove(it.State) {
			// A safety net under the approvals package's own checks.
			return fmt.Errorf("the update moved the item from %s to %s, which the state machine does not allow", from, it.State)
		}
		if it.ID != id {
			return fmt.Errorf("the update changed the item's id to %q", it.ID)
		}
		if err := check(it); err != nil {
			return err
		}
		raw, c, err := encode(it, next)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE approvals SET state = ?, principal = ?, reviewers = ?, backend = ?, target = ?,
			binding = ?, call_key = ?, created = ?, expires = ?, rev = ?, item = ? WHERE id = ?`,
			c.state, c.principal, c.reviewers, c.backend, c.target, c.binding, c.callKey, c.created, c.expires, c.rev, string(raw), id); err != nil {
			return err
		}
		// What is returned is what was stored, as a read gives it.
		out = new(gateway.ApprovalItem)
		return json.Unmarshal(raw, out)
	})
	if fnErr != nil {
		return nil, fnErr
	}
	if err != nil {
		return nil, fmt.Errorf("update approval %s: %w", id, err)
	}
	return out, nil
}

// itemColumns are an approvals row, in the order of approvalColumns.dest.
const itemColumns = "id, state, principal, reviewers, backend, target, binding, call_key, created, expires, rev, item"

// dest returns the destinations to scan itemColumns into, item last.
func (c *approvalColumns) dest(item any) []any {
	return []any{&c.id, &c.state, &c.principal, &c.reviewers, &c.backend, &c.target, &c.binding, &c.callKey, &c.created,
		&c.expires, &c.rev, item}
}

// readItem reads the one row of itemColumns that row holds;
// ErrApprovalNotFound when there is none.
func readItem(row *sql.Row) (*gateway.ApprovalItem, error) {
	var c approvalColumns
	var raw []byte
	if err := row.Scan(c.dest(&raw)...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, gateway.ErrApprovalNotFound
		}
		return nil, err
	}
	return decodeItem(c, raw)
}

// decodeItem decodes a row's item, refusing one whose columns do not
// match it.
func decodeItem(c approvalColumns, raw []byte) (*gateway.ApprovalItem, error) {
	it := new(gateway.ApprovalItem)
	if err := json.Unmarshal(raw, it); err != nil {
		return nil, fmt.Errorf("approval %s: item: %w", c.id, err)
	}
	if columnsOf(it) != c {
		return nil, fmt.Errorf("approval %s: the row's columns do not match its item (altered outside sallyport?)", c.id)
	}
	return it, nil
}

// Approval implements gateway.ApprovalStore.
func (s approvalStore) Approval(ctx context.Context, id string) (*gateway.ApprovalItem, error) {
	it, err := readItem(s.db.r.QueryRowContext(ctx, "SELECT "+itemColumns+" FROM approvals WHERE id = ?", id))
	if err != nil {
		return nil, fmt.Errorf("read approval %s: %w", id, err)
	}
	return it, nil
}

// Approvals implements gateway.ApprovalStore.
func (s approvalStore) Approvals(ctx context.Context, f gateway.ApprovalFilter) ([]*gateway.ApprovalItem, error) {
	var where []string
	var args []any
	add := func(cond string, v ...any) {
		where = append(where, cond)
		args = append(args, v...)
	}
	if len(f.States) > 0 {
		marks := strings.Repeat(", ?", len(f.States))[2:]
		vs := make([]any, len(f.States))
		for i, st := range f.States {
			vs[i] = string(st)
		}
		add("state IN ("+marks+")", vs...)
	}
	if f.Principal != "" {
		add("principal = ?", f.Principal)
	}
	if v := f.VisibleTo; v != nil && !v.All {
		// The reviewers of the item's group, and its requester.
		cond := "principal = ?"
		vs := []any{v.Principal}
		if len(v.Groups) > 0 {
			cond += " OR reviewers IN (" + strings.Repeat(", ?", len(v.Groups))[2:] + ")"
			for _, g := range v.Groups {
				vs = append(vs, g)
			}
		}
		add("("+cond+")", vs...)
	}
	if f.Backend != "" {
		add("backend = ?", f.Backend)
	}
	if f.Target != "" {
		add("target = ?", f.Target)
	}
	if f.Binding != nil {
		add("binding = ?", bindingKey(*f.Binding))
	}
	if f.CallOf != nil {
		add("call_key = ?", callKey(*f.CallOf))
	}
	if !f.ExpiresBefore.IsZero() {
		add("expires < ?", f.ExpiresBefore.UnixMicro())
	}
	q := "SELECT " + itemColumns + " FROM approvals"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created DESC, id"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	items, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read approvals: %w", err)
	}
	return items, nil
}

func (s approvalStore) query(ctx context.Context, q string, args ...any) ([]*gateway.ApprovalItem, error) {
	rows, err := s.db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*gateway.ApprovalItem
	var c approvalColumns
	var raw sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(c.dest(&raw)...); err != nil {
			return nil, err
		}
		it, err := decodeItem(c, raw)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// ApprovalsSince implements gateway.ApprovalStore. The items and the
// revision come from one statement, so from one snapshot of the database:
// the items hold every change up to the revision returned.
func (s approvalStore) ApprovalsSince(ctx context.Context, rev int64) ([]*gateway.ApprovalItem, int64, error) {
	// The LEFT JOIN gives one row of empty columns when no item changed.
	rows, err := s.db.r.QueryContext(ctx, `SELECT c.value, coalesce(a.id, ''), coalesce(a.state, ''),
		coalesce(a.principal, ''), coalesce(a.reviewers, ''), coalesce(a.backend, ''), coalesce(a.target, ''), coalesce(a.binding, ''),
		coalesce(a.call_key, ''), coalesce(a.created, 0), coalesce(a.expires, 0), coalesce(a.rev, 0), coalesce(a.item, '')
		FROM counters c LEFT JOIN approvals a ON a.rev > ? WHERE c.name = 'approvals_version' ORDER BY a.rev`, rev)
	if err != nil {
		return nil, 0, fmt.Errorf("read approvals since %d: %w", rev, err)
	}
	defer rows.Close()
	var out []*gateway.ApprovalItem
	var current int64
	var c approvalColumns
	var raw sql.RawBytes
	seen := false
	for rows.Next() {
		seen = true
		if err := rows.Scan(append([]any{&current}, c.dest(&raw)...)...); err != nil {
			return nil, 0, fmt.Errorf("read approvals since %d: %w", rev, err)
		}
		if c.id == "" {
			continue
		}
		it, err := decodeItem(c, raw)
		if err != nil {
			return nil, 0, fmt.Errorf("read approvals since %d: %w", rev, err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("read approvals since %d: %w", rev, err)
	}
	if !seen {
		return nil, 0, fmt.Errorf("read approvals since %d: the approvals_version counter is missing", rev)
	}
	return out, current, nil
}

// CountApprovals implements gateway.ApprovalStore.
func (s approvalStore) CountApprovals(ctx context.Context, principal string) (map[gateway.ApprovalState]int, error) {
	q, args := "SELECT state, count(*) FROM approvals GROUP BY state", []any(nil)
	if principal != "" {
		q, args = "SELECT state, count(*) FROM approvals WHERE principal = ? GROUP BY state", []any{principal}
	}
	rows, err := s.db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("count approvals: %w", err)
	}
	defer rows.Close()
	out := map[gateway.ApprovalState]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("count approvals: %w", err)
		}
		out[gateway.ApprovalState(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count approvals: %w", err)
	}
	return out, nil
}

var _ gateway.ApprovalStore = approvalStore{}
