package sallyport_test

import data.sallyport

test_dba_may_call_database_tools if {
	d := sallyport.decision with input as call(dora, warehouse, "query", {"sql": "select 1"})
	d.allow
	d.rules == {"examples/allow"}
}

test_others_may_not_call_database_tools if {
	d := sallyport.decision with input as call(alice, warehouse, "query", {"sql": "select 1"})
	not d.allow
	d.rules == {"examples/database-dba-only"}
	d.deny_reasons == {"only members of the dba group may use the warehouse database backend"}
}

test_principal_without_groups_is_denied if {
	not sallyport.decision.allow with input as call(object.remove(alice, ["groups"]), warehouse, "query", {})
}

test_database_tools_are_hidden_from_others_lists if {
	not sallyport.decision.allow with input as listed(alice, warehouse, "query")
	sallyport.decision.allow with input as listed(dora, warehouse, "query")
}

test_other_database_requests_are_denied_too if {
	read := object.union(request(alice, "resources/read"), {"backend": warehouse, "params": {"uri": "db://warehouse/schema"}, "resource": {"uri": "db://warehouse/schema"}})
	not sallyport.decision.allow with input as read
	sallyport.decision.allow with input as object.union(read, {"principal": dora})
}

test_results_of_database_calls_pass if {
	result := object.union(call(dora, warehouse, "query", {}), {"direction": "backend_to_client", "kind": "result", "result": {"content": []}})
	sallyport.decision.allow with input as object.remove(result, ["arguments", "params"])
}

test_other_backends_are_not_restricted if {
	sallyport.decision.allow with input as call(alice, docs, "query", {})
}

test_the_group_is_configurable if {
	sallyport.decision.allow with input as call(alice, warehouse, "query", {}) with data.sallyport.config.database_group as "dev"
}
