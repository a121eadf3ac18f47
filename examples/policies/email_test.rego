package sallyport_test

import data.sallyport

# These tests use data.yaml: company_domain example.com.

email(args) := call(alice, mail, "send_email", object.union({"subject": "hi", "body": "hello"}, args))

needs_security_approval(d) if {
	d.allow
	d.require_approval.reviewers == "security"
	d.rules == {"examples/external-email"}
}

test_internal_email_needs_no_approval if {
	d := sallyport.decision with input as email({"to": ["bob@example.com"], "cc": ["carol@example.com"]})
	d.allow
	not d.require_approval
}

test_missing_cc_is_fine if {
	d := sallyport.decision with input as email({"to": ["bob@example.com"]})
	d.allow
	not d.require_approval
	needs_security_approval(sallyport.decision) with input as email({"to": ["eve@elsewhere.org"]})
}

test_no_recipients_needs_no_approval if {
	d := sallyport.decision with input as email({})
	not d.require_approval
}

test_domains_compare_without_case if {
	d := sallyport.decision with input as email({"to": ["Bob@EXAMPLE.com", "carol@Example.COM"]})
	d.allow
	not d.require_approval
}

test_external_recipient_needs_approval if {
	d := sallyport.decision with input as email({"to": ["bob@example.com", "eve@elsewhere.org"]})
	needs_security_approval(d)
	d.require_approval.reason == "email to 1 recipient(s) outside example.com"
	d.require_approval.timeout == "10m"
}

test_cc_and_bcc_count if {
	d := sallyport.decision with input as email({"to": ["bob@example.com"], "cc": ["eve@elsewhere.org"], "bcc": ["mallory@elsewhere.net"]})
	needs_security_approval(d)
	d.require_approval.reason == "email to 2 recipient(s) outside example.com"
}

test_reason_does_not_name_the_recipients if {
	d := sallyport.decision with input as email({"to": ["eve@elsewhere.org"]})
	not contains(d.require_approval.reason, "eve")
}

test_lookalike_addresses_are_external if {
	every to in [
		["a@mail.example.com"], # a subdomain
		["a@example.com.evil.org"],
		["a@notexample.com"],
		["a@evil.org, b@example.com"], # a list in one string
		["Eve <eve@evil.org>, b@example.com"],
		["example.com"], # no address at all
		[{"address": "a@example.com"}], # not a string
	] {
		needs_security_approval(sallyport.decision) with input as email({"to": to})
	}
}

test_a_single_address_string_counts if {
	needs_security_approval(sallyport.decision) with input as email({"to": "eve@elsewhere.org"})
	not sallyport.decision.require_approval with input as email({"to": "bob@example.com"})
}

test_tools_named_send_email_anywhere if {
	# By its public name: <backend>__..._send_email.
	d := sallyport.decision with input as call(alice, docs, "bulk_send_email", {"to": ["eve@elsewhere.org"]})
	needs_security_approval(d)
	not sallyport.decision.require_approval with input as call(alice, docs, "search", {"to": ["eve@elsewhere.org"]})
}

test_email_tools_stay_listed if {
	d := sallyport.decision with input as listed(alice, mail, "send_email")
	d.allow
	not d.require_approval
}
