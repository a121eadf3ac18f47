# Tests of the decision document and the anonymous baseline, and the
# principals, backends and inputs the other test files share. Run them with
#
#   sallyport policy test -v examples/policies
package sallyport_test

import data.sallyport

# Principals.

alice := {"id": "alice", "groups": ["dev"], "token_id": "tok_alice", "anonymous": false}

dora := {"id": "dora", "groups": ["dev", "dba"], "token_id": "tok_dora", "anonymous": false}

anonymous := {"id": "anonymous", "groups": [], "token_id": "", "anonymous": true}

# Backends, as input.backend shows them.

fs := {"id": "fs", "transport": "stdio", "labels": {"kind": "filesystem"}, "trusted": false}

warehouse := {"id": "warehouse", "transport": "http", "labels": {"kind": "database"}, "trusted": false}

mail := {"id": "mail", "transport": "http", "labels": {}, "trusted": false}

docs := {"id": "docs", "transport": "stdio", "labels": {}, "trusted": true}

session := {"id": "c0ffee", "transport": "http", "protocol_version": "2025-06-18", "client": {"name": "test", "version": "1.0"}}

# tool is input.tool for the backend's tool name: public name <id>__<name>.
tool(backend, name) := {
	"name": sprintf("%s__%s", [backend.id, name]),
	"backend_name": name,
	"title": "",
	"annotations": {},
	"definition_hash": "",
	"read_only": false,
	"destructive": false,
}

# call is the input of a tools/call request.
call(principal, backend, name, args) := {
	"version": 1,
	"direction": "client_to_backend",
	"kind": "request",
	"method": "tools/call",
	"principal": principal,
	"session": session,
	"backend": backend,
	"tool": tool(backend, name),
	"params": {"name": sprintf("%s__%s", [backend.id, name]), "arguments": args},
	"arguments": args,
	"findings": [],
	"time": "2025-01-01T00:00:00Z",
}

# listed is the input that decides whether a tool is listed: a call to it,
# with input.listing true and no arguments.
listed(principal, backend, name) := {
	"version": 1,
	"direction": "client_to_backend",
	"kind": "request",
	"method": "tools/call",
	"principal": principal,
	"session": session,
	"backend": backend,
	"tool": tool(backend, name),
	"findings": [],
	"time": "2025-01-01T00:00:00Z",
	"listing": true,
}

request(principal, method) := {
	"version": 1,
	"direction": "client_to_backend",
	"kind": "request",
	"method": method,
	"principal": principal,
	"session": session,
	"findings": [],
	"time": "2025-01-01T00:00:00Z",
}

# finding is one object of input.findings, as the DLP stage hands it on.
finding(detector, path, action) := {
	"detector": detector,
	"category": category(detector),
	"path": path,
	"in_key": false,
	"offset": 0,
	"length": 20,
	"confidence": 0.9,
	"encoding": "",
	"action": action,
}

category(detector) := "pii" if {
	upper(detector) == detector
} else := "secret"

# with_findings is doc with input.findings set.
with_findings(doc, findings) := object.union(doc, {"findings": findings})

# tool_result is the input of a backend's answer to a tools/call.
tool_result(principal, backend, name, result) := {
	"version": 1,
	"direction": "backend_to_client",
	"kind": "result",
	"method": "tools/call",
	"principal": principal,
	"session": session,
	"backend": backend,
	"tool": tool(backend, name),
	"result": result,
	"findings": [],
	"time": "2025-01-01T00:00:00Z",
}

# The keys the gateway accepts in a decision; any other is an error.
decision_keys := {"allow", "deny_reasons", "require_approval", "redact", "reasons", "rules"}

test_user_may_call_an_ordinary_tool if {
	d := sallyport.decision with input as call(alice, docs, "search", {"q": "release notes"})
	d.allow
	d.rules == {"examples/allow"}
	not d.require_approval
}

test_anonymous_may_initialize_ping_and_list if {
	every m in ["initialize", "ping", "tools/list", "prompts/list", "resources/list", "resources/templates/list"] {
		sallyport.decision.allow with input as request(anonymous, m)
	}
}

test_anonymous_may_call_nothing if {
	d := sallyport.decision with input as call(anonymous, docs, "search", {"q": "x"})
	not d.allow
	d.rules == {"examples/anonymous"}
	not sallyport.decision.allow with input as object.union(request(anonymous, "resources/read"), {"backend": docs, "resource": {"uri": "file:///a"}})
	not sallyport.decision.allow with input as request(anonymous, "completion/complete")
}

test_anonymous_sees_empty_lists if {
	not sallyport.decision.allow with input as listed(anonymous, docs, "search")
	sallyport.decision.allow with input as listed(alice, docs, "search")
}

test_anonymous_notifications_and_results_pass if {
	sallyport.decision.allow with input as object.union(request(anonymous, "notifications/initialized"), {"kind": "notification"})
	sallyport.decision.allow with input as object.union(request(anonymous, "initialize"), {"direction": "backend_to_client", "kind": "result", "result": {}})
}

test_decisions_have_only_known_keys if {
	inputs := [
		call(alice, docs, "search", {}), # allow
		call(anonymous, docs, "search", {}), # deny
		call(alice, mail, "send_email", {"to": ["eve@elsewhere.org"]}), # approval
		with_findings(tool_result(alice, docs, "read_file", {"content": [{"type": "text", "text": "[REDACTED:private-key]"}]}), [finding("private-key", "result.content[0].text", "redact")]), # redact
		with_findings(tool_result(alice, docs, "lookup", {"content": [{"type": "text", "text": "4111 1111 1111 1111"}]}), [finding("CREDIT_CARD", "result.content[0].text", "flag")]), # approval
	]
	every doc in inputs {
		d := sallyport.decision with input as doc
		every k, _ in d {
			k in decision_keys
		}
		is_boolean(d.allow)
	}
}

test_deny_wins_over_approval if {
	d := sallyport.decision with input as call(anonymous, mail, "send_email", {"to": ["eve@elsewhere.org"]})
	not d.allow
	not d.require_approval
	d.rules == {"examples/anonymous"}
}

test_a_denial_gives_every_reason if {
	d := sallyport.decision with input as with_findings(call(alice, warehouse, "query", {"sql": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----"}), [finding("private-key", "params.arguments.sql", "flag")])
	d.rules == {"examples/database-dba-only", "examples/private-key-in-arguments"}
	count(d.deny_reasons) == 2
}

test_anonymous_request_without_a_method_is_denied if {
	not sallyport.decision.allow with input as object.remove(request(anonymous, "ping"), ["method"])
}
