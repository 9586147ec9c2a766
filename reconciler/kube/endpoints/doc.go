// Package endpoints feeds the endpoints of a Kubernetes cluster into the
// served mesh: the EndpointSlices (discovery.k8s.io/v1) of each mesh
// service's Kubernetes Service and the labels of the pods behind them
// become the load assignments (EDS) of every proxy class, live, without
// compiling the mesh again.
//
// # Which endpoints
//
//   - The Kubernetes Service of mesh service S is the Service named S in
//     S's namespace (its EndpointSlices carry the label
//     kubernetes.io/service-name=S). Its ports do not matter: a pod is
//     reached on the mesh port (compiler.Address port 0), which is the
//     port the workload listens on — the pod's iptables redirect hands
//     it to the sidecar's inbound listener.
//   - Only ready endpoints (conditions.ready true, or unset, which the
//     API says means ready) with an IPv4/IPv6 address; FQDN slices are
//     not supported.
//   - An endpoint's version is the one whose labels are all on its pod
//     (targetRef, workload.Version). An endpoint without a pod, whose pod
//     the cache does not have, that matches no version or several, or
//     (unless the service's mTLS is disabled) whose pod runs as another
//     service account than the service's — mTLS to it would fail on the
//     peer's SPIFFE id — is left out and reported (Feed.Excluded, a
//     warning in the log when the set changes, and the gauge
//     weft_endpoints_excluded).
//
// # The cheap path
//
// The Feed stands between the pipeline and the xDS server: the
// pipeline's Endpoints hook is Feed.Endpoints (it compiles a revision
// with the cluster's current endpoints) and its Publisher is the Feed,
// which keeps the compiled result of the last revisions. An EndpointSlice
// or pod change wakes the Feed; after a quiet window (Options.Debounce,
// 100 ms: a burst of changes is one update) it recomputes the endpoints
// of the served revision's model and, if they changed, rebuilds only the
// load assignments of the served result (compiler.WithEndpoints) and
// publishes it: classes whose load assignments did not change are the
// same objects, the xDS server reuses their snapshots, and delta clients
// are sent only the changed ClusterLoadAssignments. When the xDS server
// rolls back to another revision (a proxy rejected one), the Feed
// publishes that revision with the current endpoints.
//
// The snapshot versions are those Compile would give for the same
// revision and endpoints, so two controller replicas that see the same
// cluster serve the same versions.
//
// # Imports
//
// schema/mesh, compiler, reconciler/api/status (step names) and
// reconciler/kube/workload of weft; controller-runtime's client and
// cache, client-go's cache, the Kubernetes API types, client_golang.
package endpoints
