// Package inject adds weft's sidecar to a pod: the one function behind
// the admission webhook (sidecar/webhook) and `weft inject -f` (Stream),
// so the two give the same pod.
//
// # Which pods
//
// The webhook is called for pods created in namespaces labelled
// weft.dev/inject=enabled (environments/deploy/webhook.yaml). Pod and
// Template leave a pod unchanged (Outcome.Skipped says why) when it is
// annotated weft.dev/inject: disabled, uses hostNetwork (its network
// namespace is the node's), is in kube-system, kube-public,
// kube-node-lease or the controller's own namespace, or has no mesh
// service name (then with a warning).
//
// # What it adds
//
//   - the label mesh.weft.dev/service=<service> (the NetworkPolicies
//     select on it; the controller matches the pod to the service's
//     versions by it): the existing label itself, else the annotation
//     weft.dev/service, else the label app.kubernetes.io/name, else the
//     label app (ServiceName);
//   - the annotation weft.dev/injected-version=<weft version>;
//   - the init container weft-init, first: `weft netinit` with the
//     redirect's exclusions (sidecar/netinit; the agent's health port 15021
//     and Envoy's stats port 15090 always, plus the annotations
//     weft.dev/exclude-inbound-ports, -outbound-ports, -inbound-ip-ranges,
//     -outbound-ip-ranges), as root with NET_ADMIN and NET_RAW only, a
//     read-only root filesystem and an emptyDir on /run (iptables' lock);
//   - the native sidecar weft-proxy, second (an init container with
//     restartPolicy Always: it starts before the app's init containers and
//     containers, and the kubelet stops it after them): `weft agent`,
//     which runs Envoy as its child in the same container — one lifecycle,
//     one probe, Envoy's admin on a unix socket only the agent reads. Its
//     startup probe (GET /ready on 15021, every second, up to 10 minutes)
//     holds the app back until Envoy has its listeners and the workload
//     certificate; readiness and liveness probes on /ready and /healthz;
//     uid/gid 1337 (the redirect lets its traffic through), runAsNonRoot,
//     a read-only root filesystem, no capabilities, no privilege
//     escalation, seccomp RuntimeDefault; requests 100m CPU and 128 MiB,
//     a 1 GiB memory limit and no CPU limit (DefaultProxyResources);
//     the environment from the downward API (POD_NAME, POD_NAMESPACE,
//     WEFT_SERVICE), the mesh CA's roots (WEFT_TRUST_BUNDLE) and the
//     app probes it rewrote (WEFT_APP_PROBES);
//   - volumes: weft-run (emptyDir in memory: the agent's sockets and
//     Envoy's bootstrap), weft-token (a projected service-account token,
//     audience "weft", 3600 s, mounted read-only in the proxy only: the
//     CA authenticates the agent's CSRs with it), weft-podinfo (downward
//     API: the pod's labels, shown by the agent) and weft-xtables;
//   - serviceAccountName "default" when the pod names none (the API
//     server's own default, which the projected token needs).
//
// The app containers' HTTP, TCP and gRPC probes are rewritten to GET
// /app-health/<container>/<livez|readyz|startupz> on the agent, which
// runs them against the app on 127.0.0.1 (kubelet's probes come from the
// node in plaintext; redirected, they would reach the proxy's inbound
// listener, which admits only the mesh). The annotation
// weft.dev/rewrite-app-probes: "false" keeps them as written.
//
// # Idempotent
//
// Everything of the names above is removed before it is added again
// (the probes an earlier injection rewrote keep their originals), so
// injecting an injected pod, with the same Options, changes nothing, and
// with other Options (a new image, a new trust bundle) replaces the
// sidecar.
//
// # Imports
//
// compiler (the ports and the service label), sidecar/agent (its
// environment and probe contract) and sidecar/netinit (the redirect's
// flags) of weft; the Kubernetes API types and sigs.k8s.io/yaml.
package inject
