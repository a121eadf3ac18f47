#!/usr/bin/env bash
# make bench: build the gateway and the load harness, install the pinned npm
# test dependencies, run the Go micro-benchmarks (./gateway/... and the
# audit and approval stages', in ./cmd/sallyport-bench), then the load
# harness (cmd/sallyport-bench: direct vs Sallyport with audit
# synchronous=full and normal vs supergateway on the same backend, the
# audit, policy and DLP stages in process, audit export and verify, and
# the approval queue: the approval stage's cost to a call that needs no
# approval, in process, and through a sallyport serve of its own a held
# call's time to its item on a reviewer's WebSocket, then 1,000 pending
# items with 10 reviewers connected: memory, a new reviewer's snapshot,
# push latency; all in one run), then its dlp
# mode (the DLP scanner against gitleaks v8.30.1: throughput per core,
# recall on dlp/testdata/corpus, the stage's added latency on 1 KiB), and
# end with a summary.
#
# gitleaks is the DLP benchmark's peer only, never a dependency: it is
# installed once into $SALLYPORT_CACHE/gitleaks-v8.30.1 (go install, outside
# the checkout); without it the dlp mode measures Sallyport alone.
#
# Arguments go to the harness, as does $BENCH_ARGS; $DLP_BENCH_ARGS go to
# its dlp mode, $GO_BENCH_ARGS to go test (after -bench . -benchmem):
#   .ci/bench.sh --backend demo
#   make bench BENCH_ARGS='--isolation session --conc-calls 20000'
#   make bench DLP_BENCH_ARGS='--mb 16 --gitleaks-mb 2'
# A short run, a few minutes on two cores (the figures are noisier):
#   make bench GO_BENCH_ARGS='-benchtime 200ms' DLP_BENCH_ARGS='--mb 8 --gitleaks-mb 1' \
#     BENCH_ARGS='--calls 300 --conc-calls 2000 --warmup 50 --audit-stage-calls 500 --audit-stage-conc-calls 4000 --audit-rows 20000 --approval-stage-calls 2000 --approval-calls 50 --approval-pending 300 --approval-push-items 5'
# The approval measurements alone (about 10 s with their defaults):
#   bin/sallyport-bench --paths none --audit-stage-calls 0 --audit-rows 0 --node-modules DIR
# The harness's figures go to bin/bench-results.json, its report to
# bin/bench-harness.txt, the dlp mode's to bin/bench-dlp.json and
# bin/bench-dlp.txt, and the micro-benchmarks' output to bin/bench-go.txt.
#
# The machines this runs on are shared and noisy: nothing here asserts a
# time. The goals are printed as PASS/MISS and never fail the script; it
# fails when something does not build, a benchmark fails, or the harness
# cannot measure (a path fails to start, or a direct or Sallyport call fails,
# or a call through an in-process stage fails, or an approval measurement
# fails: its gateway does not start, a held call's item never reaches the
# feed, a reviewer's feed is dropped). An in-process policy
# evaluation that runs past the stage's deadline is reported as a timeout,
# not a failure (see cmd/sallyport-bench's --policy-stage-timeout).
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

echo "== gitleaks (the DLP benchmark's peer)"
gitleaks_dir="${SALLYPORT_CACHE:-$HOME/.cache/sallyport}/gitleaks-v8.30.1"
gitleaks="$gitleaks_dir/gitleaks"
if [ ! -x "$gitleaks" ]; then
	GOBIN="$gitleaks_dir" $GO install github.com/zricethezav/gitleaks/v8@v8.30.1 || true
fi
if [ -x "$gitleaks" ]; then
	echo "gitleaks: $gitleaks"
else
	echo "bench: gitleaks v8.30.1 could not be installed into $gitleaks_dir; the dlp mode measures Sallyport alone"
	gitleaks=""
fi

echo "== go micro-benchmarks (./gateway/... ./dlp ./cmd/sallyport-bench)"
# shellcheck disable=SC2086 # GO_BENCH_ARGS is a list of flags
$GO test -run '^$' -bench . -benchmem ${GO_BENCH_ARGS:-} ./gateway/... ./dlp ./cmd/sallyport-bench 2>&1 | tee bin/bench-go.txt
gobench=${PIPESTATUS[0]}
nbench=$(grep -c '^Benchmark' bin/bench-go.txt || true)

echo "== load harness"
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
bin/sallyport-bench --sallyport bin/sallyport --node-modules "$nm" --out bin/bench-results.json "$@" ${BENCH_ARGS:-} 2>&1 | tee bin/bench-harness.txt
harness=${PIPESTATUS[0]}

echo "== dlp: the DLP scanner against gitleaks"
# gitleaks scans this secret-dense corpus at well under 1 MB/s: it is timed
# on an 8 MiB prefix of the same 64 MiB input (the rates compare).
# shellcheck disable=SC2086 # DLP_BENCH_ARGS is a list of flags
bin/sallyport-bench dlp --gitleaks "$gitleaks" --corpus dlp/testdata/corpus --mb 64 --gitleaks-mb 8 --out bin/bench-dlp.json ${DLP_BENCH_ARGS:-} 2>&1 | tee bin/bench-dlp.txt
dlpbench=${PIPESTATUS[0]}

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
if [ "$dlpbench" -eq 0 ]; then
	echo "dlp mode: ok (bin/bench-dlp.json)"
else
	echo "dlp mode: FAILED (exit $dlpbench, bin/bench-dlp.txt)"
fi
sed -n '/^ratios, measured in this run:/,/^results written/p' bin/bench-harness.txt | grep -v '^results written' || true
sed -n '/^dlp goals/,/^results written/p' bin/bench-dlp.txt | grep -v '^results written' || true
echo "elapsed: $(( $(date +%s) - start ))s"
if [ "$gobench" -ne 0 ] || [ "$harness" -ne 0 ] || [ "$dlpbench" -ne 0 ]; then exit 1; fi
