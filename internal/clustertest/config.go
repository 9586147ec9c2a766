package clustertest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The cluster's fixed addresses. Every cluster has its own network
// namespace, so two clusters (two test packages, two work trees) use the
// same ones without meeting.
const (
	// NodeName is the one node.
	NodeName = "node1"
	// NodeIP is the bridge cni0's address in the netns: the node's
	// InternalIP, the pods' gateway, where the apiserver, kubelet and the
	// cluster DNS listen for pods.
	NodeIP = "10.244.0.1"
	// PodCIDR holds the pods' addresses (CNI host-local IPAM).
	PodCIDR = "10.244.0.0/24"
	// ServiceCIDR holds the ClusterIPs; APIServiceIP is kubernetes.default's.
	ServiceCIDR  = "10.96.0.0/16"
	APIServiceIP = "10.96.0.1"
	// ClusterDomain is the DNS suffix of Services.
	ClusterDomain = "cluster.local"
	// APIServerPort is the apiserver's port in the netns (on every address).
	APIServerPort = 6443
)

// layout names the files of a cluster below its work dir W.
type layout struct{ w string }

func (l layout) path(parts ...string) string {
	return filepath.Join(append([]string{l.w}, parts...)...)
}

func (l layout) pki() string                     { return l.path("pki") }
func (l layout) cfg(name string) string          { return l.path("cfg", name) }
func (l layout) run(name string) string          { return l.path("run", name) }
func (l layout) logFile(name string) string      { return l.path("logs", name+".log") }
func (l layout) pidFile(name string) string      { return l.path("run", name+".pid") }
func (l layout) containerdSocket() string        { return l.run("containerd.sock") }
func (l layout) proxySocket() string             { return l.run("netns-proxy.sock") }
func (l layout) kubeconfig(client string) string { return l.cfg(client + ".kubeconfig") }

// writeConfigs writes every component's configuration. pauseRef is the
// sandbox image.
func (c *Cluster) writeConfigs(pauseRef string) error {
	l := c.layout
	for _, d := range []string{"cfg", "run", "logs", "cni/net.d", "cni/ipam", "containerd", "etcd", "kubelet", "manifests", "pod-logs", "kubelet-plugins"} {
		if err := os.MkdirAll(l.path(d), 0o755); err != nil {
			return err
		}
	}
	if err := writePKI(l.pki()); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	server := fmt.Sprintf("https://127.0.0.1:%d", APIServerPort)
	for client, id := range clientIdentities() {
		kc, err := kubeconfig(l.pki(), id.file, server)
		if err != nil {
			return err
		}
		if err := os.WriteFile(l.kubeconfig(client), kc, 0o600); err != nil {
			return err
		}
	}
	files := map[string]string{
		l.cfg("containerd.toml"):             containerdConfig(l, pauseRef),
		l.path("cni/net.d/10-weft.conflist"): cniConfig(l),
		l.cfg("kubelet.yaml"):                kubeletConfig(l, !c.opts.NoDNS),
		l.cfg("kube-proxy.yaml"):             kubeProxyConfig(l),
	}
	for name, content := range files {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// containerdConfig: containerd 1.6 (Debian 12) with its own root, state,
// sockets and runc state under W; restrict_oom_score_adj because this
// machine's root lacks CAP_SYS_RESOURCE (pod sandboxes fail otherwise:
// NOTES-kubernetes-node.md); pod netns files under its state; cgroupfs.
func containerdConfig(l layout, pauseRef string) string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = "%[3]s.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[6]q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[7]q
`, l.path("containerd", "root"), l.path("containerd", "state"), l.containerdSocket(),
		l.path("containerd", "opt"), pauseRef, l.path("cni", "net.d"), l.path("runc"))
}

// cniConfig: the bridge cni0 (created before containerd starts) as the
// pods' gateway, host-local addresses from PodCIDR, no masquerade (the
// netns has no way out), portmap for hostPort.
func cniConfig(l layout) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": %q,
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": %q, "gateway": %q}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, cniNetwork, PodCIDR, NodeIP, l.path("cni", "ipam"))
}

// kubeletConfig: cgroup v1 allowed (failCgroupV1: false), cgroupfs under
// its own root /k8s-<name> so teardown finds every pod, no oom_score_adj
// and no rlimits it cannot set here, no image garbage collection (the
// images are imported, not pulled), every file under W.
func kubeletConfig(l layout, dns bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /%s
containerRuntimeEndpoint: unix://%s
staticPodPath: %s
podLogsDir: %s
volumePluginDir: %s
address: 0.0.0.0
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
oomScoreAdj: 0
failSwapOn: false
resolvConf: ""
clusterDomain: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization: {mode: Webhook}
evictionHard: {memory.available: "100Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
syncFrequency: 10s
fileCheckFrequency: 5s
nodeStatusReportFrequency: 10s
`, cgroupName(filepath.Base(l.w)), l.containerdSocket(), l.path("manifests"), l.path("pod-logs"),
		l.path("kubelet-plugins"), ClusterDomain, filepath.Join(l.pki(), "ca.crt"))
	if dns {
		fmt.Fprintf(&b, "clusterDNS: [%q]\n", NodeIP)
	}
	return b.String()
}

// kubeProxyConfig: iptables mode, rules only in the netns; conntrack
// sizes left alone (they are global: nf_conntrack_max).
func kubeProxyConfig(l layout) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %s
mode: iptables
clusterCIDR: %s
hostnameOverride: %s
bindAddress: 0.0.0.0
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
oomScoreAdj: 0
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, l.kubeconfig("proxy"), PodCIDR, NodeName)
}

// cniNetwork names the pods' CNI network.
const cniNetwork = "weft-pods"

// cgroupName is the cgroup (in every hierarchy) that holds the cluster's
// pods: k8s-<name>.
func cgroupName(name string) string { return "k8s-" + name }
