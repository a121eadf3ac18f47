package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3"

	"github.com/sallyport/sallyport/gateway"
)

// Users returns the database's reviewer account store.
func (db *DB) Users() gateway.UserStore { return userStore{db} }

type userStore struct{ db *DB }

// InsertUser implements gateway.UserStore.
func (s userStore) InsertUser(ctx context.Context, rec gateway.UserRecord) error {
	if s.db.w == nil {
		return errors.New("insert user: database is open read-only")
	}
	return s.write(ctx, func(tx *sql.Tx) (bool, error) {
		var disabled any // NULL while enabled
		if rec.Disabled != nil {
			disabled = rec.Disabled.Unix()
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO users (username, groups, password_hash, created, updated, disabled) VALUES (?, ?, ?, ?, ?, ?)",
			rec.Username, gateway.AuditListText(rec.Groups), rec.PasswordHash, rec.Created.Unix(), rec.Updated.Unix(), disabled)
		var se sqlite3.Error
		if errors.As(err, &se) && se.Code == sqlite3.ErrConstraint {
			return false, gateway.ErrUserExists
		}
		return err == nil, err
	})
}

// SetPassword implements gateway.UserStore.
func (s userStore) SetPassword(ctx context.Context, username, hash string, at time.Time) error {
	if s.db.w == nil {
		return errors.New("set password: database is open read-only")
	}
	return s.write(ctx, func(tx *sql.Tx) (bool, error) {
		res, err := tx.ExecContext(ctx, "UPDATE users SET password_hash = ?, updated = ? WHERE username = ?", hash, at.Unix(), username)
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		if err == nil && n == 0 {
			err = gateway.ErrUserNotFound
		}
		return err == nil, err
	})
}

// SetDisabled implements gateway.UserStore.
func (s userStore) SetDisabled(ctx context.Context, username string, disabled bool, at time.Time) error {
	if s.db.w == nil {
		return errors.New("set disabled: database is open read-only")
	}
	return s.write(ctx, func(tx *sql.Tx) (bool, error) {
		var was sql.NullInt64
		err := tx.QueryRowContext(ctx, "SELECT disabled FROM users WHERE username = ?", username).Scan(&was)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return false, gateway.ErrUserNotFound
		case err != nil:
			return false, err
		case was.Valid == disabled:
			return false, nil // already so: keep the first time
		}
		var v any // NULL: enabled
		if disabled {
			v = at.Unix()
		}
		_, err = tx.ExecContext(ctx, "UPDATE users SET disabled = ?, updated = ? WHERE username = ?", v, at.Unix(), username)
		return err == nil, err
	})
}

// write runs fn in a transaction that also bumps users_version when fn
// reports a change.
func (s userStore) write(ctx context.Context, fn func(*sql.Tx) (changed bool, err error)) error {
	tx, err := s.db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	changed, err := fn(tx)
	if err != nil || !changed {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE counters SET value = value + 1 WHERE name = 'users_version'"); err != nil {
		return err
	}
	return tx.Commit()
}

const userColumns = "username, groups, password_hash, created, updated, disabled"

// scanUser reads one row of userColumns.
func scanUser(scan func(...any) error) (gateway.UserRecord, error) {
	var r gateway.UserRecord
	var groups string
	var created, updated int64
	var disabled sql.NullInt64
	if err := scan(&r.Username, &groups, &r.PasswordHash, &created, &updated, &disabled); err != nil {
		return gateway.UserRecord{}, err
	}
	var err error
	if r.Groups, err = gateway.AppendAuditList([]string{}, groups); err != nil {
		return gateway.UserRecord{}, fmt.Errorf("%s: groups: %w", r.Username, err)
	}
	r.Created = time.Unix(created, 0).UTC()
	r.Updated = time.Unix(updated, 0).UTC()
	if disabled.Valid {
		t := time.Unix(disabled.Int64, 0).UTC()
		r.Disabled = &t
	}
	return r, nil
}

// User implements gateway.UserStore.
func (s userStore) User(ctx context.Context, username string) (gateway.UserRecord, error) {
	r, err := scanUser(s.db.r.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE username = ?", username).Scan)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return gateway.UserRecord{}, gateway.ErrUserNotFound
	case err != nil:
		return gateway.UserRecord{}, fmt.Errorf("read user: %w", err)
	}
	return r, nil
}

// Users implements gateway.UserStore.
func (s userStore) Users(ctx context.Context) ([]gateway.UserRecord, error) {
	rows, err := s.db.r.QueryContext(ctx, "SELECT "+userColumns+" FROM users ORDER BY username")
	if err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	defer rows.Close()
	var out []gateway.UserRecord
	for rows.Next() {
		r, err := scanUser(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("read users: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read users: %w", err)
	}
	return out, nil
}

// UsersVersion implements gateway.UserStore.
func (s userStore) UsersVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.db.r.QueryRowContext(ctx, "SELECT value FROM counters WHERE name = 'users_version'").Scan(&v); err != nil {
		return 0, fmt.Errorf("read users version: %w", err)
	}
	return v, nil
}

var _ gateway.UserStore = userStore{}
