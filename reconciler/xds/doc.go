// Package xds serves compiled meshes to proxies: a go-control-plane
// snapshot cache and xDS server (ADS, state-of-the-world and delta) on a
// gRPC server, the atomic swap of a new revision for every proxy class,
// its rollout and its rollback when a proxy rejects it, ACK/NACK tracking
// per proxy, the binding of every stream to the verified identity of its
// client certificate (Authorizer), and the status of all of it
// (Server.Status, and GET /status through Server.Handler, with the JSON
// types of package reconciler/api/status). The pipeline that produces
// revisions (load -> vet -> compile -> publish) is package
// reconciler/pipeline; the Server is its Publisher.
//
// It imports schema and compiler of weft (and reconciler/api/status and
// reconciler/api/ca/v1 for SPIFFE identities), never policies, sidecar,
// cmd or the `weft up` composition.
//
// # Streams, identities and nodes
//
// Every stream is bound, at its first request, to a node id and a proxy
// class by the Authorizer (Options.Authorizer), from the SPIFFE id of the
// client certificate that the TLS handshake verified (the gRPC peer's
// TLSInfo.VerifiedChains, never anything the client sends) and the node
// the client claims (id, node.cluster, the "weft.class" metadata). A
// refusal ends the stream with PermissionDenied before anything is
// served, and is listed in the status (RefusedStreams, rate-limited in
// the log); a later request on the stream that names another node is
// refused the same way. RecordAuthorizer checks the claim against the
// control plane's records (local mode: the instances `weft up` placed);
// TrustClaims, the default, believes the claim and is for plaintext
// tests only.
//
// The snapshot cache is keyed by the bound node id, so several proxies
// of one class coexist and each may be served its own variant of the
// class (Options.PerNode, given the bound node id: local mode localizes
// listener ports from its own placement records, never from node
// metadata). A per-node variant that fails affects that node only: it
// keeps what it has, shows the error, and is retried with backoff. When a
// node's first request arrives the node is given the current snapshot of
// its class, before the server looks the request up in the cache. A node
// whose class the served revision does not have is served nothing and
// shows the error in its status; it gets its class as soon as a revision
// that has it is published. A node's snapshot is dropped from the cache
// when its last stream closes; its status entry stays, disconnected, for
// Options.ForgetAfter.
//
// # Publishing and atomic revisions
//
// Publish builds and checks (Consistent) the snapshot of every class, and
// every node's variant, before it changes anything; only then are all
// nodes' snapshots set, under one lock that node registration also takes.
// A failing revision changes nothing served. A class missing from a new
// revision keeps its previous snapshot for the nodes already using it.
//
// A published revision is rolled out (Status.Rollout) until every
// connected proxy of a class it has is in sync with it; it is then the
// last applied revision (Status.LastAppliedRevision), kept with its
// snapshots. If a proxy NACKs the revision while it rolls out, every
// connected proxy is served the last applied revision again (its own
// variant): the mesh runs one revision or the other, not both. The
// attempt fails at step "rollout" with the NACK (proxy, resource, reason,
// provenance). A proxy with nothing to fall back to (its class is not in
// the last applied revision, or none was applied yet) is held: it is sent
// nothing new until another version is served, and says so in its
// status. A NACK of an applied revision (a proxy that connects later)
// holds that proxy only.
//
// # ACK and NACK
//
// The server callbacks remember, per stream and type URL, the nonce and
// version of every response sent. A request whose response_nonce names a
// sent response is an ACK of its version, or a NACK when it carries
// error_detail; a SotW request whose version_info is the node's version,
// with nothing in flight, says the node holds that version of the type.
// A node is in sync with its version when every type it subscribes to
// has ACKed it (delta: every type whose resources changed; the others are
// not resent, so a late ACK of an earlier version whose resources of that
// type are the same counts).
//
// A version a node NACKed is never set for it again, and a revision with
// a version that any proxy rejected is not published again: the SotW
// cache answers a request whose version_info differs from the snapshot's
// at once, so keeping a rejected snapshot would resend it in a loop.
// Warnings about one proxy are logged once per Options.WarnInterval and
// summarized.
//
// A NACK keeps Envoy's message (bounded) and a one-line reason: the
// innermost "caused by" of Envoy's message without its dump of the
// resource, or — Envoy puts the dump first and cuts the message at 4 KB —
// the resource's own validation (ValidateAll) when the reason was cut.
// When the resource can be told (its name in the message, the only
// resource of the response, or the only one changed since the last ACKed
// version), the NACK has its provenance (service, file:line) from the
// class's provenance table (compiler.Class.Provenance): of the virtual
// host, route or filter chain that Envoy's message names, or else of the
// only one that changed since the version the node last accepted.
//
// # Delta and EDS clusters
//
// Envoy keeps an updated EDS cluster warming until it receives the
// cluster's load assignment again, but a delta server resends only what
// changed. A revision that changes a cluster (its TLS, circuit breaker,
// outlier detection...) would leave it warming, so for delta nodes the version of a load assignment also
// covers its cluster: a changed cluster brings its load assignment along
// (see deltaVersions). A side effect: a delta proxy that reconnects
// holding the served version (initial_resource_versions carry the
// resources' own hashes) is sent its load assignments again.
//
// A delta proxy that reconnects — to this server restarted, or to another
// replica — reopens each type with the versions it holds; the cache sends
// a type subscribed by name nothing when they are the snapshot's, so that
// type counts as in sync at once (deltaHolds), or the node would keep
// every later rollout waiting.
//
// A class published again as the same *compiler.Class (what
// compiler.WithEndpoints returns for the classes an endpoint change does
// not touch) keeps its checked snapshot: an endpoint update in a large
// mesh builds and checks only the snapshots of the classes it changes.
//
// # Proxyless gRPC
//
// go-control-plane's Consistent() does not count the route configurations
// that API listeners name over RDS; a class with API listeners is checked
// again with them counted (consistent.go).
package xds
