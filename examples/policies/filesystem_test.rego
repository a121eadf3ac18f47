package sallyport_test

import data.sallyport

# These tests use data.yaml: writable_root /srv/work.

write(path) := call(alice, fs, "write_file", {"path": path, "content": "hello"})

denied_for_root(d) if {
	not d.allow
	d.rules == {"examples/filesystem-write-outside-root"}
}

test_write_under_the_root_is_allowed if {
	sallyport.decision.allow with input as write("/srv/work/notes.txt")
	sallyport.decision.allow with input as write("/srv/work/a/b/c.md")
	sallyport.decision.allow with input as write("/srv/work/./a/..notes")
	sallyport.decision.allow with input as call(alice, fs, "create_directory", {"path": "/srv/work"})
	sallyport.decision.allow with input as call(alice, fs, "edit_file", {"path": "/srv/work/x", "edits": []})
}

test_write_outside_the_root_is_denied if {
	denied_for_root(sallyport.decision) with input as write("/etc/passwd")
	denied_for_root(sallyport.decision) with input as write("/srv")
	denied_for_root(sallyport.decision) with input as call(alice, fs, "create_directory", {"path": "/tmp/x"})
}

test_path_traversal_is_denied if {
	denied_for_root(sallyport.decision) with input as write("/srv/work/../etc/passwd")
	denied_for_root(sallyport.decision) with input as write("/srv/work/a/../../etc/passwd")
	denied_for_root(sallyport.decision) with input as write("/srv/work/..")
	denied_for_root(sallyport.decision) with input as write("/srv/work/a/../b") # even when it stays inside
	denied_for_root(sallyport.decision) with input as write(`/srv/work/..\..\etc\passwd`)
}

test_a_sibling_with_the_same_prefix_is_outside if {
	denied_for_root(sallyport.decision) with input as write("/srv/workshop/x")
	denied_for_root(sallyport.decision) with input as write("/srv/work.bak/x")
}

test_relative_and_odd_paths_are_denied if {
	denied_for_root(sallyport.decision) with input as write("notes.txt")
	denied_for_root(sallyport.decision) with input as write("srv/work/notes.txt")
	denied_for_root(sallyport.decision) with input as write("~/notes.txt")
	denied_for_root(sallyport.decision) with input as write("file:///srv/work/notes.txt")
	denied_for_root(sallyport.decision) with input as write(["/srv/work/a", "/etc/passwd"])
	denied_for_root(sallyport.decision) with input as write(null)
}

test_a_write_without_a_path_is_denied if {
	denied_for_root(sallyport.decision) with input as call(alice, fs, "write_file", {"file": "/etc/passwd", "content": "x"})
	denied_for_root(sallyport.decision) with input as object.remove(call(alice, fs, "write_file", {}), ["arguments"])
}

test_move_file_checks_every_path if {
	sallyport.decision.allow with input as call(alice, fs, "move_file", {"source": "/srv/work/a", "destination": "/srv/work/b"})
	sallyport.decision.allow with input as call(alice, fs, "move_file", {"path": "/srv/work/a", "destination": "/srv/work/b"})
	denied_for_root(sallyport.decision) with input as call(alice, fs, "move_file", {"path": "/srv/work/a", "destination": "/etc/cron.d/x"})
	denied_for_root(sallyport.decision) with input as call(alice, fs, "move_file", {"source": "/srv/work/a", "destination": "/srv/work/../../etc/x"})
	denied_for_root(sallyport.decision) with input as call(alice, fs, "move_file", {"source": "/home/alice/.ssh/id_ed25519", "destination": "/srv/work/key"})
}

test_reasons_do_not_quote_the_path if {
	d := sallyport.decision with input as write("/home/alice/secret-plans.txt")
	some r in d.deny_reasons
	contains(r, "fs__write_file may only write under /srv/work")
	every r2 in d.deny_reasons {
		not contains(r2, "secret-plans")
	}
}

test_other_tools_and_backends_are_not_restricted if {
	sallyport.decision.allow with input as call(alice, fs, "read_file", {"path": "/etc/hosts"})
	sallyport.decision.allow with input as call(alice, docs, "write_file", {"path": "/etc/hosts"})
}

test_writing_tools_stay_listed if {
	sallyport.decision.allow with input as listed(alice, fs, "write_file")
	sallyport.decision.allow with input as listed(alice, fs, "move_file")
}

test_the_root_may_end_with_a_slash if {
	sallyport.decision.allow with input as write("/srv/work/notes.txt") with data.sallyport.config.writable_root as "/srv/work/"
	denied_for_root(sallyport.decision) with input as write("/srv/workshop/x") with data.sallyport.config.writable_root as "/srv/work/"
}

test_without_a_usable_root_every_write_is_denied if {
	denied_for_root(sallyport.decision) with input as write("/srv/work/notes.txt") with data.sallyport.config.writable_root as "/"
	denied_for_root(sallyport.decision) with input as write("/srv/work/notes.txt") with data.sallyport.config as {"filesystem_write_tools": {"write_file": ["path"]}}
}
