# Filesystem backends may only write under one folder.
#
# A backend is a filesystem backend when the configuration labels it so:
#
#   backends:
#     - id: fs
#       labels: {kind: filesystem}
#
# Its tools that write (data.sallyport.config.filesystem_write_tools, by
# the name the backend gives them) may only be called with paths under
# data.sallyport.config.writable_root. Each such tool lists the arguments
# that hold the paths it writes to: every one of them present must be a
# path under the root, and at least one must be present.
#
# What policy cannot see: the backend resolves the path, so a symbolic link
# under the root that points elsewhere is followed by the backend. Run
# filesystem servers with their own allowed-directories setting too; this
# rule is the second fence, not the only one.
package sallyport

deny contains {
	"rule": "examples/filesystem-write-outside-root",
	"reason": sprintf("%s may only write under %s: its %q argument is not a path there", [input.tool.name, writable_root_shown, arg]),
} if {
	some arg in filesystem_write_call
	value := input.arguments[arg]
	not writable_path(value)
}

deny contains {
	"rule": "examples/filesystem-write-outside-root",
	"reason": sprintf("%s may only write under %s: the call names no path (%s)", [input.tool.name, writable_root_shown, concat(", ", filesystem_write_call)]),
} if {
	args := filesystem_write_call
	every arg in args {
		not has_argument(arg)
	}
}

has_argument(name) if _ = input.arguments[name]

# The path arguments of the tool a tools/call request calls, when it is a
# filesystem backend's writing tool. Not for list filtering (input.listing,
# no arguments): the writing tools stay listed, since they may be used
# under the root.
filesystem_write_call := args if {
	input.method == "tools/call"
	input.kind == "request"
	not input.listing
	input.backend.labels.kind == "filesystem"
	args := data.sallyport.config.filesystem_write_tools[input.tool.backend_name]
}

# The root, without a trailing "/". Undefined (so that every write is
# denied) when the configuration has none, or has "/".
writable_root := root if {
	root := trim_right(data.sallyport.config.writable_root, "/")
	root != ""
}

writable_root_shown := writable_root

writable_root_shown := "(no writable_root configured)" if not writable_root

# writable_path holds for an absolute path at or under the root that no
# ".." segment could lead out of. Backslashes count as separators, for
# servers on Windows.
writable_path(p) if {
	is_string(p)
	not traverses(p)
	p == writable_root
}

writable_path(p) if {
	is_string(p)
	not traverses(p)
	startswith(p, concat("", [writable_root, "/"]))
}

traverses(p) if ".." in regex.split(`[/\\]`, p)
