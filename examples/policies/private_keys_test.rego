package sallyport_test

import data.sallyport

rsa_key := "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAuD6\n-----END RSA PRIVATE KEY-----\n"

openssh_key := "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"

denied_for_key(d) if {
	not d.allow
	d.rules == {"examples/private-key-in-arguments"}
}

test_private_key_in_arguments_is_denied if {
	denied_for_key(sallyport.decision) with input as call(alice, docs, "upload", {"content": rsa_key})
	denied_for_key(sallyport.decision) with input as call(alice, docs, "upload", {"files": [{"name": "id", "content": concat("", ["here you go:\n", openssh_key])}]})
	denied_for_key(sallyport.decision) with input as call(alice, docs, "upload", {"k": "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----"})
	denied_for_key(sallyport.decision) with input as call(alice, docs, "upload", {"k": "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF\n-----END PGP PRIVATE KEY BLOCK-----"})
}

test_private_key_in_prompt_arguments_is_denied if {
	get := object.union(request(alice, "prompts/get"), {"backend": docs, "prompt": {"name": "docs__review", "backend_name": "review", "definition_hash": ""}, "arguments": {"text": rsa_key}})
	denied_for_key(sallyport.decision) with input as get
}

test_the_reason_does_not_echo_the_key if {
	d := sallyport.decision with input as call(alice, docs, "upload", {"content": rsa_key})
	every r in d.deny_reasons {
		not contains(r, "MIIE")
		not contains(r, "content")
	}
}

test_public_keys_and_talk_of_keys_pass if {
	sallyport.decision.allow with input as call(alice, docs, "upload", {"content": "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----"})
	sallyport.decision.allow with input as call(alice, docs, "upload", {"content": "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----"})
	sallyport.decision.allow with input as call(alice, docs, "search", {"q": "how do I rotate a PRIVATE KEY?"})
}

test_dlp_findings_deny if {
	base := call(alice, docs, "upload", {"content": "(DLP saw it)"})
	every detector in ["PRIVATE_KEY", "private-key", "private-key/rsa"] {
		finding := {"detector": detector, "path": "params.arguments.content", "offset": 0, "length": 1675, "confidence": 0.99}
		denied_for_key(sallyport.decision) with input as object.union(base, {"findings": [finding]})
	}
}

test_other_findings_do_not_deny if {
	base := call(alice, docs, "upload", {"content": "x"})
	sallyport.decision.allow with input as object.union(base, {"findings": [{"detector": "EMAIL_ADDRESS", "path": "params.arguments.content", "offset": 0, "length": 1, "confidence": 0.9}]})
	sallyport.decision.allow with input as object.union(base, {"findings": [{"detector": "PRIVATE_KEY", "path": "params._meta.note", "offset": 0, "length": 1, "confidence": 0.9}]})
}

test_private_key_in_a_result_is_redacted if {
	result := {
		"version": 1, "direction": "backend_to_client", "kind": "result", "method": "tools/call",
		"principal": alice, "session": session, "backend": docs, "tool": tool(docs, "read_file"), "findings": [],
		"result": {
			"content": [
				{"type": "text", "text": "README"},
				{"type": "text", "text": rsa_key},
			],
			"structuredContent": {"e-mail key": openssh_key},
		},
	}
	d := sallyport.decision with input as result
	d.allow
	d.redact == {`result["content"][1]["text"]`, `result["structuredContent"]["e-mail key"]`}
	d.rules == {"examples/redact"}
}

test_results_without_keys_are_not_redacted if {
	result := object.union(request(alice, "tools/call"), {"direction": "backend_to_client", "kind": "result", "result": {"content": [{"type": "text", "text": "ok"}]}})
	d := sallyport.decision with input as result
	not d.redact
	d.rules == {"examples/allow"}
}
