#!/usr/bin/env bash
# Runs weft's Go benchmarks and keeps the raw `go test -bench` output (the
# format benchstat reads) in a file:
#
#   scripts/bench.sh                    -> out/bench/bench-<UTC time>.txt, plus out/bench/latest.txt
#   BENCH_OUT=/tmp/a.txt scripts/bench.sh
#
# Knobs: BENCH (regexp, default .), BENCHTIME (e.g. 2s or 100x), COUNT (1),
# PKGS (./...). A skeleton: suites that need more (real Envoy load, xDS fan-out)
# add their own steps below.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export WEFT_TOOLS_BIN="${WEFT_TOOLS_BIN:-$ROOT/.tools/bin}"
export PATH="$WEFT_TOOLS_BIN:$PATH"

BENCH="${BENCH:-.}"
BENCHTIME="${BENCHTIME:-}"
COUNT="${COUNT:-1}"
PKGS="${PKGS:-./...}"
OUT_DIR="$ROOT/out/bench"
BENCH_OUT="${BENCH_OUT:-$OUT_DIR/bench-$(date -u +%Y%m%dT%H%M%SZ).txt}"

mkdir -p "$(dirname "$BENCH_OUT")"
args=(-run='^$' -bench="$BENCH" -benchmem -count="$COUNT")
[[ -n "$BENCHTIME" ]] && args+=(-benchtime="$BENCHTIME")

echo "==> go test ${args[*]} $PKGS > $BENCH_OUT" >&2
# pipefail keeps go test's exit code.
# shellcheck disable=SC2086 # PKGS may list several patterns
go test "${args[@]}" $PKGS 2>&1 | tee "$BENCH_OUT"

if [[ "$BENCH_OUT" == "$OUT_DIR"/bench-* ]]; then
	cp "$BENCH_OUT" "$OUT_DIR/latest.txt"
fi
echo "==> raw benchmark output: $BENCH_OUT" >&2
