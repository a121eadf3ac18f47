package sallyport_test

import data.sallyport

# The policy reads findings, not text: the keys in these inputs only make
# them look real. What matters is input.findings.

rsa_key := "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAuD6\n-----END RSA PRIVATE KEY-----\n"

openssh_key := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"

vault := {"id": "vault", "transport": "http", "labels": {"kind": "vault"}, "trusted": false}

# A key DLP flagged (a dlp rule with action flag) at path of a call.
flagged_key(doc, path) := with_findings(doc, [finding("private-key", path, "flag")])

denied_for_key(d) if {
	not d.allow
	d.rules == {"examples/private-key-in-arguments"}
}

test_private_key_in_arguments_is_denied if {
	denied_for_key(sallyport.decision) with input as flagged_key(call(alice, docs, "upload", {"content": rsa_key}), "params.arguments.content")
	denied_for_key(sallyport.decision) with input as flagged_key(call(alice, docs, "upload", {"files": [{"name": "id", "content": concat("", ["here you go:\n", openssh_key])}]}), "params.arguments.files[0].content")
	denied_for_key(sallyport.decision) with input as flagged_key(call(alice, docs, "upload", {"e-mail key": rsa_key}), `params.arguments["e-mail key"]`)
}

test_every_finding_action_denies if {
	# hash, mask or redact rewrote the key before policy: the call still
	# meant to send one.
	every action in ["flag", "hash", "mask", "redact"] {
		d := sallyport.decision with input as with_findings(call(alice, docs, "upload", {"content": "[REDACTED:private-key]"}), [finding("private-key", "params.arguments.content", action)])
		denied_for_key(d)
	}
}

test_a_key_in_a_member_name_is_denied if {
	f := object.union(finding("private-key", "params.arguments.x", "flag"), {"in_key": true})
	denied_for_key(sallyport.decision) with input as with_findings(call(alice, docs, "upload", {"x": "y"}), [f])
}

test_a_base64_encoded_key_is_denied if {
	f := object.union(finding("private-key", "params.arguments.blob", "flag"), {"encoding": "base64"})
	denied_for_key(sallyport.decision) with input as with_findings(call(alice, docs, "upload", {"blob": "LS0tLS1CRUdJTi..."}), [f])
}

test_private_key_in_prompt_arguments_is_denied if {
	get := object.union(request(alice, "prompts/get"), {"backend": docs, "prompt": {"name": "docs__review", "backend_name": "review", "definition_hash": ""}, "arguments": {"text": rsa_key}})
	denied_for_key(sallyport.decision) with input as flagged_key(get, "params.arguments.text")
}

test_a_vault_may_receive_keys if {
	d := sallyport.decision with input as flagged_key(call(alice, vault, "store_secret", {"value": rsa_key}), "params.arguments.value")
	d.allow
	d.rules == {"examples/allow"}
}

test_a_call_without_a_backend_is_not_a_vault if {
	doc := object.remove(call(alice, docs, "upload", {"content": rsa_key}), ["backend"])
	denied_for_key(sallyport.decision) with input as flagged_key(doc, "params.arguments.content")
	nolabels := object.union(call(alice, docs, "upload", {"content": rsa_key}), {"backend": {"id": "x", "transport": "stdio", "trusted": false}})
	denied_for_key(sallyport.decision) with input as flagged_key(nolabels, "params.arguments.content")
}

test_the_reason_does_not_echo_the_key_or_the_argument if {
	d := sallyport.decision with input as flagged_key(call(alice, docs, "upload", {"content": rsa_key}), "params.arguments.content")
	count(d.deny_reasons) == 1
	every r in d.deny_reasons {
		not contains(r, "MIIE")
		not contains(r, "content")
	}
}

test_keys_without_a_finding_pass if {
	# No text search: what DLP did not report (here, a body too short to
	# be a key), policy does not see.
	sallyport.decision.allow with input as call(alice, docs, "upload", {"content": rsa_key})
	sallyport.decision.allow with input as call(alice, docs, "search", {"q": "how do I rotate a PRIVATE KEY?"})
}

test_other_findings_do_not_deny if {
	base := call(alice, docs, "upload", {"content": "x"})
	sallyport.decision.allow with input as with_findings(base, [finding("EMAIL_ADDRESS", "params.arguments.content", "flag")])
	sallyport.decision.allow with input as with_findings(base, [finding("aws-access-token", "params.arguments.content", "flag")])
	sallyport.decision.allow with input as with_findings(base, [finding("private-key", "params._meta.note", "flag")])
	sallyport.decision.allow with input as with_findings(base, [finding("private-key", "params.argumentsX", "flag")])
}

test_private_key_in_a_result_is_redacted if {
	result := tool_result(alice, docs, "read_file", {
		"content": [
			{"type": "text", "text": "README"},
			{"type": "text", "text": rsa_key},
		],
		"structuredContent": {"e-mail key": openssh_key},
	})
	d := sallyport.decision with input as with_findings(result, [
		finding("private-key", "result.content[1].text", "flag"),
		finding("private-key", `result.structuredContent["e-mail key"]`, "redact"),
		finding("EMAIL_ADDRESS", "result.content[0].text", "flag"),
	])
	d.allow
	d.redact == {"result.content[1].text", `result.structuredContent["e-mail key"]`}
	d.rules == {"examples/redact"}
}

test_private_key_in_an_error_is_redacted if {
	result := object.union(tool_result(alice, docs, "read_file", {}), {"error": {"code": -32603, "message": rsa_key}})
	d := sallyport.decision with input as with_findings(object.remove(result, ["result"]), [finding("private-key", "error.message", "flag")])
	d.allow
	d.redact == {"error.message"}
}

test_a_request_finding_is_not_redacted if {
	d := sallyport.decision with input as flagged_key(call(alice, vault, "store_secret", {"value": rsa_key}), "params.arguments.value")
	not d.redact
}

test_results_without_findings_are_not_redacted if {
	d := sallyport.decision with input as tool_result(alice, docs, "read_file", {"content": [{"type": "text", "text": rsa_key}]})
	d.allow
	not d.redact
	d.rules == {"examples/allow"}
}
