#!/usr/bin/env bash
# make bench: build the gateway and the load harness, install the pinned npm
# test dependencies, run the Go micro-benchmarks (./gateway/... and the
# audit stage's, in ./cmd/sallyport-bench), then the load harness
# (cmd/sallyport-bench: direct vs Sallyport with audit synchronous=full and
# normal vs supergateway on the same backend, the audit stage in process,
# audit export and verify, in one run), and end with a summary.
#
# Arguments go to the harness, as does $BENCH_ARGS:
#   .ci/bench.sh --backend demo
#   make bench BENCH_ARGS='--isolation session --conc-calls 20000'
# The harness's figures go to bin/bench-results.json, its report to
# bin/bench-harness.txt and the micro-benchmarks' output to bin/bench-go.txt.
#
# The machines this runs on are shared and noisy: nothing here asserts a
# time. The goals are printed as PASS/MISS and never fail the script; it
# fails when something does not build, a benchmark fails, or the harness
# cannot measure (a path fails to start, or a direct or Sallyport call fails).
set -uo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
start=$(date +%s)
mkdir -p bin

version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)

echo "== build"
$GO build -trimpath -ldflags "-X main.version=$version" -o bin/sallyport ./cmd/sallyport || { echo "bench: building bin/sallyport failed"; exit 1; }
$GO build -o bin/sallyport-bench ./cmd/sallyport-bench || { echo "bench: building bin/sallyport-bench failed"; exit 1; }

echo "== test dependencies"
nm=${SALLYPORT_NODE_MODULES:-}
if [ -z "$nm" ] && [ -f .ci/testdeps.sh ]; then
	nm=$(bash .ci/testdeps.sh | tail -n 1) || nm=""
fi
if [ -z "$nm" ] || [ ! -d "$nm/supergateway" ]; then
	# A warm copy of the same pinned packages, on machines that have one.
	fallback=/tmp/npmwarm/node_modules
	if [ -d "$fallback/supergateway" ] && [ -d "$fallback/@modelcontextprotocol/server-everything" ]; then
		echo "bench: .ci/testdeps.sh gave no usable node_modules; using $fallback"
		nm=$fallback
	else
		echo "bench: no node_modules with the pinned test packages (run .ci/testdeps.sh, or set SALLYPORT_NODE_MODULES)"
		exit 1
	fi
fi
echo "node_modules: $nm"

echo "== go micro-benchmarks (./gateway/... ./cmd/sallyport-bench)"
$GO test -run '^$' -bench . -benchmem ./gateway/... ./cmd/sallyport-bench 2>&1 | tee bin/bench-go.txt
gobench=${PIPESTATUS[0]}
nbench=$(grep -c '^Benchmark' bin/bench-go.txt || true)

echo "== load harness"
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
bin/sallyport-bench --sallyport bin/sallyport --node-modules "$nm" --out bin/bench-results.json "$@" ${BENCH_ARGS:-} 2>&1 | tee bin/bench-harness.txt
harness=${PIPESTATUS[0]}

echo
echo "== summary"
if [ "$gobench" -eq 0 ]; then
	echo "go micro-benchmarks: ok ($nbench results, bin/bench-go.txt)"
else
	echo "go micro-benchmarks: FAILED (exit $gobench, bin/bench-go.txt)"
fi
if [ "$harness" -eq 0 ]; then
	echo "load harness: ok (bin/bench-results.json)"
else
	echo "load harness: FAILED (exit $harness, bin/bench-harness.txt)"
fi
sed -n '/^ratios, measured in this run:/,/^results written/p' bin/bench-harness.txt | grep -v '^results written' || true
echo "elapsed: $(( $(date +%s) - start ))s"
if [ "$gobench" -ne 0 ] || [ "$harness" -ne 0 ]; then exit 1; fi
