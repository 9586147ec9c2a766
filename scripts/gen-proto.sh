#!/usr/bin/env bash
# Regenerates the Go code of weft's own gRPC APIs (reconciler/api/**.proto).
# The generated *.pb.go files are committed: builds and CI never need protoc.
#
# protoc comes from the PyPI package grpcio-tools (python3 -m grpc_tools.protoc,
# installed into .tools/protoc-venv), the Go plugins from `go install` into
# .tools/bin. Versions are pinned below; protoc-gen-go matches go.mod's
# google.golang.org/protobuf.
#
#   scripts/gen-proto.sh
#
# Environment: TOOLS_DIR (default <repo>/.tools), PYTHON (default python3).
set -euo pipefail

GRPCIO_TOOLS_VERSION=1.80.0
PROTOC_GEN_GO_GRPC_VERSION=v1.5.1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-$ROOT/.tools}"
BIN="$TOOLS_DIR/bin"
VENV="$TOOLS_DIR/protoc-venv"
PYTHON="${PYTHON:-python3}"
log() { printf 'gen-proto: %s\n' "$*" >&2; }

cd "$ROOT"
PROTOBUF_VERSION="$(go list -m -f '{{.Version}}' google.golang.org/protobuf)"
mkdir -p "$BIN"

if ! "$VENV/bin/python" -c "import grpc_tools, importlib.metadata as m; assert m.version('grpcio-tools') == '$GRPCIO_TOOLS_VERSION'" 2>/dev/null; then
	log "installing grpcio-tools==$GRPCIO_TOOLS_VERSION into $VENV"
	"$PYTHON" -m venv "$VENV"
	"$VENV/bin/python" -m pip install --quiet "grpcio-tools==$GRPCIO_TOOLS_VERSION"
fi
if ! [[ -x "$BIN/protoc-gen-go" ]] || [[ "$("$BIN/protoc-gen-go" --version 2>&1)" != *"${PROTOBUF_VERSION}"* ]]; then
	log "installing protoc-gen-go $PROTOBUF_VERSION"
	GOBIN="$BIN" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOBUF_VERSION"
fi
if ! [[ -x "$BIN/protoc-gen-go-grpc" ]] || [[ "$("$BIN/protoc-gen-go-grpc" --version 2>&1)" != *"${PROTOC_GEN_GO_GRPC_VERSION#v}"* ]]; then
	log "installing protoc-gen-go-grpc $PROTOC_GEN_GO_GRPC_VERSION"
	GOBIN="$BIN" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi

# grpc_tools ships the well-known types (google/protobuf/*.proto).
WKT="$("$VENV/bin/python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
mapfile -t protos < <(cd "$ROOT" && find reconciler/api -name '*.proto' | sort)
log "generating ${#protos[@]} file(s): ${protos[*]}"
PATH="$BIN:$PATH" "$VENV/bin/python" -m grpc_tools.protoc \
	-I "$ROOT" -I "$WKT" \
	--go_out="$ROOT" --go_opt=module=github.com/weft-dev/weft \
	--go-grpc_out="$ROOT" --go-grpc_opt=module=github.com/weft-dev/weft \
	"${protos[@]}"
gofmt -l reconciler/api || true
