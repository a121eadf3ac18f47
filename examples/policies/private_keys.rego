# Private keys never leave through tool arguments, and never reach the
# client in a tool result.
#
# With DLP, each finding in input.findings says what a detector found where:
# {"detector", "path", "offset", "length", "confidence"}, path in the
# redaction syntax (params.arguments.key). A private-key finding in the
# arguments denies the call.
#
# Until DLP findings exist (input.findings is always empty today), the
# fallback rule looks for a PEM private key block ("-----BEGIN ... PRIVATE
# KEY-----") in every string of the arguments itself.
#
# Reasons never quote the key, nor the argument it was found in beyond its
# name: they are shown to the client and kept in the audit log.
package sallyport

deny contains {
	"rule": "examples/private-key-in-arguments",
	"reason": "the arguments hold a private key (found by DLP); private keys may not be sent to tools",
} if {
	some f in input.findings
	private_key_detector(f.detector)
	is_string(f.path)
	startswith(f.path, "params.arguments")
}

deny contains {
	"rule": "examples/private-key-in-arguments",
	"reason": "the arguments hold a private key; private keys may not be sent to tools",
} if {
	input.kind == "request"
	might_hold_private_key(input.arguments)
	walk(input.arguments, [_, value])
	is_string(value)
	holds_private_key(value)
}

# A string value of a tool result that holds a private key is replaced by
# "[REDACTED]". The path names it exactly: result["content"][0]["text"].
redact contains concat("", ["result", concat("", [step(s) | some s in path])]) if {
	input.kind == "result"
	might_hold_private_key(input.result)
	walk(input.result, [path, value])
	is_string(value)
	holds_private_key(value)
}

private_key_detector(id) if id == "PRIVATE_KEY"

private_key_detector(id) if {
	is_string(id)
	startswith(id, "private-key")
}

# A cheap first look at the whole value in one pass. walk builds a path for
# every value it visits, and most arguments and results hold no key.
might_hold_private_key(v) if contains(json.marshal(v), "PRIVATE KEY")

# A PEM private key block: PKCS#1 (RSA, EC, DSA), PKCS#8 (also ENCRYPTED),
# OpenSSH, PGP. The contains check first: most strings are not keys.
holds_private_key(s) if {
	contains(s, "PRIVATE KEY")
	regex.match(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----`, s)
}

# One step of a redaction path, from a step of a walk path: ["name"] for a
# member (any name, quoted as JSON), [n] for an array element.
step(s) := sprintf("[%s]", [json.marshal(s)]) if is_string(s)

step(s) := sprintf("[%d]", [s]) if is_number(s)
