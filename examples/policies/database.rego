# Only database administrators may use database backends.
#
# A backend is a database backend when the configuration labels it so:
#
#   backends:
#     - id: warehouse
#       labels: {kind: database}
#
# Any client request routed to it (tools/call, and prompts/get,
# resources/read, completion/complete, ...) is denied unless the principal
# is in the group data.sallyport.config.database_group ("dba").
#
# Nothing more is needed to hide these tools from everyone else: the
# gateway filters tools/list (prompts/list, resources/list) entry by entry
# by evaluating this policy on the input of a call to each entry, with
# input.listing true and no arguments. That input is a client request to
# the database backend, so this rule denies it for non-members, and the
# entry is left out of their lists.
package sallyport

deny contains {
	"rule": "examples/database-dba-only",
	"reason": sprintf("only members of the %s group may use the %s database backend", [database_group, input.backend.id]),
} if {
	input.direction == "client_to_backend"
	input.kind == "request"
	input.backend.labels.kind == "database"
	not database_member
}

# A helper rule, not "not database_group in input.principal.groups": OPA
# takes that negation as false, not true, when input.principal.groups is
# missing.
database_member if database_group in input.principal.groups

database_group := g if {
	g := data.sallyport.config.database_group
} else := "dba"
