// Package compiler turns a validated mesh model (package schema/mesh) and
// the endpoints of its services into the Envoy xDS resources of every
// proxy class. It is pure: no I/O, no clock, no randomness; the same input
// gives byte-identical output. It imports schema/mesh, schema (for its
// positioned error type) and internal/re2 of weft (never policies,
// reconciler, sidecar or cmd) plus go-control-plane, protobuf and, for the
// NetworkPolicies, the Kubernetes API types (k8s.io/api,
// k8s.io/apimachinery).
//
// # API
//
//	res, err := compiler.Compile(model, endpoints, compiler.Options{Revision: rev})
//	for _, c := range res.Classes {          // sorted by name
//		snap, err := c.Snapshot()            // cache.Snapshot, Consistent() checked
//		boot, err := compiler.Bootstrap(c, compiler.BootstrapOptions{})  // all-static bootstrap
//		y, err := c.YAML()                   // deterministic YAML of the resources
//	}
//	nps, err := compiler.NetworkPolicies(model, compiler.NetworkPolicyOptions{})  // L3 firewall
//	y, err := compiler.NetworkPoliciesYAML(nps)
//	next, err := compiler.CompileFrom(res, model2, endpoints, opts) // reuses what did not change
//	var inc compiler.Incremental             // the same, revision after revision
//	err = compiler.WriteTree(res, compiler.TreeOptions{}, write)     // weft build's files, streamed
//
// Endpoints nil means the static endpoints written in the model
// (Version.Endpoints, "host:port"). An Address with port 0 means "this
// host, on the port of the cluster's service port" (a pod IP).
//
// WithEndpoints(res, eps) is the cheap path of an endpoint change: it
// rebuilds only the load assignments of a compiled result (and the
// snapshot versions, resuming a hash state Compile kept), giving exactly
// what Compile would give with eps, and shares everything else; a class
// whose load assignments do not change is returned as is (a changed class
// keeps no inputs, so a later CompileFrom compiles it again). A
// cluster's load assignment is one message, shared by every class that
// has the cluster.
// Services are compiled concurrently (one worker per core); the result
// does not depend on it.
//
// # Incremental compilation
//
// A class records what it was built from: the services it read in full
// (its dependencies, their mirror targets; every read goes through one
// method that records it), the services of which it read only the identity
// (the callers its authorization names or admits by default), and the
// positions it looked up for provenance. CompileFrom(prev, m, ...) reuses
// a service's classes from prev — only their snapshot version's revision
// changes — when the fingerprint of those inputs is the same: a sha256
// over a reflective, canonical encoding of the resolved services (a field
// added to the model is covered without being listed), their identities,
// their endpoints, the default callers, the trust domain and the options;
// and the positions answer the same lookups. Its result is exactly
// Compile's (tested for every golden case under every kind of edit); a
// change to one service recompiles it and the services whose
// configuration depends on it. Result.Stats counts both; Class.Inputs
// lists what a class was built from; Class.Hash is its content hash.
//
// The outbound cluster and load assignment of a dependency depend on the
// dependency alone: the classes of one compilation share those messages
// (built once). Resources are immutable for consumers (proto.Clone before
// patching one).
//
// # Files
//
// TreeFiles/WriteTree lay a Result out as weft build writes it:
// "<class>/listeners.yaml", "routes.yaml", "clusters.yaml",
// "endpoints.yaml", "provenance.yaml", "summary.txt", and with
// TreeOptions.StaticBootstrap each class's complete static
// "bootstrap.yaml". The YAML is written directly from the messages
// (yamlfast.go) with exactly the bytes of the reference path (protojson,
// then sigs.k8s.io/yaml), which still writes what the direct writer cannot
// promise (Struct values, strings go-yaml would fold, non-ASCII); shared
// messages are serialized once.
//
// # Proxy classes and scoping
//
// A proxy class is one (service, version), named "<service>-<version>".
// All proxies of a class get the same resources. A class receives
// outbound configuration only for the services in its service's calls,
// plus the clusters of mirror targets named by those services' routes;
// never the rest of the mesh.
//
// # Naming scheme
//
//	listener  inbound                               0.0.0.0:InboundPort (15006): original_dst + tls_inspector,
//	                                                one filter chain per service port (destination_port)
//	                                                and transport ("inbound|<port>|tls", "inbound|<port>|plaintext",
//	                                                or "inbound|<port>" when mTLS is disabled)
//	listener  outbound                              127.0.0.1:OutboundPort (15001): HTTP, routes by Host/:authority
//	                                                (the app's HTTP_PROXY, or the iptables redirect target)
//	listener  outbound|<port>|<name>.<namespace>    127.0.0.1:<port>: tcp_proxy to a TCP dependency port
//	route     outbound|http                         one virtual host "<name>.<namespace>:<port>" per HTTP/gRPC
//	                                                port of each dependency
//	route     inbound|<port>                        inbound HTTP/gRPC port -> the app
//	cluster   outbound|<port>|<version>|<name>.<namespace>   one version of a dependency port (EDS)
//	cluster   outbound|<port>||<name>.<namespace>            all versions of it (EDS; routes without `to`,
//	                                                         TCP ports)
//	cluster   inbound|<port>                        STATIC 127.0.0.1:<port>, the app
//	endpoints (ClusterLoadAssignment) named as their EDS cluster
//	cluster   tracing|otlp                          the OpenTelemetry collector (OTLP/gRPC), when the service traces
//	bootstrap cluster sds-grpc                      the agent's SDS server on a unix socket (HTTP/2)
//	bootstrap listener stats, cluster admin         GET /stats/prometheus on 15090, proxied to the admin (StatsListener)
//	SDS secrets "default" (workload certificate) and "ROOTCA" (trust bundle)
//
// A virtual host's domains are name, name.namespace, name.namespace.svc and
// name.namespace.svc.cluster.local, each with ":<port>"; one port also
// has them without a port (domains must be unique in a route
// configuration): port 80, else the first HTTP port, else the first gRPC
// port. Stat prefixes are the resource names
// with '|' and ':' replaced by '_'; a cluster's alt_stat_name is its name
// with '|', ':' and '.' replaced by '_' ("outbound_9080_v2_reviews_shop").
//
// # Observability (docs/observability.md)
//
// Every HTTP connection manager, inbound and outbound, has the stats
// access logger that counts each request (weft.requests_total) and its
// duration (weft.request_duration_milliseconds) with the labels reporter,
// mesh, namespace, source_*, destination_*, response_code(_class) and
// grpc_status (telemetry.go), unless the service's metrics are off; the
// JSON access log and the OpenTelemetry tracer (service_name = the
// service) when configured (mesh.Model.TelemetryOf). Outbound clusters
// carry "weft" filter metadata (service, namespace, port, version) and the
// endpoints of all-versions clusters their version. The bootstrap's
// stats_config (StatsConfig) tags Envoy's own stats with the proxy's
// mesh, namespace, service and version and the destination parsed from
// cluster stat names; a proxy's version is its node metadata weft.version.
//
// # Outbound
//
// A virtual host holds the service's routes in precedence order (Envoy
// takes the first route that matches), then an implicit catch-all
// "default" to all versions unless the last route already matches every
// request. Routes are keyed by name in CUE; their order is never the order
// they were written in but mesh.ComparePrecedence's (applied by
// mesh.Resolve, so a model built by hand gets it too), modelled on the
// Gateway API's HTTPRoute rule precedence:
//
//  1. higher priority first;
//  2. an exact path, then a regex path, then a prefix path (no path is the
//     prefix "/"), longer prefixes first;
//  3. a route with methods before one without;
//  4. more header matches first;
//  5. by name.
//
// Each Envoy route is named after its route (routes of a model built by
// hand without names are "route-<index>"). A route sends to weighted version clusters (zero weights left
// out; a single version is a plain cluster) or, without `to`, to the
// all-versions cluster; it carries the timeout and retry policy (route,
// else service, else mesh default), its header edits (service-level edits
// are on the virtual host; an edge service's are applied by its own
// inbound side instead), its fault (per-route config of the fault
// filter, which is always in the outbound HTTP connection manager so that
// adding a fault never changes the listener), its rewrite.host
// (host_rewrite_literal) and its mirror (request_mirror_policies; the
// target — another service, or a version of the route's own service — is
// reached on the port with the same number, else the first of the same
// protocol, else its first HTTP/gRPC port; the copy keeps the primary's
// Host (disable_shadow_host_suffix_append) and gets MirrorHeader
// "x-weft-mirrored: true"). Every HTTP/gRPC port of a dependency gets all
// its version clusters, used or not, so that editing routes never changes
// CDS. Clusters use EDS over ADS, mTLS to the peer (its SPIFFE id is the
// only accepted SAN; SNI is the cluster name) unless the target's mtls is
// "disable", its circuit breaker (thresholds; maxRequestsPerConnection as
// the HttpProtocolOptions' common_http_protocol_options, with HTTP/1.1 or,
// for gRPC, HTTP/2) and its outlier detection, whose
// max_ejection_percent is always written (mesh.DefaultMaxEjectionPercent,
// 50, when unset: Envoy's own 10% ejects nothing below 10 endpoints);
// gRPC clusters speak HTTP/2. A cluster whose endpoints are DNS names
// (static endpoints of VMs) is STRICT_DNS with its endpoints inline, since
// Envoy does not resolve names received over EDS; "localhost" is written
// 127.0.0.1.
//
// # Inbound
//
// Per service port: HTTP and gRPC ports run two RBAC filters
// ("envoy.filters.http.rbac.deny", then "envoy.filters.http.rbac.allow"),
// the local rate limit (when the service or any route has one) and the
// router to "inbound|<port>"; TCP ports run network RBAC and tcp_proxy.
// The mTLS mode picks the chains: strict, a TLS chain that requires a
// client certificate from the mesh CA (SDS "default" and "ROOTCA");
// permissive, that chain plus a plaintext one; disable, plaintext only. An
// edge service takes traffic from outside the mesh, so its "strict" is
// compiled as "permissive".
//
// Authorization: rules as in authz (from = SPIFFE ids, "*" = any mesh
// identity; methods via :method; paths "/a" exact, "/a/*" prefix "/a/",
// "*" any). Without authz.allow the allowed callers are the services that
// list this one in calls, plus those whose dependencies mirror to it. No
// caller can be identified on a plaintext chain, so there that default
// admits anyone who did not authenticate (principal not_id
// authenticated; explicit rules apply as written). Deny rules match paths
// and methods in any case, allow rules in the case written. On a port
// whose rules name paths, a path holding ";", "%3B" or "%25" is denied
// (policy "ambiguous-path": path parameters and double encoding, which
// backends may read as another path). On TCP ports allow rules with
// methods or paths are left out and deny rules lose them.
//
// An HTTP port's rules are the same for all its chains and live in the
// typed_per_filter_config (RBACPerRoute, keyed by the two filter names) of
// the virtual host of "inbound|<port>": an authz change reaches Envoy over
// RDS, applies to the next request also on open connections, and changes
// no listener. The filters' own configurations never change (the allow
// filter's admits nobody: a request that no route matches is refused).
// TCP rules are in the filter chain: network RBAC decides once per
// connection, and a change drains the chain. Stats: the requests refused
// by deny rules are http.<chain>.rbac.deny.denied, those no allow rule
// admitted http.<chain>.rbac.allow.denied (<chain> as inbound_9080_tls).
//
// Paths: every HTTP connection manager, inbound and outbound, normalizes
// the path (normalize_path, merge_slashes) before filters and routes see
// it and forwards the normalized path, answers a path holding %2F or %5C
// with a 400 (path_with_escaped_slashes_action REJECT_REQUEST) and adds
// no server header (server_header_transformation PASS_THROUGH). The
// plaintext chain of an edge service, outside traffic, instead redirects
// such a path to its unescaped form (UNESCAPE_AND_REDIRECT; HTTP ports,
// not gRPC), drops request headers whose names hold "_"
// (headers_with_underscores_action DROP_HEADER) and sends no x-envoy-*
// response headers (router suppress_envoy_headers).
//
// Header rules: an edge service's own header rules (its headers, its
// routes' headers, the security preset) are applied by its inbound route
// configuration, for outside traffic and mesh callers alike; its callers'
// outbound virtual hosts leave them out, so that each rule (an "add"
// included) is applied once. Other services' rules are applied by their
// callers (see Outbound).
//
// Rate limits: the local_ratelimit filter is in the chain when the service
// or any of its routes has a limit; it has no bucket of its own. The
// buckets (max_tokens=burst, tokens_per_fill=requests every per, or
// requestsPerSecond every second; enforced for 100%; Envoy refills them
// continuously at that rate) live in "inbound|<port>": the service's on
// the virtual host (so a permissive port's two chains share one bucket,
// and a new limit changes no listener), a route's on a route with the same
// match (the service's routes are repeated, in the same precedence order,
// up to the last rate-limited one, or for an edge service the last one with header rules), where it
// replaces the service's. Inbound routes set no timeout: the caller's
// route enforces it.
//
// # Acceptance gate
//
// Compile never returns configuration Envoy 1.40 would reject: when it
// finds such a value, it returns no result and a schema.Errors listing
// every problem, like the loader's (file:line:column of the value, its CUE
// path, what is wrong, the fix). weft vet, weft build, weft up and the
// controller all compile, so all refuse the same revisions. Two layers:
//
// Model checks, with the exact position of each value:
//
//	regexes (path, header match, the :method regex of several methods)
//	    parse as RE2 and compile to an RE2 program of at most
//	    RegexProgramSizeLimit (100) instructions, computed as Envoy's RE2
//	    computes it (internal/re2; Envoy 1.40 compiles regexes as
//	    Latin-1); an empty regex is refused
//	header edits (set, add, remove; service and route, request and
//	    response) never name Host, :authority or another :pseudo-header;
//	    names are RFC 9110 tokens (Envoy would accept a space, which no
//	    HTTP peer does); values hold no NUL, CR or LF; names and values
//	    are at most MaxHeaderBytes (16384) bytes as emitted; one list
//	    names a header once, ignoring case (else the output would depend
//	    on map order)
//	header matches have a non-empty name and no empty prefix
//	durations are below 9223372036s (Envoy's "Duration out-of-range");
//	    fault delays, outlier intervals and ejection times are above 0
//	token buckets fit uint32
//
// The backstop, on every emitted resource: go-control-plane's generated
// ValidateAll (the protoc-gen-validate rules Envoy enforces) on each
// resource and on each message the compiler packed into an Any, and the
// regex and header rules above on every RegexMatcher and header mutation
// found by a walk of the fields that can hold one. A finding there is a
// gap in the model checks; it is reported at the definition that produced
// the part (Class.Provenance) with the resource and proto path.
//
// Header values are literal text: Envoy reads %NAME% in a header value as
// a substitution (and rejects "100%"), so every % is emitted as %%.
//
// Values the loader already refuses: bytes that are not UTF-8 and U+FFFD
// (package schema), durations and counts that do not fit the model.
// testdata/parity holds one small mesh per limit, each run through the
// real `envoy --mode validate` with and without the gate (TestParity).
//
// # NetworkPolicies
//
// NetworkPolicies compiles the same calls and authz into one
// networking.k8s.io/v1 NetworkPolicy per service, "weft-<service>" in its
// namespace, labelled app.kubernetes.io/managed-by=weft and
// mesh.weft.dev/mesh=<mesh> (PruneSelector). It selects the service's pods
// by the pod label mesh.weft.dev/service=<service> and admits, on each
// service port, the pods of the services whose identities the port's
// RBAC can admit (TestNetworkPoliciesMatchRBAC holds the two together),
// every source for an edge service, and the control plane on the agent's
// port 15021. The ports are the service ports, never 15006: NetworkPolicy
// is enforced before the pod's own iptables redirect (the function's doc
// has the reasoning).
//
// # Provenance and determinism
//
// Class.Provenance records, beside the resources, where every Listener,
// RouteConfiguration, Cluster and load assignment, every inbound
// FilterChain and every VirtualHost and Route came from: the service and
// the file:line of its definition (of the route,
// mesh.services.<svc>.routes.<name>, for routes), keyed by
// resource and part ("virtual_hosts[1].routes[0]", the path Envoy's
// validation messages use). Resources carry no provenance themselves: a
// comment that moves line numbers then changes no byte a proxy receives
// (a changed listener would be drained and replaced). Everything is sorted; maps are only iterated
// through sorted keys; Any values are encoded deterministically. A class's
// snapshot version is "<revision>/<12 hex digits of sha256>" over all its
// resources in type and name order.
package compiler
