# Example policy set for Sallyport: the decision, and a baseline.
#
# Every file of this directory is in package sallyport and adds to three
# partial sets, which this file turns into the decision document Sallyport
# evaluates (data.sallyport.decision; see policy/README.md):
#
#   deny      objects {"rule": ..., "reason": ...}: the message is refused.
#   approval  objects {"rule": ..., "reason": ...} (and "reviewers", a
#             group): the message needs a human approval before it goes on.
#   redact    path strings such as result["content"][0]["text"]: the values
#             there are replaced by "[REDACTED]" before delivery.
#
# Everything that no rule denies is allowed. Reasons are shown to end users
# and kept in the audit log: never put argument values in them.
#
# Serve it with:   policy: {paths: [examples/policies]}
# Test it with:    sallyport policy test -v examples/policies
package sallyport

# Methods anyone may use, anonymous principals included: the handshake,
# ping and the lists (which the gateway filters entry by entry with this
# same policy; an anonymous principal sees empty lists).
open_methods := {
	"initialize", "ping",
	"tools/list", "prompts/list", "resources/list", "resources/templates/list",
}

# Baseline: an anonymous principal may connect and list, nothing else. Only
# client requests are judged here; results and notifications of what was
# allowed pass (notifications/initialized included, which the handshake
# needs).
deny contains {
	"rule": "examples/anonymous",
	"reason": "sign in to use this gateway: anonymous clients may only connect and list",
} if {
	input.principal.anonymous
	input.direction == "client_to_backend"
	input.kind == "request"
	not open_method
}

open_method if input.method in open_methods

# The decision. An else-chain, not one object built from comprehensions:
# it evaluates only what the verdict needs, about twice as fast.
decision := {
	"allow": false,
	"deny_reasons": {d.reason | some d in deny},
	"rules": {d.rule | some d in deny},
} if {
	count(deny) > 0
} else := {
	"allow": true,
	"require_approval": {
		"reason": concat("; ", {a.reason | some a in approval}),
		"reviewers": approval_reviewers,
		"timeout": "10m",
	},
	"redact": redact,
	"rules": {a.rule | some a in approval},
} if {
	count(approval) > 0
} else := {
	"allow": true,
	"redact": redact,
	"rules": {"examples/redact"},
} if {
	count(redact) > 0
} else := {
	"allow": true,
	"rules": {"examples/allow"},
}

# The reviewers of a message that needs an approval: the group the
# approval rules name (one request goes to one group), "security" when
# they name several or none.
approval_reviewers := g if {
	groups := {a.reviewers | some a in approval}
	count(groups) == 1
	some g in groups
} else := "security"
