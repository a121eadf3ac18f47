package sallyport_test

import data.sallyport

user := {"id": "alice", "groups": ["dev"], "token_id": "tok_1", "anonymous": false}

anonymous := {"id": "anonymous", "groups": [], "token_id": "", "anonymous": true}

trusted := {"id": "docs", "transport": "stdio", "labels": {}, "trusted": true}

untrusted := {"id": "web", "transport": "http", "labels": {}, "trusted": false}

call(principal, backend, tool) := {
	"version": 1,
	"direction": "client_to_backend",
	"kind": "request",
	"method": "tools/call",
	"principal": principal,
	"backend": backend,
	"tool": tool,
	"arguments": {},
	"findings": [],
}

read_tool := {"name": "docs__search", "backend_name": "search", "read_only": true, "destructive": false, "annotations": {}}

write_tool := {"name": "docs__update", "backend_name": "update", "read_only": false, "destructive": false, "annotations": {"readOnlyHint": true}}

drop_tool := {"name": "db__drop", "backend_name": "drop", "read_only": false, "destructive": true, "annotations": {"destructiveHint": false}}

test_user_may_call_any_tool if {
	sallyport.decision.allow with input as call(user, untrusted, write_tool)
	sallyport.decision.rules == {"default/allow"} with input as call(user, untrusted, write_tool)
}

test_anonymous_may_call_read_only_tool_of_trusted_backend if {
	sallyport.decision.allow with input as call(anonymous, trusted, read_tool)
}

test_anonymous_may_not_call_read_only_tool_of_untrusted_backend if {
	not sallyport.decision.allow with input as call(anonymous, untrusted, read_tool)
}

test_anonymous_may_not_call_tool_that_only_claims_read_only if {
	d := sallyport.decision with input as call(anonymous, trusted, write_tool)
	not d.allow
	d.rules == {"default/anonymous-read-only"}
}

test_anonymous_may_initialize_and_list if {
	every m in ["initialize", "ping", "tools/list"] {
		sallyport.decision.allow with input as {"direction": "client_to_backend", "kind": "request", "method": m, "principal": anonymous}
	}
}

test_anonymous_may_read_resources_of_trusted_backend if {
	sallyport.decision.allow with input as {"direction": "client_to_backend", "kind": "request", "method": "resources/read", "principal": anonymous, "backend": trusted, "resource": {"uri": "file:///a"}}
	not sallyport.decision.allow with input as {"direction": "client_to_backend", "kind": "request", "method": "resources/read", "principal": anonymous, "backend": untrusted, "resource": {"uri": "file:///a"}}
}

test_destructive_tool_needs_approval_whatever_its_annotations_say if {
	d := sallyport.decision with input as call(user, trusted, drop_tool)
	d.allow
	d.require_approval.reviewers == "reviewers"
	d.rules == {"default/destructive-tool"}
}

test_anonymous_destructive_tool_of_trusted_backend_needs_approval if {
	d := sallyport.decision with input as call(anonymous, trusted, drop_tool)
	d.allow
	d.require_approval.reviewers == "reviewers"
	d.rules == {"default/destructive-tool"}
}

test_anonymous_destructive_tool_of_untrusted_backend_is_denied if {
	d := sallyport.decision with input as call(anonymous, untrusted, drop_tool)
	not d.allow
	d.rules == {"default/anonymous-read-only"}
}

test_results_and_notifications_pass if {
	sallyport.decision.allow with input as {"direction": "backend_to_client", "kind": "result", "method": "tools/call", "principal": anonymous, "backend": untrusted}
	sallyport.decision.allow with input as {"direction": "backend_to_client", "kind": "notification", "method": "notifications/progress", "principal": anonymous}
}

sampling(ctx) := {"direction": "backend_to_client", "kind": "server_request", "method": "sampling/createMessage", "principal": user, "params": {"messages": [], "maxTokens": 10, "includeContext": ctx}}

test_sampling_with_context_is_denied if {
	not sallyport.decision.allow with input as sampling("allServers")
	not sallyport.decision.allow with input as sampling("thisServer")
}

test_sampling_without_context_is_allowed if {
	sallyport.decision.allow with input as sampling("none")
	sallyport.decision.allow with input as {"direction": "backend_to_client", "kind": "server_request", "method": "sampling/createMessage", "principal": user, "params": {"messages": [], "maxTokens": 10}}
}
