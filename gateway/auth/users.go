package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/sallyport/sallyport/gateway"
)

// Reviewer accounts: people log in with a username and password (HTTP
// Basic, the console), beside the bearer tokens of programs. Passwords are
// kept as argon2id hashes in PHC string format,
// $argon2id$v=19$m=65536,t=3,p=4$salt$hash, and verified with the
// parameters the string carries, so that stronger parameters later leave
// older hashes valid.

const (
	// MinPasswordLen is the least number of characters a password has.
	MinPasswordLen = 12
	// maxPasswordLen bounds a password, in bytes.
	maxPasswordLen = 1024
	// generatedLen is the length of a GeneratePassword password: 20
	// base58 characters, 117 bits.
	generatedLen = 20
	// verifyTTL is how long a successful verification is remembered.
	verifyTTL = 5 * time.Minute
	// maxVerified bounds the remembered verifications.
	maxVerified = 1024
	// maxHashing bounds the argon2id computations running at once in the
	// process: each takes the memory its parameters say (64 MiB).
	maxHashing = 2
)

// hashParams are argon2id parameters.
type hashParams struct {
	memory  uint32 // KiB
	time    uint32 // passes
	threads uint8
	saltLen uint32 // bytes
	keyLen  uint32 // bytes
}

// defaultParams is RFC 9106's second recommended option (section 4), for
// memory-constrained settings: 64 MiB, 3 passes, 4 lanes, a 128-bit salt
// and a 256-bit hash; a few hundred milliseconds on a server core.
var defaultParams = hashParams{memory: 64 << 10, time: 3, threads: 4, saltLen: 16, keyLen: 32}

// Limits on the parameters a stored hash may ask for, so that a tampered
// row cannot make verification exhaust memory or time.
const (
	maxMemory  = 256 << 10 // KiB: 256 MiB
	maxTime    = 10
	maxThreads = 16
	minSaltLen = 8
	maxSaltLen = 64
	minKeyLen  = 16
	maxKeyLen  = 64
)

var (
	// hashing is the semaphore of maxHashing.
	hashing = make(chan struct{}, maxHashing)
	// hashed counts the argon2id computations of the process.
	hashed atomic.Int64
)

// ErrPasswordTooShort reports a password with fewer than MinPasswordLen
// characters.
var ErrPasswordTooShort = fmt.Errorf("password must have at least %d characters", MinPasswordLen)

// errHashFormat reports a stored hash that is not an argon2id PHC string
// this package accepts.
var errHashFormat = errors.New("not an argon2id hash in PHC format")

var b64 = base64.RawStdEncoding.Strict()

// idKey computes argon2id, at most maxHashing at a time.
func idKey(p hashParams, password string, salt []byte) []byte {
	hashing <- struct{}{}
	defer func() { <-hashing }()
	hashed.Add(1)
	return argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, p.keyLen)
}

// hashPassword returns the PHC string of password hashed with p and a
// fresh random salt.
func hashPassword(p hashParams, password string) string {
	salt := make([]byte, p.saltLen)
	_, _ = rand.Read(salt) // never fails; see crypto/rand.Read
	key := idKey(p, password, salt)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		b64.EncodeToString(salt), b64.EncodeToString(key))
}

// parseHash reads a PHC string hashPassword wrote, refusing other
// algorithms, versions, parameters and lengths.
func parseHash(s string) (p hashParams, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return hashParams{}, nil, nil, errHashFormat
	}
	m, rest, ok1 := strings.Cut(parts[3], ",")
	t, th, ok2 := strings.Cut(rest, ",")
	memory, ok3 := param(m, "m=", maxMemory)
	passes, ok4 := param(t, "t=", maxTime)
	threads, ok5 := param(th, "p=", maxThreads)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || memory < 8*threads {
		return hashParams{}, nil, nil, errHashFormat
	}
	salt, err1 := b64.DecodeString(parts[4])
	key, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < minSaltLen || len(salt) > maxSaltLen || len(key) < minKeyLen || len(key) > maxKeyLen ||
		// The decoder skips CR and LF: only what it would write back is
		// accepted.
		b64.EncodeToString(salt) != parts[4] || b64.EncodeToString(key) != parts[5] {
		return hashParams{}, nil, nil, errHashFormat
	}
	p = hashParams{memory: memory, time: passes, threads: uint8(threads), saltLen: uint32(len(salt)), keyLen: uint32(len(key))}
	return p, salt, key, nil
}

// param reads "name=N" with N a decimal number from 1 to limit, written
// without a sign or leading zeros.
func param(s, name string, limit uint32) (uint32, bool) {
	v, ok := strings.CutPrefix(s, name)
	if !ok || v == "" || v[0] == '0' || len(v) > 10 {
		return 0, false
	}
	for _, c := range []byte(v) {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n > uint64(limit) {
		return 0, false
	}
	return uint32(n), true
}

// verifyPassword reports whether password matches the PHC string encoded.
// A string that cannot be read is an error.
func verifyPassword(encoded, password string) (bool, error) {
	p, salt, want, err := parseHash(encoded)
	if err != nil {
		return false, err
	}
	got := idKey(p, password, salt)
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// checkPassword tells why password may not be set, if it may not.
func checkPassword(password string) error {
	switch {
	case !utf8.ValidString(password):
		return errors.New("password is not valid UTF-8")
	case utf8.RuneCountInString(password) < MinPasswordLen:
		return ErrPasswordTooShort
	case len(password) > maxPasswordLen:
		return fmt.Errorf("password is longer than %d bytes", maxPasswordLen)
	case strings.ContainsFunc(password, unicode.IsControl):
		return errors.New("password contains a control character")
	}
	return nil
}

// base58 is the alphabet of GeneratePassword: no 0, O, I or l.
const base58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// GeneratePassword returns a random password of 20 base58 characters
// (117 bits).
func GeneratePassword() string {
	out := make([]byte, 0, generatedLen)
	var buf [64]byte
	for len(out) < generatedLen {
		_, _ = rand.Read(buf[:]) // never fails; see crypto/rand.Read
		for _, b := range buf {
			// 232 = 4*58: rejecting the rest keeps every character
			// equally likely.
			if int(b) < 4*len(base58) && len(out) < generatedLen {
				out = append(out, base58[int(b)%len(base58)])
			}
		}
	}
	return string(out)
}

// Users manages reviewer accounts in a gateway.UserStore and verifies
// their passwords. Its methods are safe for concurrent use.
//
// Verify remembers a successful verification for five minutes, keyed by
// an HMAC of the username and password under a key random to the process,
// so that a client sending Basic credentials with every request does not
// pay for an argon2id hash each time. Whenever the store's users version
// changes, by this process or another, everything remembered is dropped:
// Verify looks at the version at most once a second, so a disabled user or
// a changed password is refused within about a second everywhere.
type Users struct {
	us     gateway.UserStore
	now    func() time.Time
	params hashParams
	key    [sha256.Size]byte // keys the remembered verifications
	salt   [16]byte          // of the hash spent on unknown users
	dummy  [32]byte          // compared with that hash

	reloadMu  sync.Mutex // serializes version checks
	nextCheck atomic.Int64

	mu       sync.Mutex // guards verified and the map in it
	verified *verified
}

// verified holds the verifications remembered since the store's users
// version was last seen to change. It is replaced, never cleared, so
// that a verification started before a change cannot be remembered
// after it.
type verified struct {
	version int64
	valid   bool // version was read
	entries map[[sha256.Size]byte]verifiedEntry
}

type verifiedEntry struct {
	p       gateway.Principal
	expires time.Time
}

// ReservedNames cannot be usernames: the gateway's own actor in approval
// transitions, and the default anonymous principal.
var ReservedNames = []string{"sallyport", "anonymous", "system"}

// NewUsers returns a Users over us, whose version is read once now: an
// unreadable store is an error here (later Verify fails closed).
func NewUsers(us gateway.UserStore) (*Users, error) {
	u := &Users{us: us, now: time.Now, params: defaultParams}
	_, _ = rand.Read(u.key[:]) // never fail; see crypto/rand.Read
	_, _ = rand.Read(u.salt[:])
	_, _ = rand.Read(u.dummy[:])
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	v, err := us.UsersVersion(ctx)
	if err != nil {
		return nil, err
	}
	u.verified = &verified{version: v, valid: true, entries: map[[sha256.Size]byte]verifiedEntry{}}
	u.nextCheck.Store(u.now().Add(checkInterval).UnixNano())
	return u, nil
}

// Add creates an enabled user with the given groups and password and
// returns its record, without the hash. A taken username is
// gateway.ErrUserExists; a password shorter than MinPasswordLen is
// ErrPasswordTooShort.
func (u *Users) Add(username string, groups []string, password string) (gateway.UserRecord, error) {
	if !nameRE.MatchString(username) {
		return gateway.UserRecord{}, fmt.Errorf("add user: invalid username %q", username)
	}
	if slices.Contains(ReservedNames, strings.ToLower(username)) {
		return gateway.UserRecord{}, fmt.Errorf("add user: %q is reserved (it names the gateway or anonymous clients in the audit log)", username)
	}
	for _, g := range groups {
		if !nameRE.MatchString(g) {
			return gateway.UserRecord{}, fmt.Errorf("add user %s: invalid group %q", username, g)
		}
	}
	if err := checkPassword(password); err != nil {
		return gateway.UserRecord{}, fmt.Errorf("add user %s: %w", username, err)
	}
	g := slices.Clone(groups)
	if g == nil {
		g = []string{}
	}
	now := u.now().UTC().Truncate(time.Second)
	rec := gateway.UserRecord{Username: username, Groups: g, PasswordHash: hashPassword(u.params, password), Created: now, Updated: now}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := u.us.InsertUser(ctx, rec); err != nil {
		return gateway.UserRecord{}, fmt.Errorf("add user %s: %w", username, err)
	}
	u.reload(true)
	rec.PasswordHash = ""
	return rec, nil
}

// SetPassword replaces the user's password. An unknown username is
// gateway.ErrUserNotFound.
func (u *Users) SetPassword(username, password string) error {
	if err := checkPassword(password); err != nil {
		return fmt.Errorf("set password of %s: %w", username, err)
	}
	hash := hashPassword(u.params, password)
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := u.us.SetPassword(ctx, username, hash, u.now().UTC().Truncate(time.Second)); err != nil {
		return fmt.Errorf("set password of %s: %w", username, err)
	}
	u.reload(true)
	return nil
}

// Disable refuses the user's logins from now on, in every process using
// the store within about a second. Disabling a disabled user changes
// nothing. An unknown username is gateway.ErrUserNotFound.
func (u *Users) Disable(username string) error { return u.setDisabled(username, true) }

// Enable lets a disabled user log in again. An unknown username is
// gateway.ErrUserNotFound.
func (u *Users) Enable(username string) error { return u.setDisabled(username, false) }

func (u *Users) setDisabled(username string, disabled bool) error {
	op := "enable user"
	if disabled {
		op = "disable user"
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := u.us.SetDisabled(ctx, username, disabled, u.now().UTC().Truncate(time.Second)); err != nil {
		return fmt.Errorf("%s %s: %w", op, username, err)
	}
	u.reload(true)
	return nil
}

// List returns every user, disabled ones included, by username, without
// their password hashes.
func (u *Users) List() ([]gateway.UserRecord, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	recs, err := u.us.Users(ctx)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	for i := range recs {
		recs[i].PasswordHash = ""
	}
	return recs, nil
}

// Verify returns the principal of an enabled user whose password is
// password: its ID is the username, its TokenID "user:" and the username.
// It reports false for anything else. An unknown or disabled user, or one
// whose stored hash cannot be read, costs the same argon2id computation
// as a wrong password, so that the time taken does not tell which
// usernames exist. A store that cannot be read refuses everyone.
func (u *Users) Verify(username, password string) (gateway.Principal, bool) {
	// No account has such a name or password: the rules are public.
	if !nameRE.MatchString(username) || password == "" || len(password) > maxPasswordLen {
		return gateway.Principal{}, false
	}
	v := u.current()
	k := u.cacheKey(username, password)
	now := u.now()
	u.mu.Lock()
	e, ok := v.entries[k]
	u.mu.Unlock()
	if ok && now.Before(e.expires) {
		e.p.Groups = slices.Clone(e.p.Groups)
		return e.p, true
	}

	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	rec, err := u.us.User(ctx, username)
	if err != nil || rec.Disabled != nil {
		u.spend(password)
		return gateway.Principal{}, false
	}
	match, err := verifyPassword(rec.PasswordHash, password)
	if err != nil {
		u.spend(password)
	}
	if !match {
		return gateway.Principal{}, false
	}
	p := gateway.Principal{ID: rec.Username, Groups: slices.Clone(rec.Groups), TokenID: "user:" + rec.Username}
	if p.Groups == nil {
		p.Groups = []string{}
	}
	u.remember(v, k, p, now)
	p.Groups = slices.Clone(p.Groups)
	return p, true
}

// spend computes a hash as verifying password would, for nothing.
func (u *Users) spend(password string) {
	got := idKey(u.params, password, u.salt[:])
	subtle.ConstantTimeCompare(got, u.dummy[:])
}

// cacheKey is the HMAC-SHA256 of username, NUL, password.
func (u *Users) cacheKey(username, password string) [sha256.Size]byte {
	m := hmac.New(sha256.New, u.key[:])
	m.Write([]byte(username))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var k [sha256.Size]byte
	m.Sum(k[:0])
	return k
}

// remember stores a verification in v unless v was replaced meanwhile,
// making room when it is full.
func (u *Users) remember(v *verified, k [sha256.Size]byte, p gateway.Principal, now time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.verified != v {
		return // the users changed while the password was verified
	}
	if len(v.entries) >= maxVerified {
		for k, e := range v.entries {
			if !now.Before(e.expires) {
				delete(v.entries, k)
			}
		}
	}
	if len(v.entries) >= maxVerified {
		for k := range v.entries { // any one
			delete(v.entries, k)
			break
		}
	}
	v.entries[k] = verifiedEntry{p: p, expires: now.Add(verifyTTL)}
}

// current returns the remembered verifications, first looking at the
// store's users version if it is time to. Only one caller a second does
// the looking.
func (u *Users) current() *verified {
	now := u.now().UnixNano()
	next := u.nextCheck.Load()
	if now >= next && u.nextCheck.CompareAndSwap(next, now+int64(checkInterval)) {
		u.reload(false)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.verified
}

// reload drops every remembered verification when the store's users
// version changed, or cannot be read, or when forced (after this process
// changed the store).
func (u *Users) reload(force bool) {
	if force {
		u.reloadMu.Lock()
	} else if !u.reloadMu.TryLock() {
		return // another reload is in progress
	}
	defer u.reloadMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	// The version is read before the new set is in place: whatever is
	// remembered in it was read from the store after this version.
	version, err := u.us.UsersVersion(ctx)
	u.mu.Lock()
	defer u.mu.Unlock()
	if !force && err == nil && u.verified.valid && u.verified.version == version {
		return
	}
	u.verified = &verified{version: version, valid: err == nil, entries: map[[sha256.Size]byte]verifiedEntry{}}
}
