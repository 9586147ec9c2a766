// Package tests holds weft's end-to-end suites: they drive real components
// (a real Envoy, the real cue and opa CLIs, gRPC-Go's xDS client, a real
// kube-apiserver + etcd, a real git server, network namespaces + iptables)
// through the same code paths that the CLI and the controller use. The tools
// come from `make tools` and are found with internal/tooltest.
//
// tests/cluster runs weft's images in a real single-node cluster
// (internal/clustertest): pods, Services, DNS, weft install.
//
// It also holds repository-wide checks, such as layering_test.go, which
// enforces DESIGN.md's one-way import order between the pipeline stages.
//
// Nothing imports this package; it may import any weft package. A suite that
// needs several stages together (say a sidecar agent against a real
// reconciler) lives here, not in either stage's own tests.
package tests
