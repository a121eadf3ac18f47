# Private keys leave through tool arguments only toward a vault, and never
# reach the client in a tool result.
#
# These rules read the DLP stage's findings, never the message text: each
# object of input.findings says which detector matched, where (path, in the
# redaction path syntax: params.arguments.key, result.content[0].text) and
# what DLP did about it (action). See "DLP findings in policy" in
# policy/README.md.
#
# With DLP's defaults a secret on its way to a backend is blocked by DLP
# itself, before policy runs, and a secret on its way to a client is
# already redacted. The deny rule below matters when a DLP rule lets a
# private-key finding through with action flag, for instance
#
#   dlp:
#     rules:
#       - {detectors: [private-key], direction: client_to_backend, action: flag}
#
# so that policy decides: a backend labelled as a vault
# (labels: {kind: vault}) may receive keys, no other may.
#
# Reasons never quote the key, nor the argument it was found in: they are
# shown to the client and kept in the audit log.
package sallyport

deny contains {
	"rule": "examples/private-key-in-arguments",
	"reason": "the arguments hold a private key; private keys may only be sent to a vault",
} if {
	input.kind == "request"
	some f in input.findings
	f.detector == "private-key"
	in_arguments(f.path)
	not vault_backend
}

# A helper, so that a call with no backend (or no labels) counts as not a
# vault: `input.backend.labels.kind != "vault"` would be undefined there.
vault_backend if input.backend.labels.kind == "vault"

in_arguments(p) if p == "params.arguments"

in_arguments(p) if startswith(p, "params.arguments.")

in_arguments(p) if startswith(p, "params.arguments[")

# The value of a result (or error) where DLP found a private key is
# replaced by "[REDACTED]", whatever DLP did with the key itself: a
# finding's path names exactly one string value.
redact contains f.path if {
	input.kind == "result"
	some f in input.findings
	f.detector == "private-key"
}
