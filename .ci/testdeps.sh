#!/usr/bin/env bash
# testdeps.sh installs the pinned Node test dependencies (real MCP servers and
# clients, see .ci/npm/package.json) outside the checkout and prints the path
# of their node_modules folder as its last line of standard output.
#
# The install lives in ${SALLYPORT_CACHE:-$HOME/.cache/sallyport}/npm/<key>/,
# where <key> is the first 16 hex digits of the SHA-256 of package-lock.json,
# so a changed lock gets a fresh folder and an unchanged one is reused. The
# .complete marker is written last: a half-finished install has none and is
# redone. Concurrent callers serialise on a lock file.
#
# To change a pin, edit .ci/npm/package.json and, in .ci/npm, run
#   npm install --package-lock-only --ignore-scripts
# (.ci/npm/.npmrc keeps registry addresses out of the lock), then check the
# new versions against the tests before committing both files.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/npm"
lock="$src/package-lock.json"

key="$(sha256sum "$lock" | cut -c1-16)"
cache="${SALLYPORT_CACHE:-$HOME/.cache/sallyport}"
dest="$cache/npm/$key"

if [[ -f "$dest/.complete" && -d "$dest/node_modules" ]]; then
	echo "$dest/node_modules"
	exit 0
fi

command -v node >/dev/null || { echo "testdeps: node is not installed" >&2; exit 1; }
command -v npm >/dev/null || { echo "testdeps: npm is not installed" >&2; exit 1; }

mkdir -p "$cache/npm"
exec 9>"$cache/npm/.lock-$key"
if command -v flock >/dev/null; then
	flock 9
fi

# Another caller may have finished while we waited for the lock.
if [[ -f "$dest/.complete" && -d "$dest/node_modules" ]]; then
	echo "$dest/node_modules"
	exit 0
fi

echo "testdeps: installing pinned npm packages into $dest" >&2
rm -rf "$dest"
mkdir -p "$dest"
cp "$src/package.json" "$src/package-lock.json" "$src/.npmrc" "$dest/"
(
	cd "$dest"
	# npm ci installs exactly what the lock file says and fails if package.json
	# and the lock disagree. No package needs its install scripts (the only one,
	# inspector's postinstall, does nothing inside node_modules), so none run.
	# Progress goes to stderr so that stdout stays ours.
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error 1>&2
)
touch "$dest/.complete"
echo "$dest/node_modules"
