#!/usr/bin/env bash
# Regenerates BENCHMARKS.md from one run of weft's benchmarks on this
# machine. Every figure in BENCHMARKS.md comes from this script's own
# output; the raw `go test -bench` lines (benchstat format) are kept in it.
#
#   scripts/benchmarks.sh            # all suites below, ~3 minutes
#   SUITES="pipeline" scripts/benchmarks.sh   # rerun these suites; the other
#                                             # sections of BENCHMARKS.md are kept
#
# A suite is "name|package|benchmark regexp|benchtime|what it measures",
# optionally "|cli" for the whole-process table (wall time and peak memory
# beside the same run's `cue export` of the same mesh). Add a line to
# SUITES_ALL for a new benchmark.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export WEFT_TOOLS_BIN="${WEFT_TOOLS_BIN:-$ROOT/.tools/bin}"
export PATH="$WEFT_TOOLS_BIN:$PATH"

SUITES_ALL=(
	"pipeline|./tests/|^BenchmarkPipeline$|3x|load + validate + cross-reference checks + compile of every proxy class; generated mesh, 10 endpoints and 3 dependencies per service, 2 versions each"
	"load|./schema/|^BenchmarkLoad$|3x|the loader alone: CUE evaluation, validation, decoding, positions, checks"
	"compile|./tests/|^BenchmarkCompile$|3x|the compiler alone on a loaded model"
	"gate|./compiler/|^BenchmarkGate$|3x|the compiler's acceptance gate within a revision's pipeline (load + compile, as in pipeline, on one core): gate-ms/op is the time spent in the gate (model checks, then the checks of every emitted resource), gate-% its share of the pipeline; both are in the raw lines (goal: at most 10%)"
	"incremental|./tests/|^BenchmarkCompileOneServiceChanged$|20x|compiler.CompileFrom: the compile step of a revision that changes one service (svc-00050's split; three services call it), reusing the previous revision's result; compiled = services compiled again (the rest reused). Both models from schema.Load"
	"cli|./tests/|^BenchmarkCLI$|3x|whole processes on generated meshes (10 endpoints and 3 dependencies per service, 2 versions each, every service with a timeout so that weft vet passes): cue export -e mesh of the mesh with the plain cue CLI (the floor: evaluating the same CUE), weft vet, weft build (resources and provenance of every class; no static bootstraps), weft diff of two revisions that differ in one split, and weft build tmpfs: the same build into /dev/shm, which tells the disk's latency from weft's own cost. Wall time of the process and its peak resident memory (the largest of the runs, getrusage maxrss)|cli"
	"policies|./policies/|^BenchmarkPolicies$|5x|the policy gate on one environment (prod, every default rule), engine compiled once: check = model to OPA input + evaluation of the prepared query + findings with file:line; input and eval are its two parts. Generated meshes as above; clean ones give every service a timeout and pass every rule, the others get one route_timeout deny per service"
	"xds-delta-push|./reconciler/xds/|^BenchmarkDeltaEndpointPush$|200x|xDS server: one endpoint change pushed to 100 connected delta ADS clients (in-process gRPC clients on loopback, not Envoys) until the server has all 100 ACKs; p50/p99 over iterations"
	"xds-sotw-sync|./reconciler/xds/|^BenchmarkSotWFullSync$|5x|xDS server, 1,000-service mesh (2,000 classes, compiled once), 100 SotW ADS clients of distinct classes: connect = 100 new clients until all hold all their resources and are ACKed; republish = a new revision of the whole mesh (every snapshot built and checked) until all 100 ACKed"
	"eds-rebuild|./compiler/|^BenchmarkWithEndpoints$|20x|compiler.WithEndpoints on a compiled 1,000-service mesh (2,000 classes, 10 pod IPs per version): one endpoint of one service moves; load assignments rebuilt where they change, snapshot versions resumed from the kept hash state (the cheap path of an endpoint change in a cluster)"
	"serving-memory|./reconciler/kube/serving/|^BenchmarkServingMemory$|1x|the controller's serving side, one replica in its own process: a 1,000-service mesh (2,000 classes) whose 10,000 endpoints are 1,000 EndpointSlices and 10,000 pods in the test apiserver (not a direct feed), 100 delta ADS clients over mTLS bound to their pods; rss-MB = the replica's resident memory after 20 endpoint changes (goal <= 300), peak-rss-MB its peak (the revision's load and compile), heap-live-MB its heap after a GC; p50-ms / max-ms = EndpointSlice write until every client calling the service (6) has the new load assignments; time/op is the whole scenario and means nothing"
	"ca-sign|./reconciler/ca/|^BenchmarkSign|2000x|mesh CA: parse and check a P-256 CSR and sign a 24h workload certificate with a SPIFFE URI SAN; certs/s in the raw lines (Parallel: on both cores)"
	"proxy-observability|./tests/|^BenchmarkProxyObservability$|1x|one real Envoy (frontend's compiled bootstrap, one worker thread) in front of a Go HTTP server, loaded by fortio (${FORTIO_VERSION:-v1.63.0}) through its outbound listener for 10 s per load: observability off (metrics: false), the per-request stats only (the default), plus a JSON access log to a file, plus tracing of every request to a real Jaeger; max = 16 connections without a rate limit, 500qps = a fixed 500 req/s on 8 connections; req/s and p99-ms in the raw lines"
	"gitops|./up/|^BenchmarkGitOpsLoop$|10x|weft up following a git branch (default 1s poll): a commit that changes a split, until all 3 real Envoys have ACKed it; time/op is the mean, p50-ms and max-ms in the raw lines"
	"controller-reconcile|./reconciler/controller/|^BenchmarkFluxArtifactReconcile$|3x|weft controller, one new revision of a 1,000-service mesh (2,000 proxy classes) from a Flux artifact: fetch (Flux's ArchiveFetcher: download, digest check, untar; fetch-ms) + the pipeline (load, vet with every default policy, compile, publish to the xDS server; pipeline-ms)"
	"controller-rss|./tests/|^BenchmarkControllerRSS$|1x|the weft controller process (the binary, with the Deployment's flags) against a real apiserver and source-controller, serving a 1,000-service Mesh: ready-s from the Mesh's creation to Ready, rss-MB once Ready, peak-rss-MB (VmHWM; goal: at most 300 MB); time/op includes starting the apiserver, etcd and source-controller"
	"pod-sidecars|./tests/|^BenchmarkPodSidecars$|1x|two injected pods without Kubernetes: network namespaces joined by a veth pair, each with weft netinit's iptables redirect and weft agent + Envoy (the injector's arguments and defaults: uid 1337, 2 worker threads) fed by the real mesh CA and reconciler/xds serving the example shop (prod) plus loadgen (calls echo and what the frontend calls) and echo; fortio ${FORTIO_VERSION:-v1.63.0} at a fixed 1,000 req/s on 4 connections for 10 s from loadgen's pod to http://10.77.0.2:8080/ (fortio's echo server as the app): plain = the same two namespaces without redirect or Envoy, mesh = outbound redirect, loadgen's Envoy, mTLS, inbound redirect, echo's Envoy; 3 alternating rounds, medians: plain-/mesh-p50-ms, -p99-ms, -req/s (achieved) and added-p50-ms / added-p99-ms (goal: p99 added at most 1 ms); after the load each pod's Envoy and agent VmRSS (*-rss-MB; goal for Envoy at most 40 MB), its anonymous part (*-anon-MB) and Envoy's allocated heap (*-envoy-heap-MB), Envoy's clusters; netinit's run (*-netinit-ms) and the agent's start until /ready answers 200 (*-ready-ms: what the startup probe waits for before the app starts); loadavg-1m = the machine's load at the end, cpu-wait-% = the share of the measurement during which some runnable task on the machine waited for a CPU (/proc/pressure/cpu); time/op means nothing"
	"pod-create|./sidecar/webhook/|^BenchmarkPodCreate$|50x|Pods.Create through a real kube-apiserver and etcd with weft's MutatingWebhookConfiguration (the webhook on loopback TLS): injected = in a namespace labelled weft.dev/inject=enabled (admission call, injection, validation and storage of the native sidecar), not-injected = an unlabelled namespace; time/op is the mean, p50-ms / p90-ms over the iterations; no kubelet (the node's part of a pod start is in pod-sidecars)"
)

# cli_table NAME WHAT RAW writes the whole-process table: per mesh size
# and command, wall time and peak memory, and both as a multiple of the
# same run's cue export of that mesh.
cli_table() {
	local name="$1" what="$2" raw="$3"
	echo "## $name"
	echo
	echo "$what."
	echo
	echo "| services | command | wall time | CPU time | peak memory | wall / cue export | CPU / cue export | memory / cue export |"
	echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
	awk '/^BenchmarkCLI\// {
		split($1, p, "/"); sub(/^services=/, "", p[2]); cmd = p[3]; sub(/-[0-9]+$/, "", cmd)
		ns = 0; mb = 0; cs = 0
		for (i = 2; i <= NF; i++) { if ($i == "ns/op") ns = $(i-1); if ($i == "peak-MB") mb = $(i-1); if ($i == "cpu-s/op") cs = $(i-1) }
		n++; size[n] = p[2]; name[n] = cmd; wall[n] = ns / 1e9; peak[n] = mb; cpu[n] = cs
		if (cmd == "cue-export") { fw[p[2]] = ns / 1e9; fm[p[2]] = mb; fc[p[2]] = cs }
	}
	END {
		for (i = 1; i <= n; i++) {
			c = name[i]; gsub(/-/, " ", c); s = size[i]
			printf "| %s | `%s` | %.2f s | %.2f s | %.0f MB | %.2f | %.2f | %.2f |\n", s, c, wall[i], cpu[i], peak[i], wall[i] / fw[s], cpu[i] / fc[s], peak[i] / fm[s]
		}
	}' "$raw"
	echo
	echo '```'
	grep -E '^(Benchmark|goos|goarch|pkg|cpu)' "$raw"
	echo '```'
	echo
}

OUT="$ROOT/BENCHMARKS.md"
RAW="$(mktemp)"
trap 'rm -f "$RAW" "$OUT.tmp"' EXIT

cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
{
	echo "# Benchmarks"
	echo
	if [[ -n "${SUITES:-}" ]]; then
		echo "Generated by \`scripts/benchmarks.sh\`; last run (SUITES=\"$SUITES\") on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short=12 HEAD): each section says when it was measured, or is from the full run before."
	else
		echo "Generated by \`scripts/benchmarks.sh\` on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short=12 HEAD)."
	fi
	echo "Machine: $(nproc) cores ($cpu), $(free -g | awk '/Mem:/ {print $2}') GiB, $(go version | cut -d' ' -f3)."
	echo "Shared and noisy: compare figures of one run with each other, not across runs."
	echo
} > "$OUT.tmp"

# section NAME prints the section "## NAME" of the current BENCHMARKS.md
# (up to the next "## "), for the suites SUITES leaves out.
section() {
	[[ -f "$OUT" ]] || return 0
	awk -v h="## $1" '$0 == h {on = 1; print; next} on && /^## / {exit} on {print}' "$OUT"
}

for suite in "${SUITES_ALL[@]}"; do
	IFS='|' read -r name pkg re benchtime what table <<<"$suite"
	if [[ -n "${SUITES:-}" && " $SUITES " != *" $name "* ]]; then
		section "$name" >> "$OUT.tmp"
		continue
	fi
	echo "==> $name: go test -run='^\$' -bench='$re' -benchtime=$benchtime -benchmem $pkg" >&2
	go test -run='^$' -bench="$re" -benchtime="$benchtime" -benchmem "$pkg" | tee "$RAW" >&2
	if [[ "${table:-}" == cli ]]; then
		cli_table "$name" "$what" "$RAW" >> "$OUT.tmp"
		continue
	fi
	{
		echo "## $name"
		echo
		echo "$what."
		echo
		echo "Measured on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short=12 HEAD)."
		echo
		echo "| benchmark | time/op | allocated/op | allocs/op |"
		echo "| --- | ---: | ---: | ---: |"
		# Columns by unit: custom metrics (b.ReportMetric) may sit between them.
		awk '/^Benchmark/ {
			ns = 0; by = 0; al = 0
			for (i = 4; i <= NF; i++) {
				if ($i == "ns/op") ns = $(i-1)
				if ($i == "B/op") by = $(i-1)
				if ($i == "allocs/op") al = $(i-1)
			}
			t = ns / 1e6; unit = "ms"
			if (t >= 1000) { t = t / 1000; unit = "s" }
			printf "| %s | %.3g %s | %.1f MB | %d |\n", $1, t, unit, by / 1e6, al
		}' "$RAW"
		echo
		echo '```'
		grep -E '^(Benchmark|goos|goarch|pkg|cpu)' "$RAW"
		echo '```'
		echo
	} >> "$OUT.tmp"
done

if [[ -f "$ROOT/docs/benchmarks-notes.md" ]]; then
	cat "$ROOT/docs/benchmarks-notes.md" >> "$OUT.tmp"
fi
mv "$OUT.tmp" "$OUT"
echo "==> wrote $OUT" >&2
