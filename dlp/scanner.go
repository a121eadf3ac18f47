// Package dlp finds PII and secrets in MCP messages, and the pipeline
// stage that acts on what it finds (block, redact, mask, hash, flag).
//
// The scanner makes one pass over each string, token by token (runs of
// letters and digits). A table of the secret detectors' prefixes, keyed by
// a token's first byte, is the prefilter: a validator runs only behind a
// prefix (ghp_, AKIA, sk-, eyJ...), a shape's first byte (a digit, '@',
// ':', "-----BEGIN"), or an assignment of a long value to a name ('=',
// ':'), never at every byte. Validators check what a regular expression
// cannot: Luhn, mod-97, SSN ranges, GitHub's CRC-32 token checksums, a JWT
// header that decodes, entropy. No regular expression runs on message
// text, so no input can make a scan slower than linear.
package dlp

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Categories of detectors.
const (
	CategoryPII    = "pii"
	CategorySecret = "secret"
)

// detector ids, in the order of the detectors table.
type detector uint8

const (
	detEmail detector = iota
	detPhone
	detCard
	detSSN
	detIBAN
	detIP
	detBank
	detAWSAccess
	detAWSSecret
	detGitHubPAT
	detGitHubOAuth
	detGitHubApp
	detGitHubRefresh
	detGitHubFineGrained
	detGitLab
	detSlackBot
	detSlackUser
	detSlackLegacy
	detSlackWebhook
	detStripe
	detGCP
	detOpenAI
	detAnthropic
	detNPM
	detPrivateKey
	detJWT
	detDatabaseURL
	detGeneric
	numDetectors
)

type detectorInfo struct {
	id       string
	category string
	desc     string
}

var detectors = [numDetectors]detectorInfo{
	detEmail:             {"EMAIL_ADDRESS", CategoryPII, "email address"},
	detPhone:             {"PHONE_NUMBER", CategoryPII, "phone number (E.164, US and UK national formats)"},
	detCard:              {"CREDIT_CARD", CategoryPII, "payment card number (Luhn-checked, major brands)"},
	detSSN:               {"US_SSN", CategoryPII, "US social security number (invalid areas, groups, serials rejected)"},
	detIBAN:              {"IBAN_CODE", CategoryPII, "IBAN (country length and mod-97 checked)"},
	detIP:                {"IP_ADDRESS", CategoryPII, "IPv4 or IPv6 address"},
	detBank:              {"US_BANK_NUMBER", CategoryPII, "US bank account number (8-17 digits after an account context word)"},
	detAWSAccess:         {"aws-access-token", CategorySecret, "AWS access key id"},
	detAWSSecret:         {"aws-secret-access-key", CategorySecret, "AWS secret access key (after its name)"},
	detGitHubPAT:         {"github-pat", CategorySecret, "GitHub personal access token, ghp_ (checksum checked)"},
	detGitHubOAuth:       {"github-oauth", CategorySecret, "GitHub OAuth token, gho_ (checksum checked)"},
	detGitHubApp:         {"github-app-token", CategorySecret, "GitHub app token, ghu_ / ghs_ (checksum checked)"},
	detGitHubRefresh:     {"github-refresh-token", CategorySecret, "GitHub refresh token, ghr_ (checksum checked)"},
	detGitHubFineGrained: {"github-fine-grained-pat", CategorySecret, "GitHub fine-grained token, github_pat_"},
	detGitLab:            {"gitlab-pat", CategorySecret, "GitLab personal access token, glpat-"},
	detSlackBot:          {"slack-bot-token", CategorySecret, "Slack bot token, xoxb-"},
	detSlackUser:         {"slack-user-token", CategorySecret, "Slack user token, xoxp-"},
	detSlackLegacy:       {"slack-legacy-token", CategorySecret, "Slack legacy token, xoxa- / xoxo- / xoxr- / xoxs-"},
	detSlackWebhook:      {"slack-webhook-url", CategorySecret, "Slack incoming webhook URL"},
	detStripe:            {"stripe-access-token", CategorySecret, "Stripe live secret or restricted key"},
	detGCP:               {"gcp-api-key", CategorySecret, "Google API key, AIza"},
	detOpenAI:            {"openai-api-key", CategorySecret, "OpenAI API key (T3BlbkFJ marker checked)"},
	detAnthropic:         {"anthropic-api-key", CategorySecret, "Anthropic API key, sk-ant-"},
	detNPM:               {"npm-access-token", CategorySecret, "npm access token, npm_ (checksum checked)"},
	detPrivateKey:        {"private-key", CategorySecret, "private key PEM block (RSA, EC, DSA, OpenSSH, PGP, PKCS#8)"},
	detJWT:               {"jwt", CategorySecret, "JSON Web Token (header decoded and checked)"},
	detDatabaseURL:       {"database-url-password", CategorySecret, "password in a database URL"},
	detGeneric:           {"generic-api-key", CategorySecret, "high-entropy value assigned to a secret-like name"},
}

// Detector describes one detector.
type Detector struct {
	ID          string
	Category    string
	Description string
}

// Detectors lists every detector.
func Detectors() []Detector {
	out := make([]Detector, numDetectors)
	for i, d := range detectors {
		out[i] = Detector{ID: d.id, Category: d.category, Description: d.desc}
	}
	return out
}

// detectorByID returns the detector with id.
func detectorByID(id string) (detector, bool) {
	for i, d := range detectors {
		if d.id == id {
			return detector(i), true
		}
	}
	return 0, false
}

// Match is one detector match in a text: its span, never its value.
type Match struct {
	Detector   string
	Offset     int // byte offset in the scanned text
	Length     int // byte length in the scanned text
	Confidence float64
	// Encoding is "" for a match in the text itself, or how the text
	// around it was encoded ("base64", "hex", "url", or a chain like
	// "base64+url"); the span is then the encoded run's.
	Encoding string

	det detector
}

// Options configure a Scanner.
type Options struct {
	// Detectors are the detector ids to run; empty runs them all.
	Detectors []string
	// MaxDecodeDepth bounds how deep encoded runs are decoded (base64
	// inside base64...); 0 means DefaultMaxDecodeDepth, negative turns
	// decoding off.
	MaxDecodeDepth int
	// MaxDecodedBytes bounds the bytes decoding may produce for one scan;
	// a scan that needs more fails with ErrLimit. 0 means
	// DefaultMaxDecodedBytes.
	MaxDecodedBytes int
}

// Defaults for Options.
const (
	DefaultMaxDecodeDepth  = 2
	DefaultMaxDecodedBytes = 8 << 20
)

// ErrLimit is returned (wrapped) by a scan that exceeded a limit; the
// stage refuses the message then.
var ErrLimit = errors.New("dlp: scan limit exceeded")

// Scanner finds detector matches in text. It is safe for concurrent use.
type Scanner struct {
	enabled    [numDetectors]bool
	maxDepth   int
	maxDecoded int
}

// NewScanner returns a scanner for opts.
func NewScanner(opts Options) (*Scanner, error) {
	s := &Scanner{maxDepth: opts.MaxDecodeDepth, maxDecoded: opts.MaxDecodedBytes}
	if s.maxDepth == 0 {
		s.maxDepth = DefaultMaxDecodeDepth
	}
	if s.maxDepth < 0 {
		s.maxDepth = 0
	}
	if s.maxDecoded <= 0 {
		s.maxDecoded = DefaultMaxDecodedBytes
	}
	if len(opts.Detectors) == 0 {
		for i := range s.enabled {
			s.enabled[i] = true
		}
	}
	for _, id := range opts.Detectors {
		d, ok := detectorByID(id)
		if !ok {
			return nil, fmt.Errorf("unknown DLP detector %q", id)
		}
		s.enabled[d] = true
	}
	return s, nil
}

// Detect returns the matches in text, in offset order. A scan that hits
// a limit returns what it found before; use Scan to learn of it.
func (s *Scanner) Detect(text []byte) []Match {
	ms, _ := s.Scan(text)
	return ms
}

// Scan returns the matches in text, in offset order, or an error wrapping
// ErrLimit when decoding would exceed the scanner's limits.
func (s *Scanner) Scan(text []byte) ([]Match, error) {
	st := getState(s)
	defer putState(st)
	// The matches live in st, which goes back to the pool: the caller
	// gets a copy, with an error too.
	ms := slices.Clone(st.scan(text, 0))
	return ms, st.err
}

// state is one scan's working memory.
type state struct {
	s       *Scanner
	budget  int // decoded bytes left
	err     error
	out     []Match
	decoded [][]byte // per depth
	// key is the member name of the string being scanned, when it is an
	// object member's value ("" otherwise): a generic-secret context.
	key []byte
}

var states = sync.Pool{New: func() any { return new(state) }}

func getState(s *Scanner) *state {
	st := states.Get().(*state)
	st.s, st.budget, st.err, st.out, st.key = s, s.maxDecoded, nil, st.out[:0], nil
	return st
}

func putState(st *state) {
	if cap(st.out) > 1024 {
		st.out = nil
	}
	for i, b := range st.decoded {
		if cap(b) > 64<<10 {
			st.decoded[i] = nil
		}
	}
	st.s, st.key = nil, nil
	states.Put(st)
}

// scan returns the matches in text, sorted and without what another match
// explains (see resolve). At depth 0 they are st.out itself, valid until
// the next scan; a nested scan (of decoded text, at depth > 0) returns a
// copy and leaves st.out as it found it.
func (st *state) scan(text []byte, depth int) []Match {
	start := len(st.out)
	if depth == 0 {
		st.out = st.out[:0]
		start = 0
	}
	st.tokens(text, depth)
	st.keyed(text)
	ms := resolve(st.out[start:])
	st.out = st.out[:start+len(ms)]
	if depth == 0 {
		return st.out
	}
	out := slices.Clone(ms)
	st.out = st.out[:start]
	return out
}

func (st *state) emit(d detector, off, n int, conf float64) {
	if !st.s.enabled[d] {
		return
	}
	st.out = append(st.out, Match{Detector: detectors[d].id, det: d, Offset: off, Length: n, Confidence: conf})
}

// resolve sorts ms by offset and drops what another match explains: an
// exact duplicate, and, overlapping a specific secret found in the clear,
// a generic-secret match, an encoded match (a JWT's payload) and PII
// (digits inside a key). It runs in O(n log n) for n matches.
func resolve(ms []Match) []Match {
	if len(ms) < 2 {
		return ms
	}
	slices.SortFunc(ms, func(a, b Match) int {
		if a.Offset != b.Offset {
			return a.Offset - b.Offset
		}
		if a.Length != b.Length {
			return b.Length - a.Length
		}
		if a.det != b.det {
			return int(a.det) - int(b.det)
		}
		return strings.Compare(a.Encoding, b.Encoding)
	})
	// Intervals of specific secrets in the clear, with the running
	// maximum of their ends (they are in offset order already).
	var starts, maxEnd []int
	for _, m := range ms {
		if dominant(m) {
			e := m.Offset + m.Length
			if n := len(maxEnd); n > 0 && maxEnd[n-1] > e {
				e = maxEnd[n-1]
			}
			starts, maxEnd = append(starts, m.Offset), append(maxEnd, e)
		}
	}
	keep := ms[:0]
	var prev Match
	for i, m := range ms {
		if i > 0 && m.det == prev.det && m.Offset == prev.Offset && m.Length == prev.Length {
			continue // a duplicate; the one found in the clear (Encoding "") sorts first
		}
		prev = m
		if !dominant(m) && len(starts) > 0 {
			// The last dominant interval starting before m ends.
			k, _ := slices.BinarySearch(starts, m.Offset+m.Length)
			if k > 0 && maxEnd[k-1] > m.Offset {
				continue
			}
		}
		keep = append(keep, m)
	}
	return keep
}

// dominant reports whether m, where it overlaps other matches, explains
// them: a specific secret found in the clear.
func dominant(m Match) bool {
	return m.Encoding == "" && m.det != detGeneric && detectors[m.det].category == CategorySecret
}
