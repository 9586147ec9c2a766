package clustertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/weft-dev/weft/internal/tooltest"
)

// requirement is one thing a cluster needs on the machine and how to get
// it.
type requirement struct {
	name string
	// found reports whether it is there.
	found func() bool
	// install is the fix.
	install string
}

const aptPackages = "containerd runc containernetworking-plugins iptables busybox-static"

func requirements(toolsBin string) []requirement {
	onPath := func(cmd string) func() bool {
		return func() bool {
			if _, err := exec.LookPath(cmd); err == nil {
				return true
			}
			for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
				if isExecutable(filepath.Join(d, cmd)) {
					return true
				}
			}
			return false
		}
	}
	file := func(p string) func() bool { return func() bool { return isExecutable(p) } }
	apt := "apt-get install " + aptPackages + " (.ci/run installs them)"
	reqs := []requirement{
		{"root", func() bool { return os.Geteuid() == 0 }, "run as root (network namespaces, mounts, cgroups)"},
		{"nsenter", onPath("nsenter"), "apt-get install util-linux"},
		{"ip", onPath("ip"), "apt-get install iproute2"},
		{"containerd", onPath("containerd"), apt},
		{"containerd-shim-runc-v2", onPath("containerd-shim-runc-v2"), apt},
		{"ctr", onPath("ctr"), apt},
		{"runc", onPath("runc"), apt},
		{"iptables", onPath("iptables"), apt},
	}
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		reqs = append(reqs, requirement{"/usr/lib/cni/" + p, file("/usr/lib/cni/" + p), apt})
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"} {
		reqs = append(reqs, requirement{b, file(filepath.Join(toolsBin, b)), "make tools (builds Kubernetes and etcd into " + toolsBin + ")"})
	}
	return reqs
}

// Missing lists what the machine lacks for a cluster, each with its fix
// ("containerd: apt-get install …"); empty when everything is there.
func Missing(bin string) []string {
	if bin == "" {
		bin = toolsBin()
	}
	var out []string
	for _, r := range requirements(bin) {
		if !r.found() {
			out = append(out, r.name+": "+r.install)
		}
	}
	return out
}

// MissingError is Up's error when the machine lacks something.
type MissingError struct{ Missing []string }

func (e *MissingError) Error() string {
	return "clustertest: this machine cannot run the test cluster; missing:\n  " + strings.Join(e.Missing, "\n  ")
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// toolsBin is .tools/bin, or $WEFT_TOOLS_BIN.
func toolsBin() string { return tooltest.BinDir() }

// describeMissing is for skip/fail messages.
func describeMissing(missing []string) string {
	return fmt.Sprintf("the test cluster needs:\n  %s", strings.Join(missing, "\n  "))
}
