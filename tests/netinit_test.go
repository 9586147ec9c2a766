package tests

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weft-dev/weft/sidecar/inject"
)

var updateNetinit = flag.Bool("update-netinit", false, "rewrite testdata/netinit/*.golden")

// netns is a network namespace made for one test (ip netns add), removed
// when it ends.
type netns struct{ name, path string }

func newNetns(t testing.TB, role string) netns {
	t.Helper()
	n := netns{name: fmt.Sprintf("weft-%s-%d-%d", role, os.Getpid(), time.Now().UnixNano()%1e6)}
	n.path = "/run/netns/" + n.name
	sh(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n.name).Run() })
	sh(t, "ip", "-n", n.name, "link", "set", "lo", "up")
	return n
}

// exec runs a command in the namespace (nsenter: unlike ip netns exec, it
// leaves /sys alone).
func (n netns) exec(t testing.TB, args ...string) string {
	t.Helper()
	return sh(t, append([]string{"nsenter", "--net=" + n.path}, args...)...)
}

func sh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// in runs fn on a thread inside the namespace: sockets fn creates belong
// to it.
func (n netns) in(t testing.TB, fn func()) {
	t.Helper()
	if err := n.do(func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// do is in for callers without a testing.T (an http.Transport's dialer).
func (n netns) do(fn func() error) error {
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	target, err := os.Open(n.path)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", n.name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and dies with this goroutine.
		return fmt.Errorf("setns back: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// listen opens a TCP listener inside the namespace.
func (n netns) listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	n.in(t, func() {
		var err error
		if ln, err = net.Listen("tcp4", addr); err != nil {
			t.Fatalf("listen %s in %s: %v", addr, n.name, err)
		}
	})
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dialContext dials from inside the namespace (for an http.Transport).
func (n netns) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// podAndPeer are two namespaces joined by a veth pair: "pod" 10.77.0.2,
// "peer" 10.77.0.1.
func podAndPeer(t testing.TB) (pod, peer netns) {
	t.Helper()
	pod, peer = newNetns(t, "pod"), newNetns(t, "peer")
	sh(t, "ip", "-n", pod.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", peer.name)
	sh(t, "ip", "-n", pod.name, "addr", "add", "10.77.0.2/24", "dev", "eth0")
	sh(t, "ip", "-n", peer.name, "addr", "add", "10.77.0.1/24", "dev", "eth0")
	sh(t, "ip", "-n", pod.name, "link", "set", "eth0", "up")
	sh(t, "ip", "-n", peer.name, "link", "set", "eth0", "up")
	return pod, peer
}

// hit is one connection a test listener accepted.
type hit struct {
	listener, origDst, said string
}

// listeners accept connections, record who got what, and answer
// "hello from <name>".
type listeners struct {
	mu   sync.Mutex
	hits []hit
}

func (l *listeners) listen(t *testing.T, n netns, name, addr string) {
	t.Helper()
	ln := n.listen(t, addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				line, _ := bufio.NewReader(c).ReadString('\n')
				l.mu.Lock()
				l.hits = append(l.hits, hit{listener: name, origDst: originalDst(c), said: strings.TrimSpace(line)})
				l.mu.Unlock()
				fmt.Fprintf(c, "hello from %s\n", name)
			}()
		}
	}()
}

// originalDst is the destination a redirected connection was made to
// (SO_ORIGINAL_DST), "" for one that was not redirected.
func originalDst(c net.Conn) string {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return ""
	}
	var out string
	_ = raw.Control(func(fd uintptr) {
		m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			return
		}
		a := m.Multiaddr
		dst := fmt.Sprintf("%d.%d.%d.%d:%d", a[4], a[5], a[6], a[7], binary.BigEndian.Uint16(a[2:4]))
		if local := c.LocalAddr().String(); dst != local {
			out = dst
		}
	})
	return out
}

// dial connects from the namespace as root, says msg and returns the
// answer.
func dial(t *testing.T, n netns, addr, msg string) string {
	t.Helper()
	var c net.Conn
	n.in(t, func() {
		var err error
		if c, err = net.DialTimeout("tcp4", addr, 5*time.Second); err != nil {
			t.Fatalf("dial %s from %s: %v", addr, n.name, err)
		}
	})
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(c, msg)
	answer, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("dial %s from %s: reading the answer: %v", addr, n.name, err)
	}
	return strings.TrimSpace(answer)
}

// dialAs connects as uid (and gid) through bash's /dev/tcp.
func dialAs(t *testing.T, n netns, uid int, host string, port int, msg string) string {
	t.Helper()
	script := fmt.Sprintf("exec 3<>/dev/tcp/%s/%d && echo %s >&3 && head -n1 <&3", host, port, msg)
	out := n.exec(t, "--setuid", fmt.Sprint(uid), "--setgid", fmt.Sprint(uid), "bash", "-c", script)
	return strings.TrimSpace(out)
}

func (l *listeners) find(msg string) (hit, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hits {
		if h.said == msg {
			return h, true
		}
	}
	return hit{}, false
}

// saveNat is the nat table as the backend's iptables-save prints it,
// without its comment lines.
func saveNat(t *testing.T, n netns, backend string) string {
	t.Helper()
	var keep []string
	for _, l := range strings.Split(n.exec(t, "iptables-"+backend+"-save", "-t", "nat"), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n") + "\n"
}

func needNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: it creates network namespaces and iptables rules in them")
	}
	for _, tool := range []string{"ip", "nsenter", "bash", "iptables-nft-save", "iptables-legacy-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian: iproute2, util-linux, iptables)", tool)
		}
	}
}

// netinitArgs are the arguments the injector gives weft-init for a pod
// with these annotations.
func netinitArgs(t *testing.T, annotations map[string]string) []string {
	t.Helper()
	bundle, err := os.ReadFile(filepath.Join("..", "sidecar", "inject", "testdata", "trust-bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", Labels: map[string]string{"app": "web"}, Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "web"}}},
	}
	if _, err := inject.Pod(pod, "shop", inject.Options{TrustBundle: bundle}); err != nil {
		t.Fatal(err)
	}
	c := pod.Spec.InitContainers[0]
	if c.Name != inject.InitContainerName || len(c.Command) != 2 || c.Command[1] != "netinit" {
		t.Fatalf("first init container %s runs %q", c.Name, c.Command)
	}
	return append([]string{"netinit"}, c.Args...)
}

// TestNetinitRedirects runs `weft netinit` with the arguments the injector
// gives it in a network namespace made for the test ("pod", joined by a
// veth pair to "peer"): iptables-save lists exactly the golden rules
// (nf_tables, detected), a second run changes nothing, and real
// connections go where the rules say — outbound TCP to the outbound
// listener (15001) with its original destination intact, the proxy's uid
// 1337 and an excluded port straight to the peer, inbound TCP to the
// inbound listener (15006), the agent's health port and loopback
// untouched.
func TestNetinitRedirects(t *testing.T) {
	needNetns(t)
	pod, peer := podAndPeer(t)

	args := netinitArgs(t, map[string]string{
		inject.ExcludeOutboundPortsAnnotation:    "5432",
		inject.ExcludeOutboundIPRangesAnnotation: "169.254.169.254",
		inject.ExcludeInboundPortsAnnotation:     "9000",
	})
	bin := weft(t)
	started := time.Now()
	out := pod.exec(t, append([]string{bin}, args...)...)
	t.Logf("weft netinit ran in %s", time.Since(started).Round(time.Millisecond))
	if !strings.Contains(out, "rules applied (iptables nft)") {
		t.Errorf("weft netinit said:\n%s\nwant the rules applied with the detected nft backend", out)
	}
	table := saveNat(t, pod, "nft")
	golden := filepath.Join("testdata", "netinit", "nat.golden")
	if *updateNetinit {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(table), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./tests -run TestNetinit -update-netinit)", err)
	}
	if d := cmp.Diff(string(want), table); d != "" {
		t.Errorf("iptables-nft-save -t nat differs from %s (-want +got):\n%s", golden, d)
	}
	if again := pod.exec(t, append([]string{weft(t)}, args...)...); !strings.Contains(again, "already in place") {
		t.Errorf("second run said:\n%s", again)
	}
	if after := saveNat(t, pod, "nft"); after != table {
		t.Errorf("a second run changed the table:\n%s", after)
	}
	if legacy := saveNat(t, pod, "legacy"); strings.Contains(legacy, "WEFT_") {
		t.Errorf("rules written with the legacy backend too:\n%s", legacy)
	}

	var l listeners
	l.listen(t, pod, "inbound", "0.0.0.0:15006")
	l.listen(t, pod, "outbound", "127.0.0.1:15001")
	l.listen(t, pod, "health", "0.0.0.0:15021")
	l.listen(t, pod, "app", "0.0.0.0:8080")
	l.listen(t, peer, "peer-8080", "0.0.0.0:8080")
	l.listen(t, peer, "peer-5432", "0.0.0.0:5432")

	cases := []struct {
		name, answer, listener, origDst string
		dial                            func(msg string) string
	}{
		{"outbound from the app", "hello from outbound", "outbound", "10.77.0.1:8080",
			func(m string) string { return dial(t, pod, "10.77.0.1:8080", m) }},
		{"outbound from the proxy's uid 1337", "hello from peer-8080", "peer-8080", "",
			func(m string) string { return dialAs(t, pod, 1337, "10.77.0.1", 8080, m) }},
		{"outbound from another uid", "hello from outbound", "outbound", "10.77.0.1:8080",
			func(m string) string { return dialAs(t, pod, 1000, "10.77.0.1", 8080, m) }},
		{"outbound to an excluded port", "hello from peer-5432", "peer-5432", "",
			func(m string) string { return dial(t, pod, "10.77.0.1:5432", m) }},
		{"loopback", "hello from app", "app", "",
			func(m string) string { return dial(t, pod, "127.0.0.1:8080", m) }},
		{"inbound", "hello from inbound", "inbound", "10.77.0.2:8080",
			func(m string) string { return dial(t, peer, "10.77.0.2:8080", m) }},
		{"inbound to the health port", "hello from health", "health", "",
			func(m string) string { return dial(t, peer, "10.77.0.2:15021", m) }},
	}
	for i, c := range cases {
		msg := fmt.Sprintf("case-%d", i)
		if got := c.dial(msg); got != c.answer {
			t.Errorf("%s: answered %q, want %q", c.name, got, c.answer)
			continue
		}
		h, ok := l.find(msg)
		if !ok || h.listener != c.listener || h.origDst != c.origDst {
			t.Errorf("%s: accepted as %+v, want by %s with original destination %q", c.name, h, c.listener, c.origDst)
		}
	}
}

// TestNetinitDetectsLegacy: in a namespace whose rules were written with
// the legacy backend, `weft netinit` writes its own there too, and none
// with nf_tables.
func TestNetinitDetectsLegacy(t *testing.T) {
	needNetns(t)
	pod := newNetns(t, "legacy")
	pod.exec(t, "iptables-legacy", "-t", "filter", "-A", "INPUT", "-p", "udp", "--dport", "9999", "-j", "ACCEPT")
	out := pod.exec(t, weft(t), "netinit")
	if !strings.Contains(out, "rules applied (iptables legacy)") {
		t.Errorf("weft netinit said:\n%s\nwant the legacy backend", out)
	}
	if legacy := saveNat(t, pod, "legacy"); !strings.Contains(legacy, "-A WEFT_OUTBOUND -p tcp -j REDIRECT --to-ports 15001") {
		t.Errorf("legacy nat table:\n%s", legacy)
	}
	if nft := saveNat(t, pod, "nft"); strings.Contains(nft, "WEFT_") {
		t.Errorf("nf_tables has weft's rules too:\n%s", nft)
	}
}
