// Package caroot keeps the mesh CA's root in a Kubernetes Secret (default
// weft-ca-root, type kubernetes.io/tls: tls.crt and tls.key, PEM, in the
// controller's namespace) so that every controller replica signs from the
// same root.
//
// Load reads the Secret with uncached gets (the RBAC grants get on that
// name only: no list, no watch). When it is absent, the leader — this
// replica once its manager is elected — generates a root
// (ca.GenerateRoot) and creates the Secret; create is race-safe: if
// another replica created it first (AlreadyExists), its root is read and
// used. A replica that is not the leader waits for the Secret, reading
// it again every poll interval, until it appears or the replica is
// elected itself. An existing Secret is never replaced: one that lacks a
// key, or holds a root of another trust domain, is an error that says
// how to recover.
//
// # Imports
//
// reconciler/ca of weft; controller-runtime's client and the Kubernetes
// API types.
package caroot
