package gateway

import (
	"strings"
	"time"
)

// DecisionApproval is recorded for a message policy sent for human
// approval.
const DecisionApproval = "approval"

// Decision is what policy decided about an exchange, with the reasons and
// rule ids that led to it. The policy stage sets it on the exchange; the
// audit stages record it.
type Decision struct {
	// Allow is true when policy allows the message (perhaps after
	// approval, when Approval is set).
	Allow bool
	// Approval, when set on an allowed message, asks for a human approval
	// before the message may go on.
	Approval *ApprovalRequest
	// Redact lists paths into the message (see the policy package) whose
	// values are replaced before delivery.
	Redact []string
	// Reasons explain the decision: the deny reasons of a denied message,
	// otherwise the reasons policy gave.
	Reasons []string
	// Rules are the ids of the rules that decided.
	Rules []string
	// Detail is what went wrong when the evaluation itself failed (OPA's
	// error text, which may quote input or data). It is recorded in the
	// audit log and never sent to the client.
	Detail string
	// PolicyVersion identifies the policy set that decided: the hash of
	// its files.
	PolicyVersion string
	// Input is the policy input as JSON, without the arguments and the
	// result (the audit row keeps the arguments): what `policy replay`
	// needs to evaluate another policy on this message.
	Input []byte
}

// Verdict returns the decision as recorded: DecisionAllow, DecisionDeny or
// DecisionApproval.
func (d *Decision) Verdict() string {
	switch {
	case !d.Allow:
		return DecisionDeny
	case d.Approval != nil:
		return DecisionApproval
	}
	return DecisionAllow
}

// ApprovalRequest is policy's request for a human approval.
type ApprovalRequest struct {
	// Reason is shown to the reviewers.
	Reason string
	// Reviewers is the group whose members may decide.
	Reviewers string
	// Timeout is how long the call waits for a decision; 0 takes the
	// approval queue's default.
	Timeout time.Duration
	// Quorum is how many distinct reviewers must approve; 0 means 1.
	Quorum int
	// Mode is ApprovalModeHold or ApprovalModeRetry; "" takes the
	// approval queue's default.
	Mode string
}

// DenyMessage is the text a client gets for a message refused by policy.
func (d *Decision) DenyMessage() string {
	if len(d.Reasons) == 0 {
		return "denied by policy"
	}
	return "denied by policy: " + strings.Join(d.Reasons, "; ")
}
