// Package clustertest runs a real single-node Kubernetes cluster for
// tests: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// kubelet and kube-proxy (the binaries `make tools` builds), containerd
// and runc (Debian), the CNI bridge plugin, weft's images imported into
// containerd — all inside a private network namespace, with its own work
// dir, sockets and cgroups, so that it disturbs nothing on the machine
// and several clusters (test packages, work trees) run side by side.
// The recipe and the machine facts behind it are in
// NOTES-kubernetes-node.md and docs/kubernetes-tests.md.
//
// How a test talks to it: the test process stays in the host's network
// namespace. A small proxy process inside the netns (this same binary,
// re-executed with a flag: netnsproxy.go) listens on a unix socket in the
// work dir, which any namespace can reach, and dials TCP addresses from
// inside the netns on request. [Cluster.Config] and
// [Cluster.Clientset] reach the apiserver (127.0.0.1:6443 in the netns)
// through it; [Cluster.DialContext] and [Cluster.HTTPClient] reach pods,
// ClusterIPs and node ports; [Cluster.Forward] and
// [Cluster.HostKubeconfig] give a host process a 127.0.0.1 port;
// [Cluster.Listen] puts a server of the test at the node address inside
// the netns, for pods and the apiserver;
// [Cluster.Command] and [Cluster.Kubectl] run a child process inside the
// netns with nsenter --net (never `ip netns exec`: it remounts /sys and
// hides the cgroup hierarchies). Why not setns from the test itself: a
// goroutine locked to a thread in another namespace is easy to get wrong
// and any thread the runtime starts from it inherits the namespace; and
// why not run `go test` under nsenter: the cluster would then have to
// exist before the test binary does, owned by a script instead of the
// test.
//
// The same proxy process serves the cluster DNS on the node address
// (dns.go): Services resolve by name in pods (no CoreDNS).
//
// Lifecycle: [Start] (one cluster per test, torn down in t.Cleanup) or
// [Shared] (one per test binary, from TestMain), both over [Up] and
// [Cluster.Down]. Up first removes whatever a killed earlier run of the
// same cluster left ([Teardown]: processes in the netns, in the cgroups
// k8s-<name> or naming the work dir; mounts under it; the netns; the
// cgroups). Components are started with Pdeathsig, so they die with the
// test binary even when a -timeout panic skips the cleanup; the pods'
// processes do not (they are children of containerd's shims) and wait
// for the next Up. Each phase is timed (Cluster.Phases).
//
// Requirements: root, the Debian packages containerd, runc,
// containernetworking-plugins, iptables and busybox-static, and
// `make tools`. Without them a test is skipped with the command that
// installs them, or fails under CI=true.
//
// This package is for tests and the cluster CLI (cmd/weft-cluster). It
// imports internal/images and internal/ociimage, and no other weft
// package.
package clustertest
