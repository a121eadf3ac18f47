package gateway

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"
)

// TokenRecord is a client bearer token as stored: its hash, never the token.
type TokenRecord struct {
	ID        string
	Principal string
	Groups    []string
	// Hash is the hex SHA-256 of the full token.
	Hash    string
	Created time.Time
	Revoked *time.Time
}

// Token store errors.
var (
	ErrTokenNotFound = errors.New("no such token")
	ErrTokenExists   = errors.New("token id or hash already stored")
)

// TokenStore keeps client bearer tokens. Several processes may share one
// (`sallyport tokens create` while `serve` runs).
type TokenStore interface {
	// InsertToken stores a new token (revoked from the start when
	// rec.Revoked is set); ErrTokenExists when its id or hash is taken.
	InsertToken(ctx context.Context, rec TokenRecord) error
	// RevokeToken marks the token revoked at the given time, unless it
	// already is; ErrTokenNotFound for an unknown id.
	RevokeToken(ctx context.Context, id string, at time.Time) error
	// Tokens returns every token, revoked ones included, oldest first.
	Tokens(ctx context.Context) ([]TokenRecord, error)
	// TokensVersion returns a number that changes whenever a token is
	// inserted or revoked, by any process.
	TokensVersion(ctx context.Context) (int64, error)
}

// String describes r without its hash.
func (r TokenRecord) String() string {
	s := r.ID + " principal=" + r.Principal + " groups=[" + strings.Join(r.Groups, ",") + "] created=" + r.Created.UTC().Format(time.RFC3339)
	if r.Revoked != nil {
		s += " revoked=" + r.Revoked.UTC().Format(time.RFC3339)
	}
	return s
}

// GoString describes r without its hash, for %#v.
func (r TokenRecord) GoString() string { return "gateway.TokenRecord{" + r.String() + "}" }

// LogValue implements slog.LogValuer; the hash is left out.
func (r TokenRecord) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("id", r.ID),
		slog.String("principal", r.Principal),
		slog.Any("groups", r.Groups),
		slog.Time("created", r.Created),
	}
	if r.Revoked != nil {
		attrs = append(attrs, slog.Time("revoked", *r.Revoked))
	}
	return slog.GroupValue(attrs...)
}
