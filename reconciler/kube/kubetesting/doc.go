// Package kubetesting holds what the tests of reconciler/kube share on top
// of internal/kubetest's real apiserver: managers, namespaces, service
// accounts, pods and EndpointSlices as a cluster would have them,
// projected service-account tokens, workload certificates from the mesh
// CA over its gRPC API, and an xDS client that speaks delta ADS as Envoy
// does. It is imported by tests only.
//
// It imports schema, compiler, reconciler/api/ca/v1, internal/kubetest and
// internal/tooltest (environments/deploy/rbac.yaml: ControllerKubeconfig)
// of weft.
package kubetesting
