# weft — build and test entry points. The README's one command is:
#
#     make tools test
#
# `make tools` installs the pinned envoy, cue and opa into .tools/bin
# (scripts/tools.sh; versions pinned at its top) and builds the pinned
# controller-gen from its tools module (scripts/generate.sh tools), so that
# the test of the generated files runs offline. `make test` runs, in order,
# the gofmt check, go vet, go test -race and a short fuzz run of every fuzz
# target (scripts/test.sh), with .tools/bin first on PATH and in WEFT_TOOLS_BIN.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

TOOLS_DIR := $(CURDIR)/.tools
export TOOLS_DIR
export WEFT_TOOLS_BIN := $(TOOLS_DIR)/bin
export PATH := $(WEFT_TOOLS_BIN):$(PATH)

# Knobs, e.g. `make test FUZZTIME=5s` or `make unit TEST_FLAGS='-run TestLoad -v' PKGS=./schema/...`.
TEST_TIMEOUT ?= 20m
FUZZTIME ?= 20s
PKGS ?= ./...
TEST_FLAGS ?=
export TEST_TIMEOUT FUZZTIME PKGS TEST_FLAGS

.PHONY: all tools generate tool-versions test fmtcheck vet unit fuzz fuzz-list bench benchmarks build images fmt clean help

all: tools test build

help:
	@echo 'make tools   install pinned envoy, cue, opa into .tools/bin (idempotent), build controller-gen'
	@echo 'make generate  regenerate the Mesh deepcopy code and CRD (controller-gen)'
	@echo 'make test    gofmt check, go vet, go test -race, fuzz each target for $$FUZZTIME'
	@echo 'make fmtcheck | vet | unit | fuzz   one stage of make test'
	@echo 'make bench   go test -bench=. -benchmem ./..., raw output in out/bench/'
	@echo 'make benchmarks  regenerate BENCHMARKS.md (scripts/benchmarks.sh)'
	@echo 'make build   bin/weft'
	@echo 'make images  weft, weft-proxy, pause and test images into out/images/oci (OCI layout; no Docker, no registry)'
	@echo 'make fmt     gofmt -w the repo'

tools:
	scripts/tools.sh
	scripts/generate.sh tools

# Regenerate the Kubernetes API's deepcopy code and the Mesh CRD
# (reconciler/api/mesh/v1alpha1 -> environments/deploy/crd).
generate:
	scripts/generate.sh

tool-versions:
	@scripts/tools.sh versions

test:
	scripts/test.sh

fmtcheck:
	scripts/test.sh fmt

vet:
	scripts/test.sh vet

unit:
	scripts/test.sh unit

fuzz:
	scripts/test.sh fuzz

fuzz-list:
	@scripts/test.sh fuzz-list

bench:
	scripts/bench.sh

build:
	go build -o bin/weft ./cmd/weft

# weft's container images (internal/images), reproducibly, into the OCI
# layout out/images/oci (digests in out/images/images.txt). Needs envoy in
# .tools (make tools) and Debian's iptables, busybox-static and
# ca-certificates. `make images TAG=v0.1.0` tags them otherwise.
TAG ?= dev
images:
	go run ./internal/images/cmd/images -out out/images -tag $(TAG)

fmt:
	find . \( -path ./.git -o -path ./.tools -o -path ./bin -o -path ./out \
		-o -name vendor -o -name testdata \) -prune -o -type f -name '*.go' -print0 \
		| xargs -0 -r gofmt -w

clean:
	rm -rf bin out

benchmarks:
	scripts/benchmarks.sh

# Regenerate the committed Go code of weft's gRPC APIs (reconciler/api/**.proto).
.PHONY: proto
proto:
	scripts/gen-proto.sh
