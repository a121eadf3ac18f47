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

// Tokens returns the database's client token store.
func (db *DB) Tokens() gateway.TokenStore { return tokenStore{db} }

type tokenStore struct{ db *DB }

// InsertToken implements gateway.TokenStore.
func (s tokenStore) InsertToken(ctx context.Context, rec gateway.TokenRecord) error {
	if s.db.w == nil {
		return errors.New("insert token: database is open read-only")
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		var revoked any // NULL while valid
		if rec.Revoked != nil {
			revoked = rec.Revoked.Unix()
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO tokens (id, principal, groups, hash, created, revoked) VALUES (?, ?, ?, ?, ?, ?)",
			rec.ID, rec.Principal, gateway.AuditListText(rec.Groups), rec.Hash, rec.Created.Unix(), revoked)
		var se sqlite3.Error
		if errors.As(err, &se) && se.Code == sqlite3.ErrConstraint {
			return gateway.ErrTokenExists
		}
		return err
	})
}

// RevokeToken implements gateway.TokenStore.
func (s tokenStore) RevokeToken(ctx context.Context, id string, at time.Time) error {
	if s.db.w == nil {
		return errors.New("revoke token: database is open read-only")
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		var revoked sql.NullInt64
		err := tx.QueryRowContext(ctx, "SELECT revoked FROM tokens WHERE id = ?", id).Scan(&revoked)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return gateway.ErrTokenNotFound
		case err != nil || revoked.Valid:
			return err
		}
		_, err = tx.ExecContext(ctx, "UPDATE tokens SET revoked = ? WHERE id = ?", at.Unix(), id)
		return err
	})
}

// write runs fn in a transaction that also bumps tokens_version.
func (s tokenStore) write(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "UPDATE counters SET value = value + 1 WHERE name = 'tokens_version'"); err != nil {
		return err
	}
	return tx.Commit()
}

// Tokens implements gateway.TokenStore.
func (s tokenStore) Tokens(ctx context.Context) ([]gateway.TokenRecord, error) {
	rows, err := s.db.r.QueryContext(ctx, "SELECT id, principal, groups, hash, created, revoked FROM tokens ORDER BY created, id")
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	defer rows.Close()
	var out []gateway.TokenRecord
	for rows.Next() {
		var r gateway.TokenRecord
		var groups string
		var created int64
		var revoked sql.NullInt64
		if err := rows.Scan(&r.ID, &r.Principal, &groups, &r.Hash, &created, &revoked); err != nil {
			return nil, fmt.Errorf("read tokens: %w", err)
		}
		if r.Groups, err = gateway.AppendAuditList([]string{}, groups); err != nil {
			return nil, fmt.Errorf("read tokens: %s: groups: %w", r.ID, err)
		}
		r.Created = time.Unix(created, 0).UTC()
		if revoked.Valid {
			t := time.Unix(revoked.Int64, 0).UTC()
			r.Revoked = &t
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	return out, nil
}

// TokensVersion implements gateway.TokenStore.
func (s tokenStore) TokensVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := s.db.r.QueryRowContext(ctx, "SELECT value FROM counters WHERE name = 'tokens_version'").Scan(&v); err != nil {
		return 0, fmt.Errorf("read tokens version: %w", err)
	}
	return v, nil
}

var _ gateway.TokenStore = tokenStore{}
