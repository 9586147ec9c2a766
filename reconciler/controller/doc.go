// Package controller is `weft controller`: the Kubernetes controller
// (controller-runtime) that reconciles Meshes (mesh.weft.dev/v1alpha1)
// from Flux source artifacts and serves them to the proxies over xDS —
// and the composition of the control plane around it (Controller, built
// from Options with optional Components).
//
// # Reconciling a Mesh
//
// MeshReconciler runs, as Flux's reconcilers do, an ordered list of
// steps, each taking the reconcile's context:
//
//  1. finalizer: a Mesh being deleted is finalized (below); one without
//     the finalizer gets it first.
//  2. suspend: spec.suspend stops here; nothing changes, the last applied
//     revision keeps being served.
//  3. served: one Mesh per control plane. Of the Meshes that are not
//     being deleted, the oldest (creationTimestamp, then namespace/name)
//     is served; every other one is Ready=False, Stalled=True, reason
//     OtherMeshServed, naming the one served, and is not requeued — the
//     deletion of the served Mesh requeues them all, and the next oldest
//     is served.
//  4. source: spec.sourceRef (GitRepository, OCIRepository or Bucket of
//     source.toolkit.fluxcd.io/v1) must exist and have an artifact, else
//     Ready=False reason ArtifactFailed, requeued after retryInterval.
//  5. fetch: the artifact is downloaded with Flux's ArchiveFetcher, its
//     digest verified, unpacked within limits (package
//     reconciler/pipeline/source/flux); spec.path and spec.policies are
//     folders in it.
//  6. pipeline: the same pipeline as weft vet/build/up
//     (reconciler/pipeline: load -> vet -> compile -> publish), in
//     spec.environment, within spec.timeout (the revision's time limit,
//     fetch included). Its Publisher, Endpoints and Check are the serving
//     side's (Options.Serve, below), else the plain xDS server's.
//  7. network policies: once the revision is applied (every connected
//     proxy ACKed it, the xDS server's lastAppliedRevision), the
//     NetworkPolicies compiled from it (compiler.NetworkPolicies) are
//     applied server-side (field manager "weft") and those of the mesh
//     that it no longer has (compiler.PruneSelector) are deleted.
//
// The steps are skipped from fetch on when nothing changed since the last
// run that did not fail retryably: the same artifact digest, generation
// and served Mesh, and no new reconcile.fluxcd.io/requestedAt. The
// status is then refreshed from the xDS server: the reconciler is
// requeued (debounced) whenever the server's status changes, so Ready,
// the proxies summary and NACKs follow the proxies' ACKs.
//
// # Conditions and requeues (Flux's kstatus conventions)
//
//   - applied: Ready=True, reason Succeeded, "Applied revision: R";
//     lastAppliedRevision, snapshotVersion, proxies; requeued after
//     spec.interval (which re-applies the NetworkPolicies).
//   - published, rolling out: Ready=Unknown and Reconciling=True, reason
//     Progressing, with the proxies not in sync yet.
//   - a *pipeline.StallingError (the definition's fault: CUE, policy,
//     compile, acceptance; an artifact over the limits or without
//     spec.path): Ready=False, Stalled=True, reason LoadFailed,
//     PolicyDenied, CompileFailed, ArtifactFailed, ...; the message and
//     status.failure carry file:line (paths relative to the repository).
//     Not requeued: a new artifact or a spec change brings it back.
//   - a *pipeline.RetryableError (download failed, time limit), a source
//     missing or without an artifact: Ready=False with the step's reason,
//     Reconciling=True with reason ProgressingWithRetry, requeued after
//     spec.retryInterval.
//   - a proxy NACKed the revision while it rolled out: the xDS server
//     rolled every proxy back to the last applied revision; Ready=False,
//     Stalled=True, reason ProxyRejected, with the proxy, Envoy's reason
//     and the rejected value's file:line.
//
// In every failure lastAppliedRevision is unchanged and still served.
//
// # Deletion
//
// The finalizer mesh.weft.dev/finalizer deletes the NetworkPolicies (and
// the kept artifact) of the Mesh (they live in the services' namespaces, so they are owned
// through the labels of compiler.PruneSelector, not ownerReferences,
// which cannot cross namespaces). The proxies are not touched: they keep
// the configuration they have (the xDS server keeps serving the last
// snapshot of every class) until the control plane goes away or another
// Mesh is served, whose first revision replaces it. Taking config away
// from running proxies would cut the traffic they carry.
//
// # The last applied revision survives the controller
//
// source-controller offers only its latest artifact. The leader keeps
// the artifact of each revision that becomes applied, with the spec it
// was applied with, in a ConfigMap of the controller's namespace
// (KeptArtifactName, lastgood.go). A controller that starts serving a
// Mesh (a restart, a new replica, another Mesh deleted) whose
// lastAppliedRevision is not the source's current revision publishes the
// kept one first and then tries the current one: a broken latest
// revision leaves the kept one serving instead of nothing. The finalizer
// deletes the ConfigMap.
//
// # Leadership
//
// Every replica runs the reconciler (NeedLeaderElection=false) so that
// every replica's xDS server serves the same revision; only the leader
// (Options.LeaderElection, the manager's election) writes: the finalizer,
// status, events and NetworkPolicies. A replica that becomes the leader
// requeues every Mesh at once (a leader-only runnable), so that the
// status a follower did not write is written then, not at the Mesh's
// next interval.
//
// # Every replica's proxies (proxies.go)
//
// Each replica serves the proxies that connect to it; the leader counts
// them all in the Mesh's status. A replica that knows its pod
// (Options.PodName, $POD_NAME) reports its connected proxies (node,
// class, versions, in sync, last NACK with its reason and message cut to
// 1 KiB) in the ConfigMap ProxiesReportName(pod), "weft-proxies-<pod>",
// of its namespace: labelled ProxiesLabel=true, with an ownerReference
// to its pod (looked up once with the API reader; left out when the pod
// cannot be read), server-side applied (field manager "weft") when its
// xDS status changes, at most once per Options.StatusInterval, and every
// 10 s otherwise, when it also requeues the served Mesh (refreshOnChange,
// on every replica). The leader lists
// the reports from the manager's cache (which holds only the labelled
// ConfigMaps of the namespace; their changes requeue the served Mesh),
// skips its own (its live server's proxies count instead), a report
// written more than 3 × StatusInterval + 30 s ago, and one whose owner pod
// is gone, then keeps one entry per node id — the latest connection or
// disconnection, so a proxy that reconnected to another replica counts
// once — and counts. Without a pod name a replica does not report (tests,
// local runs); the leader still counts the others' reports. A report
// too large for a ConfigMap (~900 KiB, some thousands of NACKing
// proxies) drops its NACK messages, then is not written (logged).
//
// # Events and metrics
//
// An event per revision applied or failed (Flux's runtime/events
// recorder: Kubernetes events and, with --events-addr, Flux's
// notification-controller), annotated with mesh.weft.dev/revision and
// mesh.weft.dev/token as notification-controller expects. Metrics
// (metrics.go) on the controller's registry, served with
// controller-runtime's own at --metrics-bind-address /metrics.
//
// # The serving side (Options.Serve)
//
// Every replica serves exactly one xDS server. In `weft controller`
// (cmd/weft) it is the serving side's (package reconciler/kube/serving:
// mTLS with the mesh CA, streams bound to pods, the CA's gRPC service,
// EndpointSlices as EDS): Options.Serve makes it on the manager, with the
// xDS options the controller chose (its logger, the metrics' gRPC
// interceptors, the Components' changes), and returns a Serving — the
// server (the status, proxies and NACKs are read from it, its changes
// requeue the served Mesh), the pipeline's Publisher in front of it (the
// EndpointSlice feed, which publishes endpoint changes to the same server
// without a new revision), its Endpoints hook and its Check (the trust
// domain the CA signs for). The serving side listens and serves; New then
// neither listens on XDSAddress nor adds the "xds" readiness check (the
// serving side has its own). This package does not import the serving
// side: cmd composes them. Without Options.Serve, New makes a plain xDS
// server (no TLS, no authorizer) on XDSAddress: the reconciler's own
// tests use it; `weft controller` never does.
//
// # Components
//
// Options.Components are the parts of the control plane that other
// packages add (cmd/weft's sidecar injector; per-node variants in tests):
// each may change the xDS server's options, give the pipeline its
// endpoints (unless the serving side does), and add runnables and
// controllers to the manager with the xDS server and the metrics registry
// at hand (Component, Runtime).
//
// # Imports
//
// schema/mesh, compiler, reconciler/pipeline (and source/flux),
// reconciler/xds, reconciler/api; controller-runtime, client-go, Flux's
// runtime and source API. Never sidecar, cmd or up.
package controller
