package sallyport_test

import data.sallyport

customer_record := {
	"content": [{"type": "text", "text": "{\"name\": \"Ana Ruiz\", \"card_number\": \"4111111111111111\"}"}],
	"structuredContent": {"name": "Ana Ruiz", "card_number": "4111111111111111"},
}

flagged_card := [
	finding("CREDIT_CARD", "result.content[0].text", "flag"),
	finding("CREDIT_CARD", "result.structuredContent.card_number", "flag"),
]

test_a_flagged_card_in_a_tool_result_needs_payments_approval if {
	d := sallyport.decision with input as with_findings(tool_result(alice, docs, "lookup_customer", customer_record), flagged_card)
	d.allow
	d.require_approval.reason == "a card number leaves in a tool result"
	d.require_approval.reviewers == "payments"
	d.require_approval.timeout == "10m"
	d.rules == {"examples/card-in-result"}
}

test_the_reason_does_not_echo_the_number if {
	d := sallyport.decision with input as with_findings(tool_result(alice, docs, "lookup_customer", customer_record), flagged_card)
	not contains(d.require_approval.reason, "1111")
	not contains(d.require_approval.reason, "card_number")
}

test_masked_redacted_or_hashed_cards_pass if {
	every action in ["mask", "redact", "hash"] {
		d := sallyport.decision with input as with_findings(tool_result(alice, docs, "lookup_customer", customer_record), [finding("CREDIT_CARD", "result.structuredContent.card_number", action)])
		d.allow
		not d.require_approval
		d.rules == {"examples/allow"}
	}
}

test_other_flagged_findings_pass if {
	d := sallyport.decision with input as with_findings(tool_result(alice, docs, "lookup_customer", customer_record), [
		finding("EMAIL_ADDRESS", "result.structuredContent.email", "flag"),
		finding("PHONE_NUMBER", "result.structuredContent.phone", "flag"),
	])
	not d.require_approval
}

test_a_card_in_a_request_needs_no_approval if {
	d := sallyport.decision with input as with_findings(call(alice, docs, "charge", {"card": "4111111111111111"}), [finding("CREDIT_CARD", "params.arguments.card", "flag")])
	d.allow
	not d.require_approval
}

test_only_tool_results_count if {
	read := object.union(tool_result(alice, docs, "x", {"contents": [{"uri": "file:///cards.csv", "text": "4111111111111111"}]}), {"method": "resources/read"})
	d := sallyport.decision with input as with_findings(object.remove(read, ["tool"]), [finding("CREDIT_CARD", "result.contents[0].text", "flag")])
	not d.require_approval
}

test_a_result_without_findings_needs_no_approval if {
	d := sallyport.decision with input as tool_result(alice, docs, "lookup_customer", customer_record)
	d.allow
	not d.require_approval
}

test_a_card_and_a_key_in_one_result if {
	# The key's value is redacted and the approval still asked for.
	d := sallyport.decision with input as with_findings(tool_result(alice, docs, "lookup_customer", customer_record), array.concat(flagged_card, [finding("private-key", "result.structuredContent.name", "flag")]))
	d.require_approval.reviewers == "payments"
	d.redact == {"result.structuredContent.name"}
	d.rules == {"examples/card-in-result"}
}
