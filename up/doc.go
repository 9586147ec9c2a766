// Package up is `weft up`: a whole mesh on one machine, no Kubernetes. It
// composes — and holds no pipeline logic of its own — the pipeline
// (reconciler/pipeline: Gate, Pipeline, Follower over a source of
// reconciler/pipeline/source), the control plane (reconciler/ca, the xDS
// server of reconciler/xds, the status endpoint) and, for every replica
// of every service version, a loopback address, an agent
// (sidecar/agent) with a real Envoy, and the app. Its own parts are the
// placement of instances (addresses, ports: placement.go), their
// processes (instance.go), the state directory and the agents' runtime
// directory (state.go), `weft status` (status.go) and the wiring of the
// service map (reconciler/servicemap) on the status endpoint
// (servicemap.go).
//
// docs/local-mode.md is the user's documentation. Only cmd/ imports it;
// it may import every other folder (tests/layering_test.go).
package up
