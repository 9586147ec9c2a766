// Package webhookcert makes and rotates the serving certificate of the
// sidecar injector's admission webhook, which the controller serves, and
// keeps the webhook configuration's caBundle trusting it. No cert-manager
// is needed.
//
// # The Secret
//
// One Secret (default weft-webhook-tls, type kubernetes.io/tls, in the
// controller's namespace) holds, PEM:
//
//	tls.crt   the serving certificate (ECDSA P-256, serverAuth, SANs
//	          Options.Hosts) followed by the CA that signed it
//	tls.key   its key (PKCS#8)
//	ca.crt    the CAs the API server must trust: the current one first,
//	          then the previous one until it expires
//	ca.key    the current CA's key
//
// The CA is a self-signed ECDSA P-256 certificate used for nothing else
// (not the mesh CA: the webhook's trust has nothing to do with the
// workloads'), valid CAValidity (default 1 year); the serving certificate
// is valid CertValidity (default 90 days).
//
// # Rotation (Rotator: the leader only)
//
// Every Options.Interval (default 1 min) the leader reads the Secret and
// the MutatingWebhookConfiguration (uncached gets: the RBAC grants get on
// these names only) and:
//
//  1. creates the CA when there is none (or it cannot be read), and a new
//     CA when less than a third of the current one's life is left; the
//     old CA stays in ca.crt until it expires;
//  2. writes ca.crt and patches it into every webhook's
//     clientConfig.caBundle — before any certificate signed by a new CA is
//     served, so the API server trusts it first (a Secret that did not
//     exist is created whole, with its first serving certificate: the API
//     server requires tls.crt and tls.key, and no caBundle trusts anything
//     before the patch anyway);
//  3. issues a new serving certificate when there is none, when less than
//     a third of its life is left, when it was not signed by the current
//     CA, or when its hosts changed.
//
// A caBundle that someone else changed (a manifest applied again) is
// repaired at the next interval. Writes use the Secret's resourceVersion:
// two leaders cannot interleave; a conflict is retried at the next
// interval.
//
// # Serving (Loader: every replica)
//
// Every replica reads the Secret every Options.ReloadInterval (default
// 10 s) and serves its tls.crt (GetCertificate, for the webhook server's
// tls.Config). Until it has one, GetCertificate fails and the readiness
// check (Checker) reports why, so the Service sends it no requests.
//
// # Imports
//
// Nothing of weft; controller-runtime (client, manager, healthz) and the
// Kubernetes API types.
package webhookcert
