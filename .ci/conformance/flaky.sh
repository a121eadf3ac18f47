#!/usr/bin/env bash
# flaky.sh measures how flaky the MCP conformance fixtures are: it runs the
# official suite (server scenarios, --suite all) RUNS times (default 10)
# against mcp-go's fixture and Sallyport's own fixture, both directly over
# Streamable HTTP, and prints per check how many runs passed. With --gateway
# it also runs the suite through `sallyport serve` in front of each fixture.
#
# It also says which entries of .ci/conformance/expected-failures.yml have
# become stale and which flaky checks it does not list. Write the figures
# into that file's comments when they change.
#
#   .ci/conformance/flaky.sh [--gateway] [RUNS]
#
# The runner is TestConformanceFlakiness in cmd/sallyport/e2e (it needs the
# pinned npm packages, see .ci/testdeps.sh, and builds the fixtures with go).
set -euo pipefail

runs=10
gateway=0
for arg in "$@"; do
	case "$arg" in
	--gateway) gateway=1 ;;
	-h | --help)
		sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		if [[ ! "$arg" =~ ^[0-9]+$ ]] || ((arg < 1 || arg > 100)); then
			echo "flaky.sh: RUNS must be a number from 1 to 100, not $arg" >&2
			exit 2
		fi
		runs="$arg"
		;;
	esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT

# A passing run of the suite takes a few seconds; allow each one the
# runner's own bound (4 minutes) before go test gives up on the lot.
timeout_min=$((runs * (2 + 2 * gateway) * 4 + 5))

cd "$root"
SALLYPORT_CONFORMANCE_RUNS="$runs" \
	SALLYPORT_CONFORMANCE_GATEWAY="$gateway" \
	SALLYPORT_CONFORMANCE_REPORT="$report" \
	go test -count=1 -timeout "${timeout_min}m" -run '^TestConformanceFlakiness$' ./cmd/sallyport/e2e 1>&2
cat "$report"
