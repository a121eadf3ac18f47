#!/usr/bin/env bash
# make test: install what the tests need, vet, then run every test with the
# race detector and end with one summary line.
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
start=$(date +%s)

echo "== test dependencies"
nm=$(bash .ci/testdeps.sh | tail -n 1) || { echo "test dependencies failed to install"; exit 1; }
export SALLYPORT_NODE_MODULES="$nm"
export SALLYPORT_E2E_REQUIRED=1
export SALLYPORT_CONFORMANCE=1  # the official MCP conformance suite, direct vs through the gateway
echo "node_modules: $nm"

echo "== go vet"
$GO vet ./... || { echo "tests: 0 passed, 1 failed (go vet)"; exit 1; }

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted"; echo "tests: 0 passed, 1 failed (gofmt)"; exit 1; fi

# Allocation counts are checked without -race, which makes sync.Pool drop
# what is put back at random (those tests skip themselves under -race).
echo "== allocation checks"
$GO test -count=1 -run 'Allocs' ./gateway/jsonrpc || { echo "tests: 0 passed, 1 failed (allocation checks)"; exit 1; }

echo "== go test -race"
out=$(mktemp)
$GO test -race -count=1 -timeout 30m -json ./... > "$out"
rc=$?
$GO run ./.ci/testsummary < "$out"
src=$?
rm -f "$out"
echo "elapsed: $(( $(date +%s) - start ))s"
if [ $rc -ne 0 ] || [ $src -ne 0 ]; then exit 1; fi
