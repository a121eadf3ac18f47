# Email outside the company needs an approval by the security team.
#
# An email tool is one the backend calls send_email, one whose public name
# ends with send_email (mail__send_email), or one named in
# data.sallyport.config.email_tools. Its recipients are the values of the
# arguments data.sallyport.config.email_recipient_fields (to, cc, bcc):
# each an array of addresses or a single address, any of them may be absent.
#
# An address is internal when it is one plain address whose domain (after
# the last "@", compared without regard to case) is exactly
# data.sallyport.config.company_domain. Everything else counts as external,
# so it needs an approval: other domains and subdomains, display-name forms
# ("Bob <bob@example.com>"), lists in one string ("a@x.com, b@y.com"),
# values that are not strings.
package sallyport

approval contains {
	"rule": "examples/external-email",
	"reason": sprintf("email to %d recipient(s) outside %s", [count(external_recipients), company_domain_shown]),
	"reviewers": email_reviewers,
} if {
	count(external_recipients) > 0
}

external_recipients := {addr |
	some addr in recipients
	not internal_address(addr)
}

recipients contains addr if {
	email_call
	some field in recipient_fields
	some addr in as_list(input.arguments[field])
}

email_call if {
	input.method == "tools/call"
	input.kind == "request"
	not input.listing
	email_tool
}

email_tool if input.tool.backend_name == "send_email"

email_tool if endswith(input.tool.name, "send_email")

email_tool if input.tool.backend_name in data.sallyport.config.email_tools

recipient_fields := f if {
	f := data.sallyport.config.email_recipient_fields
} else := ["to", "cc", "bcc"]

email_reviewers := r if {
	r := data.sallyport.config.email_reviewers
} else := "security"

as_list(v) := v if {
	is_array(v)
} else := [v]

# No comma, semicolon, space, angle bracket, quote or parenthesis: one
# plain address, not a list or a display name that could hide another.
internal_address(addr) if {
	is_string(addr)
	not regex.match(`[\s,;<>"()]`, addr)
	parts := split(addr, "@")
	count(parts) > 1
	lower(parts[count(parts) - 1]) == lower(data.sallyport.config.company_domain)
}

company_domain_shown := d if {
	d := data.sallyport.config.company_domain
} else := "the company domain"
