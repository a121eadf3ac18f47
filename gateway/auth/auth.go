// Package auth authenticates HTTP clients by bearer token.
//
// Tokens are "spt_" followed by 32 random bytes in unpadded base64url. Only
// the SHA-256 of a token is kept, in a gateway.TokenStore (the SQLite
// database). A Store serving a gateway notices tokens created or revoked
// by another process (`sallyport tokens create` while `serve` runs) within
// about a second: it checks the store's tokens version at most once a
// second and swaps in a new immutable snapshot when it changed. A store
// that cannot be read fails closed: every token is refused until it can be
// read again.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sallyport/sallyport/gateway"
)

const (
	// TokenPrefix starts every token, so that scanners can recognise a
	// leaked one.
	TokenPrefix = "spt_"
	tokenBytes  = 32
	tokenLen    = len(TokenPrefix) + 43 // 43 = unpadded base64 of 32 bytes
	// checkInterval is how often, at most, a Store looks for changes made
	// by another process.
	checkInterval = time.Second
	// storeTimeout bounds one read of the token store.
	storeTimeout = 5 * time.Second
)

// Record describes one token. It holds the token's hash, never the token.
type Record = gateway.TokenRecord

// ErrNotFound reports a token id that is not in the store.
var ErrNotFound = gateway.ErrTokenNotFound

var (
	idRE   = regexp.MustCompile(`^tok_[0-9a-f]{8}$`)
	hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// nameRE is the rule for principal and group names, the same as the
	// configuration's.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,127}$`)
)

// Store authenticates tokens against a gateway.TokenStore, from an
// in-memory snapshot. Its methods are safe for concurrent use.
type Store struct {
	ts  gateway.TokenStore
	now func() time.Time

	mu        sync.Mutex // serializes reloads
	snap      atomic.Pointer[snapshot]
	nextCheck atomic.Int64 // unix nanoseconds before which the store is not looked at again
}

// snapshot is the immutable state of the store as last read.
type snapshot struct {
	version  int64
	records  []Record
	byHash   map[[sha256.Size]byte]int // index into records
	warnings []string
}

// New returns a Store over ts, read once now: an unreadable store is an
// error here (later it fails closed).
func New(ts gateway.TokenStore) (*Store, error) {
	s := &Store{ts: ts, now: time.Now}
	snap, err := s.load()
	if err != nil {
		return nil, err
	}
	s.snap.Store(snap)
	s.nextCheck.Store(s.now().Add(checkInterval).UnixNano())
	return s, nil
}

// Create makes a new token for principal and groups, stores its hash and
// returns the token, which cannot be recovered later.
func (s *Store) Create(principal string, groups []string) (token string, rec Record, err error) {
	if !nameRE.MatchString(principal) {
		return "", Record{}, fmt.Errorf("create token: invalid principal %q", principal)
	}
	for _, g := range groups {
		if !nameRE.MatchString(g) {
			return "", Record{}, fmt.Errorf("create token: invalid group %q", g)
		}
	}
	var raw [tokenBytes]byte
	_, _ = rand.Read(raw[:]) // never fails; see crypto/rand.Read
	token = TokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(token))
	g := slices.Clone(groups)
	if g == nil {
		g = []string{}
	}
	rec = Record{Principal: principal, Groups: g, Hash: hex.EncodeToString(sum[:]), Created: s.now().UTC().Truncate(time.Second)}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	for range 16 { // a fresh id until one is free
		var b [4]byte
		_, _ = rand.Read(b[:])
		rec.ID = "tok_" + hex.EncodeToString(b[:])
		err = s.ts.InsertToken(ctx, rec)
		if !errors.Is(err, gateway.ErrTokenExists) {
			break
		}
	}
	if err != nil {
		return "", Record{}, fmt.Errorf("create token: %w", err)
	}
	s.refresh()
	return token, rec, nil
}

// Import stores a token record as it is (hash included), for moving tokens
// from a legacy tokens file. A record whose id is already stored with the
// same hash is skipped; reported is whether it was new.
func (s *Store) Import(rec Record) (added bool, err error) {
	if err := check(rec); err != nil {
		return false, fmt.Errorf("import token: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	err = s.ts.InsertToken(ctx, rec)
	if errors.Is(err, gateway.ErrTokenExists) {
		// The store, not the snapshot: another process may have imported
		// it less than a second ago.
		stored, lerr := s.ts.Tokens(ctx)
		if lerr != nil {
			return false, fmt.Errorf("import token %s: %w", rec.ID, lerr)
		}
		for _, r := range stored {
			if r.ID == rec.ID && r.Hash == rec.Hash {
				if rec.Revoked != nil && r.Revoked == nil {
					if err := s.ts.RevokeToken(ctx, rec.ID, *rec.Revoked); err != nil {
						return false, fmt.Errorf("import token %s: %w", rec.ID, err)
					}
					s.refresh()
				}
				return false, nil
			}
		}
	}
	if err != nil {
		return false, fmt.Errorf("import token %s: %w", rec.ID, err)
	}
	// A revoked record was stored revoked, in the same statement.
	s.refresh()
	return true, nil
}

// check validates a record from outside (an imported file).
func check(r Record) error {
	switch {
	case !idRE.MatchString(r.ID):
		return fmt.Errorf("invalid id %q", r.ID)
	case !hashRE.MatchString(r.Hash):
		return fmt.Errorf("%s: hash must be 64 lowercase hex digits", r.ID)
	case !nameRE.MatchString(r.Principal):
		return fmt.Errorf("%s: invalid principal %q", r.ID, r.Principal)
	}
	for _, g := range r.Groups {
		if !nameRE.MatchString(g) {
			return fmt.Errorf("%s: invalid group %q", r.ID, g)
		}
	}
	return nil
}

// Revoke marks the token with the given id revoked; Authenticate refuses it
// from then on, in every process using the store within about a second.
// Revoking a revoked token changes nothing. An unknown id is ErrNotFound.
func (s *Store) Revoke(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := s.ts.RevokeToken(ctx, id, s.now().UTC().Truncate(time.Second)); err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	s.refresh()
	return nil
}

// List returns every record, revoked ones included, oldest first.
func (s *Store) List() []Record {
	snap := s.current()
	out := make([]Record, len(snap.records))
	for i, r := range snap.records {
		r.Groups = slices.Clone(r.Groups)
		out[i] = r
	}
	return out
}

// Warnings returns problems that do not stop the store from working, such
// as a reload that failed (then every token is refused until the store
// can be read again).
func (s *Store) Warnings() []string {
	return slices.Clone(s.current().warnings)
}

// Authenticate returns the principal a token stands for. It reports false
// for a malformed, unknown or revoked token.
func (s *Store) Authenticate(token string) (gateway.Principal, bool) {
	if !wellFormed(token) {
		return gateway.Principal{}, false
	}
	sum := sha256.Sum256([]byte(token))
	snap := s.current()
	i, ok := snap.byHash[sum]
	if !ok {
		return gateway.Principal{}, false
	}
	rec := &snap.records[i]
	var want [sha256.Size]byte
	if _, err := hex.Decode(want[:], []byte(rec.Hash)); err != nil || subtle.ConstantTimeCompare(want[:], sum[:]) != 1 {
		return gateway.Principal{}, false
	}
	if rec.Revoked != nil {
		return gateway.Principal{}, false
	}
	return gateway.Principal{ID: rec.Principal, Groups: slices.Clone(rec.Groups), TokenID: rec.ID}, true
}

// wellFormed reports whether token has the shape of a token, so that
// anything else is refused before it is hashed or looked up.
func wellFormed(token string) bool {
	if len(token) != tokenLen || !strings.HasPrefix(token, TokenPrefix) {
		return false
	}
	for _, c := range []byte(token[len(TokenPrefix):]) {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// current returns the snapshot to use, first reloading the store if it is
// time to look at it again. Only one caller a second does the looking; the
// others use the snapshot they find.
func (s *Store) current() *snapshot {
	now := s.now().UnixNano()
	next := s.nextCheck.Load()
	if now >= next && s.nextCheck.CompareAndSwap(next, now+int64(checkInterval)) {
		s.reload(false)
	}
	return s.snap.Load()
}

// refresh reloads now, after this process changed the store.
func (s *Store) refresh() { s.reload(true) }

// reload swaps in a new snapshot when the store's tokens version changed.
// A store that cannot be read fails closed: the new snapshot has no tokens
// and says why in its warnings.
func (s *Store) reload(force bool) {
	if !force && !s.mu.TryLock() {
		return // another reload is in progress
	}
	if force {
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	old := s.snap.Load()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if !force && old != nil && old.warnings == nil {
		v, err := s.ts.TokensVersion(ctx)
		if err == nil && v == old.version {
			return
		}
	}
	snap, err := s.load()
	if err != nil {
		snap = newSnapshot(0, nil)
		snap.warnings = []string{fmt.Sprintf("%v; refusing every token until the token store can be read", err)}
	}
	s.snap.Store(snap)
}

// load reads the store into a snapshot.
func (s *Store) load() (*snapshot, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	// The version first: a change between the two reads is then seen again
	// at the next check.
	v, err := s.ts.TokensVersion(ctx)
	if err != nil {
		return nil, err
	}
	recs, err := s.ts.Tokens(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if !hashRE.MatchString(r.Hash) {
			return nil, fmt.Errorf("token store: %s: malformed hash", r.ID)
		}
	}
	return newSnapshot(v, recs), nil
}

func newSnapshot(version int64, recs []Record) *snapshot {
	snap := &snapshot{version: version, records: recs, byHash: make(map[[sha256.Size]byte]int, len(recs))}
	for i, r := range recs {
		var sum [sha256.Size]byte
		_, _ = hex.Decode(sum[:], []byte(r.Hash)) // checked by load
		snap.byHash[sum] = i
	}
	return snap
}
