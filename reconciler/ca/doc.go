// Package ca is the mesh CA: an ECDSA P-256 root (generated on first start
// into a state directory, loaded from files, or given as PEM — the
// Kubernetes controller reads it from its Secret, see
// reconciler/kube/caroot — and made by GenerateRoot) that signs
// short-lived workload certificates carrying the
// workload's SPIFFE id as their only URI SAN, and the control plane's own
// serving certificates. Server exposes signing as the gRPC
// weft.ca.v1.CertificateService (reconciler/api/ca/v1), authenticated by an
// Authenticator; TokenAuthenticator is the local mode's (per-workload
// token files written by `weft up`), reconciler/kube/identity's
// TokenReviewAuthenticator the cluster's (projected service-account
// tokens checked with the TokenReview API). An Observer (Metrics: the
// Prometheus counters and gauges) is told every outcome.
//
// # API
//
//	c, err := ca.New(ca.Config{TrustDomain: "shop.example", StateDir: dir})
//	auth := ca.NewTokenAuthenticator()
//	tok, _ := ca.NewToken()
//	auth.Add(tok, cav1.Identity{TrustDomain: "shop.example", Namespace: "shop", ServiceAccount: "orders"})
//	ca.WriteTokenFile(tokenPath, tok)                      // mode 0600, for the agent
//	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
//	ca.NewServer(c, auth, logger).Register(gs)
//	tlsCfg, _ := c.ServerTLS(id, []string{"localhost"}, ips, tls.NoClientCert)            // the CA listener
//	xdsTLS, _ := c.ServerTLS(id, names, ips, tls.RequireAndVerifyClientCert)              // the xDS listener
//	c.TrustBundlePEM()                                    // for the agents' --trust-bundle file
//
// # Workload certificates
//
// SignCSR accepts a CSR only if its signature verifies, its key is ECDSA
// P-256 (or RSA >= 2048 bits), and its single SAN is exactly the URI of the
// identity the credential owns; a CSR for another identity is a
// ForbiddenError (gRPC PermissionDenied, naming both ids). The certificate
// has key usage digitalSignature, extended key usages serverAuth and
// clientAuth, a random 128-bit serial, NotBefore backdated by one minute,
// and the requested lifetime clamped to [MinTTL, MaxTTL] (default 24h,
// range 10m..7d) and to the root's own expiry.
//
// # Root on disk
//
// StateDir/root.pem (0644) and StateDir/root-key.pem (0600, PKCS#8), the
// directory 0700. A root key file (in StateDir or RootKeyFile) that group
// or others may read is refused, unless Config.AllowInsecureKeyPermissions
// (then a warning is logged). The key is written first and both files atomically, so
// a crash leaves either nothing or a usable root; a directory with only one
// of the two files is an error, never silently replaced.
//
// Trust-bundle rotation (add the new root, reissue, remove the old) is not
// implemented yet: see the TODO on TrustBundlePEM.
//
// # Imports
//
// Only reconciler/api/ca/v1 of weft (and client_golang for Metrics). The
// sidecar must not import this
// package (tests/layering_test.go): it talks to it over the API.
package ca
