package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/sallyport/sallyport/gateway/jsonrpc"
)

// ApprovalState is where an approval item is in its life. The transitions
// are:
//
//	pending  → approved | denied | expired | cancelled
//	approved → executed | failed | ambiguous | expired
//
// approved → expired happens only to a grant nobody claimed before the
// item's expiry (retry mode: the client never came back). A claimed grant
// always ends executed, failed or ambiguous. Every other state is final.
type ApprovalState string

// Approval states.
const (
	// ApprovalPending: waiting for reviewers.
	ApprovalPending ApprovalState = "pending"
	// ApprovalApproved: the quorum approved; the grant authorizes exactly
	// one delivery of exactly the bound call.
	ApprovalApproved ApprovalState = "approved"
	// ApprovalDenied: a reviewer denied it.
	ApprovalDenied ApprovalState = "denied"
	// ApprovalExpired: no reviewer decided in time (never a denial), or a
	// grant was not claimed in time.
	ApprovalExpired ApprovalState = "expired"
	// ApprovalCancelled: the client cancelled or went away (hold mode), or
	// the call no longer matches what reviewers would see (the tool
	// definition changed).
	ApprovalCancelled ApprovalState = "cancelled"
	// ApprovalExecuted: delivered, and the backend answered with a result.
	ApprovalExecuted ApprovalState = "executed"
	// ApprovalFailed: approved, and the backend answered with an error or
	// the call could not be delivered; nothing ran, or the backend said
	// what went wrong.
	ApprovalFailed ApprovalState = "failed"
	// ApprovalAmbiguous: delivered, and no answer came (timeout, crash
	// mid-call): nobody knows whether its effect happened. It is never
	// retried by the gateway.
	ApprovalAmbiguous ApprovalState = "ambiguous"
)

// ApprovalStates lists every state, in life order.
var ApprovalStates = []ApprovalState{ApprovalPending, ApprovalApproved, ApprovalDenied, ApprovalExpired,
	ApprovalCancelled, ApprovalExecuted, ApprovalFailed, ApprovalAmbiguous}

// Final reports whether no transition leaves s.
func (s ApprovalState) Final() bool { return s != ApprovalPending && s != ApprovalApproved }

// CanMove reports whether the state machine allows s → t.
func (s ApprovalState) CanMove(t ApprovalState) bool {
	switch s {
	case ApprovalPending:
		return t == ApprovalApproved || t == ApprovalDenied || t == ApprovalExpired || t == ApprovalCancelled
	case ApprovalApproved:
		return t == ApprovalExecuted || t == ApprovalFailed || t == ApprovalAmbiguous || t == ApprovalExpired
	}
	return false
}

// Approval modes.
const (
	// ApprovalModeHold holds the client's request open until a decision;
	// when the client gives up, the item is cancelled.
	ApprovalModeHold = "hold"
	// ApprovalModeRetry keeps the item pending when the client gives up;
	// the same principal's identical call attaches to it, and is delivered
	// once the item is approved.
	ApprovalModeRetry = "retry"
)

// ApprovalBinding is the exact call an approval item authorizes. Two calls
// are the same call when every field is equal.
type ApprovalBinding struct {
	Principal string `json:"principal"`
	Backend   string `json:"backend"`
	// Method is tools/call, prompts/get or resources/read.
	Method string `json:"method"`
	// Target is the tool or prompt as the backend knows it, or the URI.
	Target string `json:"target"`
	// DefinitionHash is DefinitionHash of the definition the call was
	// judged against ("" when the target has none, e.g. a resource).
	DefinitionHash string `json:"definition_hash"`
	// ArgumentsHash is "sha256:<hex>" of the canonical arguments.
	ArgumentsHash string `json:"arguments_hash"`
	// PolicyVersion is the version of the policy that asked for approval.
	PolicyVersion string `json:"policy_version"`
}

// ApprovalVote is one reviewer's decision on an item.
type ApprovalVote struct {
	Reviewer string    `json:"reviewer"`
	Approve  bool      `json:"approve"`
	Comment  string    `json:"comment,omitempty"`
	Time     time.Time `json:"time"`
}

// ApprovalTransition is one recorded change of an item's state.
type ApprovalTransition struct {
	From ApprovalState `json:"from,omitempty"`
	To   ApprovalState `json:"to"`
	// Actor is the reviewer who decided, the principal who cancelled, or
	// "sallyport" for the gateway itself (expiry, delivery outcomes).
	Actor   string    `json:"actor"`
	Comment string    `json:"comment,omitempty"`
	Time    time.Time `json:"time"`
	// AuditSeq is the Seq of the transition's audit row.
	AuditSeq int64 `json:"audit_seq,omitempty"`
}

// ApprovalItem is one call held for human approval. It holds the call's
// arguments as they will be forwarded (after DLP's rewrites), never a
// value DLP redacted.
type ApprovalItem struct {
	// ID is "apr_" and 128 random bits: not guessable.
	ID    string        `json:"id"`
	State ApprovalState `json:"state"`
	Mode  string        `json:"mode"`
	ApprovalBinding
	TokenID   string `json:"token_id,omitempty"`
	Session   string `json:"session"`
	Transport string `json:"transport,omitempty"`
	// Arguments are the canonical JSON arguments, for display.
	Arguments string `json:"arguments,omitempty"`
	// Findings are the DLP findings as AuditFindingsText writes them.
	Findings string `json:"findings,omitempty"`
	// Reason is policy's reason for asking; Reasons and Rules are the
	// decision's reasons and rule ids.
	Reason  string   `json:"reason,omitempty"`
	Reasons []string `json:"reasons,omitempty"`
	Rules   []string `json:"rules,omitempty"`
	// Reviewers is the group whose members may decide; Quorum how many
	// distinct approvals it takes (any one denial denies).
	Reviewers string    `json:"reviewers"`
	Quorum    int       `json:"quorum"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	// Updated is when the item last changed.
	Updated time.Time      `json:"updated"`
	Votes   []ApprovalVote `json:"votes,omitempty"`
	// Claimed is when a delivery took the grant (approved items only):
	// the one delivery the grant authorizes.
	Claimed *time.Time `json:"claimed,omitempty"`
	// ClaimedBy names the gateway process delivering the claimed grant,
	// "host/pid/instance": an item whose process died before it recorded
	// the outcome becomes ambiguous.
	ClaimedBy string `json:"claimed_by,omitempty"`
	// Related are earlier items for the same call (same principal,
	// backend, target and arguments) that ended ambiguous: a reviewer
	// must know the effect may have happened already.
	Related []string `json:"related,omitempty"`
	// AuditSeq is the Seq of the held request's audit row.
	AuditSeq int64 `json:"audit_seq,omitempty"`
	// Outcome says how the item ended: the deny comment, the backend's
	// error, why it was cancelled.
	Outcome     string               `json:"outcome,omitempty"`
	Transitions []ApprovalTransition `json:"transitions"`
	// Rev is the store's revision of the item: it grows with each change,
	// across all items (ApprovalStore.ApprovalsSince).
	Rev int64 `json:"rev"`
}

// Approvals counts the approving votes.
func (it *ApprovalItem) Approvals() int {
	n := 0
	for _, v := range it.Votes {
		if v.Approve {
			n++
		}
	}
	return n
}

// Voted reports whether reviewer has voted on the item.
func (it *ApprovalItem) Voted(reviewer string) bool {
	for _, v := range it.Votes {
		if v.Reviewer == reviewer {
			return true
		}
	}
	return false
}

// Approval store errors.
var (
	ErrApprovalNotFound = errors.New("no such approval")
	// ErrApprovalLimit: the principal has as many pending items as allowed.
	ErrApprovalLimit = errors.New("too many pending approvals")
)

// ApprovalFilter selects items; zero fields select everything.
type ApprovalFilter struct {
	States    []ApprovalState
	Principal string
	Backend   string
	Target    string
	// Binding, when set, selects the items for exactly this call.
	Binding *ApprovalBinding
	// CallOf, when set, selects the items for the same call ignoring the
	// definition hash and the policy version: same principal, backend,
	// method, target and arguments hash.
	CallOf *ApprovalBinding
	// VisibleTo, when set, selects the items a principal may see: those
	// whose reviewers group is one of Groups, and those Principal asked
	// for; All selects every item (observers).
	VisibleTo *ApprovalVisibility
	// ExpiresBefore selects items whose expiry is before it.
	ExpiresBefore time.Time
	// Limit caps how many (newest first); 0: no cap.
	Limit int
}

// ApprovalVisibility is who looks at the items (ApprovalFilter.VisibleTo).
type ApprovalVisibility struct {
	Principal string
	Groups    []string
	All       bool
}

// ApprovalStore keeps approval items durably. Several processes may share
// one (`sallyport approvals approve` while `serve` runs): every change
// raises the store's revision, which ApprovalsSince reads.
type ApprovalStore interface {
	// InsertApproval stores a new item. When maxPending > 0 and the
	// item's principal already has that many pending items, nothing is
	// stored and the error is ErrApprovalLimit.
	InsertApproval(ctx context.Context, it *ApprovalItem, maxPending int) error
	// UpdateApproval reads the item, calls fn on it and stores what fn
	// left, all in one write transaction; an error from fn stores nothing
	// and is returned. ErrApprovalNotFound for an unknown id.
	UpdateApproval(ctx context.Context, id string, fn func(it *ApprovalItem) error) (*ApprovalItem, error)
	// Approval returns one item; ErrApprovalNotFound for an unknown id.
	Approval(ctx context.Context, id string) (*ApprovalItem, error)
	// Approvals returns the items f selects, newest first.
	Approvals(ctx context.Context, f ApprovalFilter) ([]*ApprovalItem, error)
	// ApprovalsSince returns the items changed after revision rev, oldest
	// change first, and the store's current revision.
	ApprovalsSince(ctx context.Context, rev int64) ([]*ApprovalItem, int64, error)
	// CountApprovals counts the items in each state: principal's, or
	// everybody's when principal is "".
	CountApprovals(ctx context.Context, principal string) (map[ApprovalState]int, error)
}

// DefinitionHash returns "sha256:<hex>" of the canonical JSON of a tool or
// prompt definition, "" for none. A definition that is not JSON hashes its
// bytes.
func DefinitionHash(def []byte) string {
	if len(def) == 0 {
		return ""
	}
	return jsonHash(def)
}

// ArgumentsHash returns "sha256:<hex>" of the canonical JSON arguments; no
// arguments hash like {}.
func ArgumentsHash(args []byte) string {
	if len(args) == 0 {
		args = []byte("{}")
	}
	return jsonHash(args)
}

func jsonHash(raw []byte) string {
	if c, err := jsonrpc.Canonical(raw); err == nil {
		raw = c
	}
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Grant is the approval item an exchange was held under. The audit stages
// record its id on the exchange's rows; the Gate refuses an exchange whose
// decision asks for approval unless its grant is Approved.
type Grant struct {
	// ID is the approval item's id.
	ID string
	// AuditSeq is the Seq of the held request's audit row.
	AuditSeq int64
	// Approved is true once the item authorizes this delivery (the grant
	// was claimed); until then the exchange is only held under it.
	Approved bool
}

// ErrNoAnswer marks a delivery error after the request reached the backend
// and no answer came back (timeout, crash, cancellation): whether the call
// took effect is unknown.
var ErrNoAnswer = errors.New("the request was delivered and no answer came")

// Progress sends the waiting client a progress notification for its
// request, when it asked for them (a progressToken). The session sets it
// on a client's request exchange; it is nil when the client gave no
// token.
type Progress func(ctx context.Context, progress float64, message string)
