package gateway

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"
)

// UserRecord is a reviewer account as stored: a person who logs in with a
// username and password, beside the bearer tokens programs use. It holds
// a hash of the password, never the password; String, GoString and
// LogValue leave the hash out.
type UserRecord struct {
	Username string
	Groups   []string
	// PasswordHash is the password's hash in PHC string format
	// ($argon2id$v=19$m=...,t=...,p=...$salt$hash).
	PasswordHash string
	Created      time.Time
	// Updated is when the password was last set or the account was last
	// disabled or enabled.
	Updated  time.Time
	Disabled *time.Time
}

// User store errors.
var (
	ErrUserNotFound = errors.New("no such user")
	ErrUserExists   = errors.New("user already exists")
)

// UserStore keeps reviewer accounts. Several processes may share one
// (`sallyport users add` while `serve` runs).
type UserStore interface {
	// InsertUser stores a new user (disabled from the start when
	// rec.Disabled is set); ErrUserExists when the username is taken.
	InsertUser(ctx context.Context, rec UserRecord) error
	// SetPassword replaces the user's password hash and sets its updated
	// time; ErrUserNotFound for an unknown username.
	SetPassword(ctx context.Context, username, hash string, at time.Time) error
	// SetDisabled disables the user at the given time, or enables it.
	// Disabling a disabled user keeps the first time and enabling an
	// enabled one changes nothing. ErrUserNotFound for an unknown
	// username.
	SetDisabled(ctx context.Context, username string, disabled bool, at time.Time) error
	// User returns one user; ErrUserNotFound for an unknown username.
	User(ctx context.Context, username string) (UserRecord, error)
	// Users returns every user, disabled ones included, by username.
	Users(ctx context.Context) ([]UserRecord, error)
	// UsersVersion returns a number that changes whenever a user is
	// inserted or changed, by any process.
	UsersVersion(ctx context.Context) (int64, error)
}

// String describes r without its password hash.
func (r UserRecord) String() string {
	s := r.Username + " groups=[" + strings.Join(r.Groups, ",") + "] created=" + r.Created.UTC().Format(time.RFC3339) +
		" updated=" + r.Updated.UTC().Format(time.RFC3339)
	if r.Disabled != nil {
		s += " disabled=" + r.Disabled.UTC().Format(time.RFC3339)
	}
	return s
}

// GoString describes r without its password hash, for %#v.
func (r UserRecord) GoString() string { return "gateway.UserRecord{" + r.String() + "}" }

// LogValue implements slog.LogValuer; the password hash is left out.
func (r UserRecord) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("username", r.Username),
		slog.Any("groups", r.Groups),
		slog.Time("created", r.Created),
		slog.Time("updated", r.Updated),
	}
	if r.Disabled != nil {
		attrs = append(attrs, slog.Time("disabled", *r.Disabled))
	}
	return slog.GroupValue(attrs...)
}
