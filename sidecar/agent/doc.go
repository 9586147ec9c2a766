// Package agent is the sidecar agent that runs beside each Envoy. It owns,
// for one workload:
//
//   - the private key: ECDSA P-256, generated in memory for every
//     certificate, never written to disk and never sent anywhere (Envoy
//     gets it over the pod-local SDS socket);
//   - the certificate: a CSR for Config.Identity sent to the mesh CA
//     (weft.ca.v1.CertificateService, reconciler/api/ca/v1) over TLS,
//     verifying the CA with the trust bundle file, authenticated by the
//     bearer token in Config.TokenFile; renewed at half its life less up
//     to RenewJitter of it (a 30s certificate renews after 12-15s); a
//     failed request is retried with backoff while the old certificate is
//     served;
//   - SDS: go-control-plane's server over a snapshot cache of two secrets,
//     "default" (certificate + key) and "ROOTCA" (trust bundle)
//     (compiler.CertSecretName, compiler.RootCASecretName), versioned by
//     the certificate's serial, on the unix socket Config.Socket (0600);
//   - the xDS proxy: on the same socket, Envoy's ADS streams (SotW
//     StreamAggregatedResources and DeltaAggregatedResources) are relayed
//     one-to-one to Config.XDSAddress over mTLS with the workload
//     certificate. If the control plane's stream breaks, Envoy's stream is
//     closed (Unavailable): Envoy keeps its config, reconnects and re-ACKs;
//     a new stream waits for the control plane to be reachable;
//   - Envoy's bootstrap (see Bootstrap: node id/cluster/metadata, ADS via
//     the "xds-grpc" cluster, SDS via "sds-grpc", both HTTP/2 on the
//     socket, admin on the unix socket Config.AdminSocket, mode 0600; the
//     stats tags of the proxy — mesh, namespace, service, version — and,
//     with a StatsAddress, the stats-only listener for Prometheus:
//     compiler.AddStats);
//   - Envoy itself: started as a child process (dies with the agent) with
//     Config.Concurrency worker threads (--concurrency, default 2),
//     restarted with exponential backoff when it exits, drained
//     (/drain_listeners?graceful for DrainTimeout) and sent SIGTERM on stop;
//   - Envoy's admin interface: only on a unix socket (never TCP: any local
//     process could otherwise POST /quitquitquit or read the config), in
//     the agent's own directory (0700 when the agent creates it); the
//     agent reads it for readiness and drains through it, and AdminGet
//     gives its pages (stats, config dump) to the agent's callers;
//   - readiness: ready only when Envoy's admin says /ready LIVE, /listeners
//     is not empty and /certs shows the workload's SPIFFE id; exposed as
//     Agent.Ready, Agent.Status and GET /ready on Config.HealthAddress
//     (200 or 503 with the reason; /healthz is liveness; /status is the
//     Status as JSON). When the control plane refuses the xDS stream
//     (PermissionDenied or Unauthenticated: in Kubernetes, a pod that
//     matches no version of its service, runs as another service account,
//     ...), the reason is Status.XDS.Refused, /ready says "the control
//     plane refused this proxy's xDS stream: <its reason>" while Envoy has
//     no configuration, and it is logged once per reason at error level;
//   - the app's probes that the injector rewrote (Config.AppProbes): GET
//     /app-health/<container>/<kind> runs the original HTTP, TCP or gRPC
//     probe against 127.0.0.1 and answers 200 or 503.
//
// # In a pod (`weft agent`)
//
// ForPod completes a Config from what the pod knows: the node id is
// "<pod>.<namespace>" (the downward API's POD_NAME and POD_NAMESPACE),
// there is no class (node.cluster is the pod's service, WEFT_SERVICE: the
// controller derives the class from the pod's labels), and the identity
// is the one the CA will find in the projected service-account token:
// its subject system:serviceaccount:<namespace>:<name> in the trust
// domain (given, or the trust bundle root's spiffe:// URI). The token is
// read without verification to form the CSR; the CA verifies it
// (TokenReview) and signs for the identity it finds, nothing else. A
// token for another namespace or another pod than the downward API says
// is an error at start. The environment the injector sets is named by
// the Env constants.
//
// # API
//
//	a, err := agent.New(agent.Config{Identity: id, Class: "orders-v1", CAAddress: ..., TrustBundleFile: ...,
//		TokenFile: ..., XDSAddress: ..., Socket: ..., BootstrapPath: ..., EnvoyBinary: ...})
//	go a.Run(ctx)     // until ctx ends (SIGTERM in `weft agent`); stops Envoy
//	<-a.Ready()
//
// Config documents every field; cmd/weft/agent.go has the `weft agent` flag
// of each, and ForPod completes a Config in a pod.
//
// # Imports
//
// Of weft: compiler (the SDS names, the stats config and listener, YAML
// marshaling) and reconciler/api/ca/v1 (the CA's API) only — never the
// CA's implementation or any other part of the control plane
// (tests/layering_test.go); gRPC's health client for gRPC app probes. The
// suites that run the agent, and `weft agent` as the injector configures
// it, with the real CA, an xDS server and Envoy live in tests/agent.
package agent
