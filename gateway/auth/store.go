// Package auth authenticates HTTP clients by bearer token.
//
// Tokens are "spt_" followed by 32 random bytes in unpadded base64url. Only
// the SHA-256 of a token is kept, in a JSON file ({"version":1,"tokens":[...]})
// that is rewritten atomically with mode 0600. A Store serving a gateway
// notices tokens created or revoked by another process (`sallyport tokens
// create` while `serve` runs) within about a second: it checks the file at
// most once a second and swaps in a new immutable snapshot when the file
// changed. A file that cannot be read any more fails closed: every token is
// refused until it is fixed.
package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
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
	fileVersion = 1
	// checkInterval is how often, at most, a Store looks at its file for
	// changes made by another process.
	checkInterval = time.Second
	maxFileBytes  = 16 << 20
)

// ErrNotFound reports a token id that is not in the store.
var ErrNotFound = errors.New("no such token")

var (
	idRE   = regexp.MustCompile(`^tok_[0-9a-f]{8}$`)
	hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// nameRE is the rule for principal and group names, the same as the
	// configuration's.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+=-]{0,127}$`)
)

// Record describes one token. It holds the token's hash, never the token.
type Record struct {
	ID        string   `json:"id"`
	Principal string   `json:"principal"`
	Groups    []string `json:"groups"`
	// Hash is the hex SHA-256 of the full token.
	Hash    string     `json:"hash"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// String describes r without its hash.
func (r Record) String() string {
	s := fmt.Sprintf("%s principal=%s groups=[%s] created=%s", r.ID, r.Principal,
		strings.Join(r.Groups, ","), r.Created.UTC().Format(time.RFC3339))
	if r.Revoked != nil {
		s += " revoked=" + r.Revoked.UTC().Format(time.RFC3339)
	}
	return s
}

// GoString describes r without its hash, for %#v.
func (r Record) GoString() string { return "auth.Record{" + r.String() + "}" }

// LogValue implements slog.LogValuer; the hash is left out.
func (r Record) LogValue() slog.Value {
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

func (r Record) clone() Record {
	r.Groups = slices.Clone(r.Groups)
	if r.Revoked != nil {
		t := *r.Revoked
		r.Revoked = &t
	}
	return r
}

// Store holds the token records of one file. Its methods are safe for
// concurrent use, also across processes sharing the file: writes take a
// lock beside the file (on systems with flock) and re-read the file before
// changing it.
type Store struct {
	path string
	now  func() time.Time

	mu        sync.Mutex // serializes reloads and writes within the process
	snap      atomic.Pointer[snapshot]
	nextCheck atomic.Int64 // unix nanoseconds before which the file is not looked at again
}

// snapshot is the immutable state of the store as last read from the file.
type snapshot struct {
	records  []Record
	byHash   map[[sha256.Size]byte]int // index into records
	info     fs.FileInfo               // of the file read; nil when there was none
	warnings []string
}

// file is the JSON layout of the tokens file.
type file struct {
	Version int      `json:"version"`
	Tokens  []Record `json:"tokens"`
}

// Open opens the token store in the file at path. A missing file is an empty
// store (Create writes it); a malformed one is an error naming the file. A
// file readable or writable by group or others is used, with a warning in
// Warnings.
func Open(path string) (*Store, error) {
	s := &Store{path: path, now: time.Now}
	snap, err := load(path)
	if err != nil {
		return nil, err
	}
	s.snap.Store(snap)
	s.nextCheck.Store(s.now().Add(checkInterval).UnixNano())
	return s, nil
}

// String names the store by its file.
func (s *Store) String() string { return "auth.Store(" + s.path + ")" }

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
	err = s.update(func(recs []Record) ([]Record, error) {
		id, err := newID(recs)
		if err != nil {
			return nil, err
		}
		g := slices.Clone(groups)
		if g == nil {
			g = []string{}
		}
		rec = Record{ID: id, Principal: principal, Groups: g, Hash: hex.EncodeToString(sum[:]), Created: s.now().UTC().Truncate(time.Second)}
		return append(recs, rec), nil
	})
	if err != nil {
		return "", Record{}, fmt.Errorf("create token: %w", err)
	}
	return token, rec.clone(), nil
}

// newID returns a token id not yet used in recs.
func newID(recs []Record) (string, error) {
	for range 16 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		id := "tok_" + hex.EncodeToString(b[:])
		if !slices.ContainsFunc(recs, func(r Record) bool { return r.ID == id }) {
			return id, nil
		}
	}
	return "", errors.New("no free token id")
}

// Revoke marks the token with the given id revoked; Authenticate refuses it
// from then on, in every process using the file within about a second.
// Revoking a revoked token changes nothing. An unknown id is ErrNotFound.
func (s *Store) Revoke(id string) error {
	err := s.update(func(recs []Record) ([]Record, error) {
		i := slices.IndexFunc(recs, func(r Record) bool { return r.ID == id })
		switch {
		case i < 0:
			return nil, ErrNotFound
		case recs[i].Revoked != nil:
			return nil, nil
		}
		t := s.now().UTC().Truncate(time.Second)
		recs[i].Revoked = &t
		return recs, nil
	})
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

// List returns every record, revoked ones included, oldest first.
func (s *Store) List() []Record {
	snap := s.current()
	out := make([]Record, len(snap.records))
	for i, r := range snap.records {
		out[i] = r.clone()
	}
	return out
}

// Warnings returns problems that do not stop the store from working, such
// as a tokens file that group or others can read, or a reload that failed
// (then every token is refused until the file is fixed).
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

// current returns the snapshot to use, first reloading the file if it is
// time to look at it again and it changed. Only one caller a second does
// the looking; the others use the snapshot they find.
func (s *Store) current() *snapshot {
	now := s.now().UnixNano()
	next := s.nextCheck.Load()
	if now >= next && s.nextCheck.CompareAndSwap(next, now+int64(checkInterval)) {
		s.reload()
	}
	return s.snap.Load()
}

// reload swaps in a new snapshot when the file changed since the current
// one was read. A file that cannot be read fails closed: the new snapshot
// has no tokens and says why in its warnings.
func (s *Store) reload() {
	if !s.mu.TryLock() {
		return // a write is in progress and will store a fresh snapshot
	}
	defer s.mu.Unlock()
	old := s.snap.Load()
	info, err := os.Stat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if old.info != nil || len(old.records) > 0 || len(old.warnings) > 0 {
			s.snap.Store(newSnapshot(nil, nil))
		}
		return
	case err != nil:
		s.snap.Store(failed(nil, err))
		return
	case old.info != nil && unchanged(old.info, info):
		return
	}
	snap, err := load(s.path)
	if err != nil {
		s.snap.Store(failed(info, err))
		return
	}
	s.snap.Store(snap)
}

// failed is the snapshot of a file that could not be read: no tokens.
func failed(info fs.FileInfo, err error) *snapshot {
	snap := newSnapshot(nil, info)
	snap.warnings = []string{fmt.Sprintf("%v; refusing every token until the file is fixed", err)}
	return snap
}

// unchanged reports whether a and b describe the same version of the file.
// Every write replaces the file, so a new version is a new file, and in
// any case has a new modification time or size.
func unchanged(a, b fs.FileInfo) bool {
	return os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// load reads the file at path into a snapshot. A missing file is an empty
// snapshot.
func load(path string) (*snapshot, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newSnapshot(nil, nil), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read tokens file: %w", err)
	}
	recs, err := decode(data)
	if err != nil {
		return nil, fmt.Errorf("read tokens file %s: %w", path, err)
	}
	snap := newSnapshot(recs, info)
	if perm := info.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		snap.warnings = append(snap.warnings, fmt.Sprintf("tokens file %s is accessible by group or others (mode %04o); run chmod 600 on it", path, perm))
	}
	return snap, nil
}

func newSnapshot(recs []Record, info fs.FileInfo) *snapshot {
	snap := &snapshot{records: recs, byHash: make(map[[sha256.Size]byte]int, len(recs)), info: info}
	for i, r := range recs {
		var sum [sha256.Size]byte
		_, _ = hex.Decode(sum[:], []byte(r.Hash)) // checked by decode
		snap.byHash[sum] = i
	}
	return snap
}

// decode parses and checks the contents of a tokens file.
func decode(data []byte) ([]Record, error) {
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxFileBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("malformed: %w", err)
	}
	if dec.More() {
		return nil, errors.New("malformed: data after the JSON object")
	}
	if f.Version != fileVersion {
		return nil, fmt.Errorf("unsupported version %d (want %d)", f.Version, fileVersion)
	}
	ids := make(map[string]bool, len(f.Tokens))
	hashes := make(map[string]bool, len(f.Tokens))
	for i, r := range f.Tokens {
		switch {
		case !idRE.MatchString(r.ID):
			return nil, fmt.Errorf("tokens[%d]: invalid id %q", i, r.ID)
		case ids[r.ID]:
			return nil, fmt.Errorf("tokens[%d]: duplicate id %q", i, r.ID)
		case !hashRE.MatchString(r.Hash):
			return nil, fmt.Errorf("tokens[%d] (%s): hash must be 64 lowercase hex digits", i, r.ID)
		case hashes[r.Hash]:
			return nil, fmt.Errorf("tokens[%d] (%s): duplicate hash", i, r.ID)
		case !nameRE.MatchString(r.Principal):
			return nil, fmt.Errorf("tokens[%d] (%s): invalid principal %q", i, r.ID, r.Principal)
		}
		for _, g := range r.Groups {
			if !nameRE.MatchString(g) {
				return nil, fmt.Errorf("tokens[%d] (%s): invalid group %q", i, r.ID, g)
			}
		}
		ids[r.ID], hashes[r.Hash] = true, true
	}
	return f.Tokens, nil
}

// update applies change to the records as they are in the file now and
// writes the result back atomically. A change that returns nil records
// and no error leaves the file alone.
func (s *Store) update(change func([]Record) ([]Record, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	unlock, err := lockFile(s.path + ".lock")
	if err != nil {
		return fmt.Errorf("lock tokens file: %w", err)
	}
	defer unlock()
	cur, err := load(s.path)
	if err != nil {
		return err
	}
	recs := make([]Record, len(cur.records))
	for i, r := range cur.records {
		recs[i] = r.clone()
	}
	recs, err = change(recs)
	if err != nil {
		return err
	}
	if recs != nil {
		if err := writeFile(s.path, recs); err != nil {
			return err
		}
		if cur, err = load(s.path); err != nil {
			return err
		}
	}
	s.snap.Store(cur)
	return nil
}

// writeFile replaces the file at path with recs: written to a temporary
// file in the same directory with mode 0600, synced, renamed over path,
// and the directory synced.
func writeFile(path string, recs []Record) (err error) {
	data, err := json.MarshalIndent(file{Version: fileVersion, Tokens: recs}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode tokens file: %w", err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write tokens file: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return fmt.Errorf("write tokens file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write tokens file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write tokens file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write tokens file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write tokens file: %w", err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable where the system supports it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // not supported everywhere; the rename itself is done
		d.Close()
	}
}
