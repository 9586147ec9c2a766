// Package cluster holds the end-to-end tests that need a real single-node
// Kubernetes cluster (internal/clustertest): weft's images running in
// pods, the pod network, Services, DNS and the cluster's teardown; and
// weft's own manifests (`weft install --export`) deployed into it
// (TestCluster); and the mesh end to end in injected pods (TestMesh,
// mesh_test.go: weft, Flux's source-controller and the example shop with
// the overlay tests/testdata/mesh-e2e, checked through the pods' Envoys).
// The tests skip on a machine that cannot run the cluster (not root, the
// Debian packages or `make tools` missing) and fail there under CI=true.
package cluster
