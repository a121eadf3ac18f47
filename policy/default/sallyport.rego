# Sallyport's default policy: used when the configuration names no policy.
#
#   - Anyone may use read-only traffic of backends the configuration marks
#     trusted; anonymous principals may use nothing else, except the tools
#     of a trusted backend that the configuration marks destructive, which
#     they may call after a reviewer approves (anonymous access is for
#     loopback only: the demo).
#   - A tool the configuration marks destructive needs a human approval.
#     The backend's own annotations are never trusted for this.
#   - A backend may not ask the client to sample with context from other
#     servers or the whole session (includeContext other than "none").
#   - Everything else is allowed for authenticated principals.
package sallyport

# Methods the gateway answers itself: the handshake, ping, the session's
# log level and the lists (which are filtered entry by entry by this same
# policy).
gateway_methods := {
	"initialize", "ping", "logging/setLevel",
	"tools/list", "prompts/list", "resources/list", "resources/templates/list",
}

# Methods that only read from a backend.
read_methods := {
	"resources/read", "resources/subscribe", "resources/unsubscribe",
	"prompts/get", "completion/complete",
}

deny contains {
	"rule": "default/anonymous-read-only",
	"reason": "anonymous principals may only use read-only tools and resources of trusted backends",
} if {
	input.principal.anonymous
	input.direction == "client_to_backend"
	input.kind == "request"
	not read_only_request
	not trusted_destructive_call
}

# A call to a trusted backend's tool that the configuration marks
# destructive: it is held for approval (below), whoever asks.
trusted_destructive_call if {
	input.backend.trusted
	input.method == "tools/call"
	input.tool.destructive
}

deny contains {
	"rule": "default/sampling-include-context",
	"reason": sprintf("sampling with includeContext %q is not allowed: only \"none\"", [input.params.includeContext]),
} if {
	input.kind == "server_request"
	input.method == "sampling/createMessage"
	input.params.includeContext != "none"
}

approval contains {
	"rule": "default/destructive-tool",
	"reason": sprintf("%s is marked destructive in the gateway configuration", [input.tool.name]),
} if {
	input.kind == "request"
	input.method == "tools/call"
	input.tool.destructive
}

read_only_request if input.method in gateway_methods

read_only_request if {
	input.backend.trusted
	input.method in read_methods
}

read_only_request if {
	input.backend.trusted
	input.method == "tools/call"
	input.tool.read_only
}

# The decision: denied when any deny rule matches; otherwise allowed,
# after an approval when any approval rule matches.
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
		"reviewers": "reviewers",
		"timeout": "10m",
	},
	"rules": {a.rule | some a in approval},
} if {
	count(approval) > 0
} else := {
	"allow": true,
	"rules": {"default/allow"},
}
