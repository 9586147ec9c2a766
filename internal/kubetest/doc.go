// Package kubetest runs a real Kubernetes control plane for tests: etcd and
// kube-apiserver (the binaries `make tools` builds from tools/etcd and
// tools/kube into .tools/bin), started through controller-runtime's envtest
// on free 127.0.0.1 ports, with data and certificates in t.TempDir().
//
// What a test gets from [Start]:
//
//   - an admin *rest.Config (system:masters), a clientset, a controller-runtime
//     client, and the same credentials as a kubeconfig file;
//   - service-account tokens that work like a cluster's: the apiserver signs
//     them with an ECDSA P-256 key that kubetest generates, under the issuer
//     [Issuer], so TokenRequest and TokenReview behave as in a cluster;
//     [Env.SignServiceAccountToken] signs claims with that same key for the
//     cases TokenRequest refuses to produce (an expired token);
//   - [Env.InstallCRDs] / [Env.InstallCRDYAML]: CRDs created and Established;
//   - cleanup by t.Cleanup: the apiserver, then etcd, are stopped (SIGTERM,
//     SIGKILL after 20 s); the processes' output is printed if the test
//     failed.
//
// Binaries: [Assets] looks in $KUBEBUILDER_ASSETS, else in the tools folder
// of internal/tooltest ($WEFT_TOOLS_BIN or <repo>/.tools/bin). When they are
// missing the test is skipped with the command that builds them — except
// under CI=true, where it fails: CI runs `make tools` first, so a missing
// binary there is a broken build, never a reason to skip.
//
// Limits: no controllers run (no kube-controller-manager, no scheduler, no
// kubelet), so nothing creates ServiceAccounts, tokens Secrets or Pods on its
// own; envtest disables the ServiceAccount admission plugin for the same
// reason. A single-node cluster with a kubelet is a separate harness.
//
// This package is for tests only. It may import anything external; no
// weft package other than internal/ test helpers.
package kubetest
