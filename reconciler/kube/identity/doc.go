// Package identity is who a workload is in a Kubernetes cluster, for the
// mesh CA and for the xDS server:
//
//   - TokenReviewAuthenticator (a reconciler/ca Authenticator): a CSR is
//     authenticated by the workload's projected service-account token
//     (audience "weft"), which the apiserver verifies through the
//     TokenReview API — the token is never parsed here. The identity is
//     spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount> from the
//     reviewed user system:serviceaccount:<namespace>:<serviceAccount>;
//     the CA then refuses a CSR for any other id. A token for another
//     audience, of a deleted service account, expired, or bound to a
//     deleted pod is refused by the apiserver (within its 10 s
//     token-cache window).
//   - PodAuthorizer (a reconciler/xds Authorizer): an xDS stream's node id
//     names a pod ("<pod>.<namespace>", package workload); the pod is
//     looked up (informer cache, then a live get), its service account
//     must be the SPIFFE id of the stream's verified client certificate,
//     and its proxy class is derived from its labels and the served
//     definition (workload.Of), never from what the client claims. A
//     claimed class that differs is refused, as local mode does.
//
// # Imports
//
// schema/mesh, compiler (names), reconciler/ca, reconciler/xds,
// reconciler/kube/workload and reconciler/api/ca/v1 of weft;
// controller-runtime's client and the Kubernetes API types.
package identity
