// Package workload says which part of the mesh a Kubernetes pod is: its
// node id on the xDS server, the mesh service and version its labels
// select, and the SPIFFE identity it runs as. The endpoints feed
// (reconciler/kube/endpoints) and the xDS authorizer
// (reconciler/kube/identity) apply the same rules through it.
//
// # The contract with the agent and the injector
//
//   - A sidecar's xDS node id is "<pod name>.<namespace>" (NodeID). Pod
//     names may hold dots, namespaces may not, so ParseNodeID splits at
//     the last dot. The agent reads both from the downward API
//     (metadata.name, metadata.namespace); node.cluster and the
//     "weft.class" metadata may name the class, but the class is never
//     taken from them.
//   - The pod carries the label mesh.weft.dev/service=<service>
//     (compiler.ServiceLabel, the label the NetworkPolicies select on);
//     the service's version is the one whose labels are all on the pod
//     (Version). A pod that matches none or several is not part of the
//     mesh: it gets no endpoints and no configuration.
//   - The pod runs as the service's serviceAccount; its identity is
//     spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccountName>
//     (Identity; an empty serviceAccountName is "default").
//
// # Imports
//
// schema/mesh, compiler (its label and class names) and
// reconciler/api/ca/v1 of weft; k8s.io/api. Nothing that talks to a
// cluster.
package workload
