# A card number that a tool result would carry to the client, unchanged,
# needs an approval by the payments team.
#
# With DLP's defaults, a card number in a result is masked (only its last
# four digits reach the client) and this rule never fires. It is for
# deployments that let card numbers through to some clients, with a DLP
# rule that flags them instead:
#
#   dlp:
#     rules:
#       - {detectors: [CREDIT_CARD], direction: backend_to_client, backends: [billing], action: flag}
#
# A finding with action "flag" is one DLP left in the message: the result
# still holds the number. Masked, redacted or hashed numbers do not count.
# The reason names no number and no field: it is shown to the client and
# kept in the audit log.
package sallyport

approval contains {
	"rule": "examples/card-in-result",
	"reason": "a card number leaves in a tool result",
	"reviewers": "payments",
} if {
	input.kind == "result"
	input.method == "tools/call"
	some f in input.findings
	f.detector == "CREDIT_CARD"
	f.action == "flag"
}
