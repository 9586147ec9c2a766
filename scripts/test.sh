#!/usr/bin/env bash
# weft's test pipeline; `make test` runs it with no arguments, which runs every
# stage in this order and stops at the first failure:
#
#   fmt    gofmt -l over the repo's .go files (fails listing unformatted ones)
#   vet    go vet ./...
#   unit   go test -race -count=1 -timeout=$TEST_TIMEOUT ./...
#   fuzz   for every `func FuzzXxx` in a *_test.go: go test -run='^$'
#          -fuzz='^FuzzXxx$' -fuzztime=$FUZZTIME ./that/package
#
# One stage: scripts/test.sh vet (or: make vet). The exit code is go's.
# Environment knobs: TEST_TIMEOUT (20m), FUZZTIME (20s), TEST_FLAGS (extra
# flags for the unit stage, e.g. "-run TestLoad -v"), PKGS (default ./...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TEST_TIMEOUT="${TEST_TIMEOUT:-20m}"
FUZZTIME="${FUZZTIME:-20s}"
TEST_FLAGS="${TEST_FLAGS:-}"
PKGS="${PKGS:-./...}"

# The real tools from `make tools` come first on PATH; internal/tooltest
# reads WEFT_TOOLS_BIN.
export WEFT_TOOLS_BIN="${WEFT_TOOLS_BIN:-$ROOT/.tools/bin}"
export PATH="$WEFT_TOOLS_BIN:$PATH"

stage() { printf '==> %s\n' "$*" >&2; }

# go_files: the repo's Go files, NUL-separated. Skips .git, .tools, bin, out,
# vendor and testdata (fixtures may be deliberately malformed Go).
go_files() {
	find . \( -path ./.git -o -path ./.tools -o -path ./bin -o -path ./out \
		-o -name vendor -o -name testdata \) -prune \
		-o -type f -name '*.go' -print0
}

run_fmt() {
	stage "gofmt -l"
	local bad
	bad="$(go_files | xargs -0 -r gofmt -l | sort)"
	if [[ -n "$bad" ]]; then
		printf 'these files are not gofmt-formatted (run: make fmt):\n%s\n' "$bad" >&2
		return 1
	fi
}

run_vet() {
	stage "go vet $PKGS"
	# shellcheck disable=SC2086 # PKGS may list several patterns
	go vet $PKGS
}

run_unit() {
	stage "go test -race -count=1 -timeout=$TEST_TIMEOUT $TEST_FLAGS $PKGS"
	# shellcheck disable=SC2086
	go test -race -count=1 -timeout="$TEST_TIMEOUT" $TEST_FLAGS $PKGS
}

# fuzz_targets prints "<dir> <FuzzName>" for every fuzz target, sorted.
fuzz_targets() {
	local f
	while IFS= read -r -d '' f; do
		sed -n -E 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$f" |
			while IFS= read -r name; do printf '%s %s\n' "$(dirname "$f")" "$name"; done
	done < <(go_files | grep -z '_test\.go$' || true)
}

# Listed before the unit tests run so that, with no fuzz targets, the run
# still ends with go test's own summary lines.
announce_fuzz() {
	local n
	n="$(fuzz_targets | sort -u | grep -c . || true)"
	stage "fuzz targets found: $n (each runs for $FUZZTIME after the unit tests)"
}

run_fuzz() {
	local targets dir name
	targets="$(fuzz_targets | sort -u)"
	[[ -n "$targets" ]] || return 0
	# Each run starts from the committed seeds (f.Add, testdata/fuzz) with
	# an empty cache of its own: the cache in GOCACHE grows with every run
	# on a machine, and Go must replay all of it before -fuzztime starts
	# counting; past a few hundred CUE inputs that alone outlasts FUZZTIME
	# and the run fails with "context deadline exceeded".
	local cache
	cache="$(mktemp -d)"
	trap 'rm -rf "$cache"' RETURN
	while read -r dir name; do
		# No minimization: shrinking a kilobyte-sized CUE input costs minutes.
		stage "fuzz $name in $dir for $FUZZTIME"
		go test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime=0 "$dir" \
			-args -test.fuzzcachedir="$cache/$name"
	done <<<"$targets"
}

if [[ $# -eq 0 ]]; then
	set -- fmt vet unit fuzz
	announce_fuzz
fi
for s in "$@"; do
	case "$s" in
	fmt) run_fmt ;;
	vet) run_vet ;;
	unit) run_unit ;;
	fuzz) run_fuzz ;;
	fuzz-list) fuzz_targets | sort -u ;;
	*)
		echo "usage: $0 [fmt|vet|unit|fuzz|fuzz-list]..." >&2
		exit 2
		;;
	esac
done
