// Package serving composes the serving side of `weft controller` on a
// controller-runtime manager: what every replica runs, leader or not.
//
//	serving.CacheOptions(&mgrOpts.Cache)          // trims cached pods
//	s, err := serving.Setup(mgr, serving.Options{Namespace: ns, TrustDomain: td, ...})
//	p := &pipeline.Pipeline{Endpoints: s.Feed.Endpoints, Publisher: s.Publisher, Check: s.CheckTrustDomain, ...}
//
// Setup adds to the manager, as runnables that do not need leader
// election:
//
//   - the mesh CA root (package caroot): read from the Secret, created by
//     the leader when absent, awaited otherwise;
//   - once the root is there, the xDS server (reconciler/xds, mTLS with
//     the CA's serving certificate, streams bound to pods by
//     identity.PodAuthorizer) on Options.XDSAddress and the CA's gRPC
//     service (reconciler/ca, CSRs authenticated by
//     identity.TokenReviewAuthenticator) on Options.CAAddress;
//   - the endpoints feed (reconciler/kube/endpoints), the pipeline's
//     Publisher and Endpoints hook;
//   - the readiness check "serving" (listeners up) and the CA's and the
//     feed's metrics in controller-runtime's registry.
//
// Every replica serves xDS and signs CSRs from the same root, and builds
// the same snapshot versions (compiling is deterministic and every
// replica sees the same endpoints). What only the leader may do — write
// the Mesh status, apply NetworkPolicies, emit Events — runs in the Mesh
// reconciler; IsLeader and OnElected (leader.go) are what it needs: a
// controller registered with NeedLeaderElection false reconciles on
// every replica (each must compile and serve) and writes status only when
// IsLeader, and OnElected requeues every Mesh when a replica becomes the
// leader, so the new leader writes the status at once.
//
// `weft controller` (cmd/weft) composes it with the Mesh reconciler
// through controller.Options.Serve: the Serving's XDS is the replica's
// one xDS server, and Publisher, Feed.Endpoints and CheckTrustDomain are
// the reconciler's pipeline hooks. Options.BindFlags registers
// --trust-domain, --ca-address and --ca-secret.
//
// # Imports
//
// schema/mesh, compiler, reconciler/ca, reconciler/xds, reconciler/kube/...
// of weft; controller-runtime, client-go, grpc, pflag.
package serving
