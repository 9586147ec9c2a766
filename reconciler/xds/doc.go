// Package xds serves compiled meshes to proxies: a go-control-plane
// snapshot cache and xDS server (ADS, state-of-the-world and delta) on a
// gRPC server, the atomic swap of a new revision for every proxy class,
// ACK/NACK tracking per proxy and the status of all of it (Server.Status,
// and GET /status through Server.Handler, with the JSON types of package
// reconciler/api/status). The pipeline that produces revisions (load ->
// vet -> compile -> publish) is package reconciler/pipeline; the Server
// is its Publisher.
//
// It imports schema and compiler of weft (and reconciler/api/status),
// never policies, sidecar, cmd or the `weft up` composition.
//
// # Proxy classes and nodes
//
// A node names its proxy class, "<service>-<version>", in its metadata
// field "weft.class" or else in node.cluster. The snapshot cache is keyed
// by node id, so several proxies of one class coexist and each may be
// served its own variant of the class (Options.PerNode, e.g. local mode
// patching listener ports per instance). When a node's first request
// arrives the node is given the current snapshot of its class, before the
// server looks the request up in the cache. A node whose class the served
// revision does not have is served nothing and shows the error in its
// status; it gets its class as soon as a revision that has it is
// published. A node's snapshot is dropped from the cache when its last
// stream closes; its status entry stays, disconnected, for
// Options.ForgetAfter.
//
// # Publishing
//
// Publish builds and checks (Consistent) the snapshot of every class, and
// every node's variant, before it changes anything; only then are all
// nodes' snapshots set, under one lock that node registration also takes.
// A failing revision changes nothing served. A class missing from a new
// revision keeps its previous snapshot for the nodes already using it.
//
// # ACK and NACK
//
// The server callbacks remember, per stream and type URL, the nonce and
// version of every response sent. A request whose response_nonce names a
// sent response is an ACK of its version, or a NACK when it carries
// error_detail. A node is in sync with its version when every type it
// subscribes to has ACKed it (delta: every type whose resources changed;
// the others are not resent, so a late ACK of an earlier version whose
// resources of that type are the same counts). A NACK keeps Envoy's message and, when the
// resource can be told (its name in the message, the only resource of the
// response, or the only one changed since the last ACKed version), the
// provenance (service, file:line) of the resource, or of the virtual
// host, route or filter chain that Envoy's message names, from the
// class's provenance table (compiler.Class.Provenance).
//
// # Delta and EDS clusters
//
// Envoy keeps an updated EDS cluster warming until it receives the
// cluster's load assignment again, but a delta server resends only what
// changed. A revision that changes a cluster (its TLS, circuit breaker,
// outlier detection...) would leave it warming, so for delta nodes the version of a load assignment also
// covers its cluster: a changed cluster brings its load assignment along
// (see deltaVersions).
//
// # Proxyless gRPC
//
// go-control-plane's Consistent() does not count the route configurations
// that API listeners name over RDS; a class with API listeners is checked
// again with them counted (consistent.go).
package xds
