package gateway

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// Audit decisions and outcomes, as recorded in AuditRecord.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"

	// OutcomeOK: a result was delivered.
	OutcomeOK = "ok"
	// OutcomeError: a JSON-RPC error was delivered in answer, from the
	// backend or from the gateway (backend down, timeout, no such tool).
	OutcomeError = "error"
	// OutcomeRefused: the pipeline refused the message; it was not
	// delivered.
	OutcomeRefused = "refused"
	// OutcomeCancelled: the client or the gateway gave up on the request.
	OutcomeCancelled = "cancelled"
)

// GenesisHash is the PrevHash of the first row of an audit log.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// AuditRecord is one row of the audit log: one message the pipeline
// handled, in either direction. Only Seq, PrevHash, Hash and MAC are
// filled in by the AuditLog; the rest is the content the hash covers.
//
// An AuditRecord never holds a credential: not the caller's bearer token,
// not a header, not a secret injected from Vault.
type AuditRecord struct {
	// Seq is the row's position in the log: 1, 2, 3, … with no gaps
	// except where retention pruned the start.
	Seq  int64
	Time time.Time
	// Session is the gateway session id; Transport the client transport.
	Session         string
	Transport       string
	ProtocolVersion string
	ClientName      string
	ClientVersion   string
	Principal       string
	TokenID         string
	Direction       string // Direction.String()
	Kind            string // Kind.String()
	Method          string
	// MessageID is the JSON-RPC id as the client or backend sent it (raw
	// JSON), for requests, server requests and their results.
	MessageID string
	// Ref is, for a result or a refusal of one, the Seq of the row of the
	// request it answers.
	Ref     int64
	Backend string
	// Target is the tool or prompt name as the backend knows it, or a
	// resource URI.
	Target string
	// Arguments are the canonical JSON arguments (jsonrpc.Canonical), or
	// "sha256:<hex>" of them when the log keeps digests only.
	Arguments     string
	Decision      string
	Reasons       []string
	Rules         []string
	PolicyVersion string
	// PolicyInput is the policy input document as JSON, without the
	// arguments (in Arguments) and the result: what `sallyport policy
	// replay` evaluates a candidate policy on.
	PolicyInput string
	// Findings are the DLP findings as AuditFindingsText writes them:
	// detector, path, span and action, never the values.
	Findings  string
	Outcome   string
	ErrorCode int64
	Error     string
	// LatencyMicros is, for a result, the time from the request entering
	// the gateway to its answer.
	LatencyMicros int64
	// Bytes is the size of the message as encoded.
	Bytes int64
	// Approval is the id of the approval item the row belongs to: the
	// held request, each transition of the item, and the delivered call
	// and its answer.
	Approval string
	// Skipped counts the notifications of this method and session that
	// sampling left unrecorded since the previous recorded one.
	Skipped int64

	// PrevHash is the Hash of the row before (GenesisHash for the first).
	PrevHash string
	// Hash is the hex SHA-256 of the row's canonical content (see
	// AppendCanonical), which includes Seq and PrevHash.
	Hash string
	// MAC is, on checkpoint rows, the hex HMAC-SHA256 of Hash under the
	// audit key (see CheckpointMAC); empty elsewhere.
	MAC string
}

// Sanitize replaces invalid UTF-8 in r's text fields with U+FFFD, so that
// what is hashed, stored, exported and read back is the same text. Most
// text comes through the strict codec and is valid already; error texts
// of transports (an HTTP status line) need not be.
func (r *AuditRecord) Sanitize() {
	for _, p := range []*string{&r.Session, &r.Transport, &r.ProtocolVersion, &r.ClientName, &r.ClientVersion,
		&r.Principal, &r.TokenID, &r.Direction, &r.Kind, &r.Method, &r.MessageID, &r.Backend, &r.Target,
		&r.Arguments, &r.Decision, &r.PolicyVersion, &r.PolicyInput, &r.Findings, &r.Outcome, &r.Error, &r.Approval} {
		if !utf8.ValidString(*p) {
			*p = strings.ToValidUTF8(*p, "\uFFFD")
		}
	}
	for _, list := range [][]string{r.Reasons, r.Rules} {
		for i, v := range list {
			if !utf8.ValidString(v) {
				list[i] = strings.ToValidUTF8(v, "\uFFFD")
			}
		}
	}
}

// AuditTimeLayout is how audit times are written: UTC, microseconds.
const AuditTimeLayout = "2006-01-02T15:04:05.000000Z"

// AppendCanonical appends r's canonical content: a JSON object of every
// field except Hash and MAC, keys sorted, fields with the zero value left
// out, times in AuditTimeLayout. A verifier in any language can rebuild
// it from an export.
func (r *AuditRecord) AppendCanonical(b []byte) []byte {
	b = append(b, '{')
	first := true
	key := func(k string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, `":`...)
	}
	str := func(k, v string) {
		if v != "" {
			key(k)
			b = jsonrpc.AppendQuote(b, v)
		}
	}
	num := func(k string, v int64) {
		if v != 0 {
			key(k)
			b = strconv.AppendInt(b, v, 10)
		}
	}
	list := func(k string, vs []string) {
		if len(vs) > 0 {
			key(k)
			b = appendList(b, vs)
		}
	}
	// Keys in sorted order.
	str("approval", r.Approval)
	str("arguments", r.Arguments)
	str("backend", r.Backend)
	num("bytes", r.Bytes)
	str("client_name", r.ClientName)
	str("client_version", r.ClientVersion)
	str("decision", r.Decision)
	str("direction", r.Direction)
	str("error", r.Error)
	num("error_code", r.ErrorCode)
	str("findings", r.Findings)
	str("kind", r.Kind)
	num("latency_us", r.LatencyMicros)
	str("message_id", r.MessageID)
	str("method", r.Method)
	str("outcome", r.Outcome)
	str("policy_input", r.PolicyInput)
	str("policy_version", r.PolicyVersion)
	str("prev_hash", r.PrevHash)
	str("principal", r.Principal)
	str("protocol_version", r.ProtocolVersion)
	list("reasons", r.Reasons)
	num("ref", r.Ref)
	list("rules", r.Rules)
	num("seq", r.Seq)
	str("session", r.Session)
	num("skipped", r.Skipped)
	str("target", r.Target)
	if !r.Time.IsZero() {
		str("time", r.Time.UTC().Format(AuditTimeLayout))
	}
	str("token_id", r.TokenID)
	str("transport", r.Transport)
	return append(b, '}')
}

var canonicalBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// ComputeHash returns the hash r should carry: the hex SHA-256 of its
// canonical content.
func (r *AuditRecord) ComputeHash() string {
	buf := canonicalBufs.Get().(*[]byte)
	b := r.AppendCanonical((*buf)[:0])
	sum := sha256.Sum256(b)
	if cap(b) <= 64<<10 {
		*buf = b
		canonicalBufs.Put(buf)
	}
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	return string(h[:])
}

// CheckpointMAC returns the MAC a checkpoint row with this seq and hash
// carries under key: hex HMAC-SHA256 of "sallyport-audit-checkpoint\n"
// seq "\n" hash.
func CheckpointMAC(key []byte, seq int64, hash string) string {
	return auditMAC(key, "sallyport-audit-checkpoint", seq, hash)
}

// AnchorMAC returns the MAC of a retention anchor (the Seq and Hash of the
// last pruned row) under key. Its domain ("sallyport-audit-anchor")
// differs from CheckpointMAC's, so a checkpoint row's MAC can never pass
// for an anchor's.
func AnchorMAC(key []byte, seq int64, hash string) string {
	return auditMAC(key, "sallyport-audit-anchor", seq, hash)
}

func auditMAC(key []byte, domain string, seq int64, hash string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(domain + "\n"))
	m.Write(strconv.AppendInt(nil, seq, 10))
	m.Write([]byte("\n"))
	m.Write([]byte(hash))
	return hex.EncodeToString(m.Sum(nil))
}

// AuditListText is how a row's list (reasons, rules) is stored and
// exported: a JSON array of strings, "" when empty.
func AuditListText(vs []string) string {
	if len(vs) == 0 {
		return ""
	}
	return string(appendList(nil, vs))
}

func appendList(b []byte, vs []string) []byte {
	b = append(b, '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonrpc.AppendQuote(b, v)
	}
	return append(b, ']')
}

// AppendAuditList appends the strings of a list as AuditListText writes
// it ("" is the empty list) to dst.
func AppendAuditList(dst []string, text string) ([]string, error) {
	if text == "" {
		return dst, nil
	}
	bad := false
	err := jsonrpc.EachElement(json.RawMessage(text), func(_ int, v json.RawMessage) bool {
		s, ok := jsonrpc.Unquote(v)
		bad = !ok
		dst = append(dst, s)
		return ok
	})
	if err == nil && bad {
		err = errors.New("not a list of strings")
	}
	return dst, err
}

// AuditFilter selects audit rows. Zero fields select everything.
type AuditFilter struct {
	Since, Until time.Time // Since inclusive, Until exclusive
	Principal    string
	Backend      string
	Target       string // tool, prompt or resource URI
	Method       string
	Decision     string
	// Approval selects the rows of one approval item.
	Approval string
	// AfterSeq selects rows with a greater Seq, ThroughSeq (when not 0)
	// rows with a Seq not greater; Limit caps how many (0: no cap).
	AfterSeq   int64
	ThroughSeq int64
	Limit      int
}

// AuditAnchor is where the log's remaining chain starts after retention
// pruned its beginning: the Seq and Hash of the last pruned row, and the
// MAC of that pair under the audit key when one is configured.
type AuditAnchor struct {
	Seq  int64
	Hash string
	MAC  string
	Time time.Time
}

// ErrAuditUnavailable wraps every failure to record an audit row; the
// message is then refused with CodeAuditUnavailable.
var ErrAuditUnavailable = errors.New("audit log unavailable")

// AuditLog is the durable, hash-chained audit log.
type AuditLog interface {
	// Append assigns each record its Seq, PrevHash, Hash (and MAC on
	// checkpoint rows) and stores them, in order, durably: when Append
	// returns nil, the rows survive a crash of the process. Concurrent
	// calls are batched into one transaction (group commit). An error
	// (wrapping ErrAuditUnavailable) means none of recs was stored.
	Append(ctx context.Context, recs ...*AuditRecord) error
	// Enqueue queues recs to be written, in order, with the next group
	// commit, and returns without waiting for it: a crash may lose them.
	// While writes are failing it writes them as Append does and returns
	// its error, so that a caller refuses its message then.
	Enqueue(recs ...*AuditRecord) error
	// Flush waits until every row enqueued before it is written. It
	// returns an error (wrapping ErrAuditUnavailable) when the last write
	// failed.
	Flush(ctx context.Context) error
	// Scan calls fn for each row f selects, in Seq order, streaming: memory
	// stays constant however many rows there are. fn must not keep r. A
	// non-nil error from fn stops the scan and is returned.
	Scan(ctx context.Context, f AuditFilter, fn func(r *AuditRecord) error) error
	// Head returns the Seq and Hash of the last row (those of the anchor
	// when there is none).
	Head(ctx context.Context) (seq int64, hash string, err error)
	// Anchor returns where the chain starts: the zero AuditAnchor (Seq 0,
	// GenesisHash) until retention first pruned rows.
	Anchor(ctx context.Context) (AuditAnchor, error)
	// Prune deletes the rows older than before, keeping at least the last
	// row, and moves the anchor to the last row deleted. It returns how
	// many rows it deleted.
	Prune(ctx context.Context, before time.Time) (int64, error)
}
