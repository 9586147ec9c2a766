#!/usr/bin/env bash
# Regenerates the committed files derived from weft's Kubernetes API types
# (reconciler/api/mesh/v1alpha1) with controller-gen, pinned in its own
# tools module (tools/controller-gen/go.mod, `go tool -modfile`):
#
#   reconciler/api/mesh/v1alpha1/zz_generated.deepcopy.go   DeepCopy methods
#   environments/deploy/crd/mesh.weft.dev_meshes.yaml        the Mesh CRD
#
# and then environments/deploy/install.yaml, the kustomize base of that
# folder built with kustomize's Go API (environments/deploy/internal/gen),
# which `weft install --export` embeds.
#
#   scripts/generate.sh              regenerate in place (make generate)
#   scripts/generate.sh OBJDIR CRDDIR  write the controller-gen outputs into
#                                    other folders instead, and nothing else
#                                    (TestGeneratedFilesAreCurrent compares)
#   scripts/generate.sh tools        only build controller-gen (make tools),
#                                    so later runs need no network
#
# controller-gen is built from the module cache by the go command, which
# also caches the binary; after one `make tools` it runs offline.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

API=./reconciler/api/mesh/v1alpha1
controller_gen() { go tool -modfile=tools/controller-gen/go.mod controller-gen "$@"; }

if [[ "${1:-}" == tools ]]; then
	controller_gen --version
	exit 0
fi

OBJDIR="${1:-$API}"
CRDDIR="${2:-environments/deploy/crd}"
mkdir -p "$OBJDIR" "$CRDDIR"

controller_gen \
	object paths="$API/..." output:object:dir="$OBJDIR" \
	crd paths="$API/..." output:crd:dir="$CRDDIR"

if [[ $# -eq 0 ]]; then
	go run ./environments/deploy/internal/gen
fi
