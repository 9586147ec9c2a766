package clustertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/weft-dev/weft/internal/ociimage"
)

// Options of [Up]. The zero value is a complete cluster.
type Options struct {
	// Name of the cluster: its network namespace, its work dir
	// BaseDir/Name and its cgroups k8s-<Name>. Default: "weft-" and a
	// hash of the current directory, so each test package of each work
	// tree has its own, and a killed run's leftovers are found by the
	// next run of the same package.
	Name string
	// BaseDir holds the work dirs (default $WEFT_CLUSTER_DIR, else
	// /tmp/weft-cluster). Keep it short: unix socket paths live below it.
	BaseDir string
	// Images is the OCI image layout imported into containerd (default:
	// what `make images` writes, <repo>/out/images/oci, rebuilt by
	// [Start] when its inputs changed). It must hold the pause image
	// PauseRef.
	Images string
	// PauseRef is the sandbox image (default localhost/pause:dev).
	PauseRef string
	// NoKubeProxy leaves kube-proxy out: no ClusterIPs, and no in-cluster
	// API access through kubernetes.default (pods then need the node
	// address).
	NoKubeProxy bool
	// NoDNS leaves the cluster DNS out (see dns.go).
	NoDNS bool
	// ToolsBin holds the Kubernetes binaries and etcd (default
	// $WEFT_TOOLS_BIN, else <repo>/.tools/bin).
	ToolsBin string
	// Detach lets the cluster outlive this process (the CLI); otherwise
	// every component dies with it (Pdeathsig), and its leftovers (pods)
	// are removed by the next Up or Teardown.
	Detach bool
	// Logf gets progress lines (nil: none).
	Logf func(format string, args ...any)
}

// Phase is one timed step of Up or Down.
type Phase struct {
	Name string
	Took time.Duration
}

// Cluster is a running single-node cluster.
type Cluster struct {
	// Name, Dir (its work dir) and Netns (/run/netns/<Name>).
	Name, Dir, Netns string
	// Config is an admin (system:masters) client configuration whose
	// connections go through the netns proxy: use it from this process.
	Config *rest.Config
	// Clientset uses Config.
	Clientset kubernetes.Interface
	// Kubeconfig is the admin kubeconfig for processes inside the netns
	// (server https://127.0.0.1:6443): [Cluster.Command] sets KUBECONFIG
	// to it. A process outside the netns uses [Cluster.HostKubeconfig].
	Kubeconfig string
	// Images maps each imported image ref to its manifest digest.
	Images map[string]string
	// Phases are the timed steps of Up (then Down), in order.
	Phases []Phase

	opts   Options
	layout layout
	mu     sync.Mutex
	procs  []*proc
	down   bool
	// hostFiles are what Down removed outside Dir.
	hostFiles []string
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// DefaultName is Options.Name's default: "weft-" and 8 hex digits of the
// current directory's hash.
func DefaultName() string {
	wd, _ := os.Getwd()
	sum := sha256.Sum256([]byte(wd))
	return "weft-" + hex.EncodeToString(sum[:4])
}

// DefaultBaseDir is Options.BaseDir's default.
func DefaultBaseDir() string {
	if d := os.Getenv("WEFT_CLUSTER_DIR"); d != "" {
		return d
	}
	return "/tmp/weft-cluster"
}

func (o *Options) defaults() {
	if o.Name == "" {
		o.Name = DefaultName()
	}
	if o.BaseDir == "" {
		o.BaseDir = DefaultBaseDir()
	}
	if o.ToolsBin == "" {
		o.ToolsBin = toolsBin()
	}
	if o.PauseRef == "" {
		o.PauseRef = "localhost/pause:dev"
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Up tears down whatever a cluster of the same name left behind, then
// starts one: network namespace with the bridge, containerd, the images
// imported, etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet, kube-proxy and the netns proxy (with the
// cluster DNS). It returns once the node is Ready, the default
// ServiceAccount exists and the images are imported. On failure
// everything started is torn down and the error carries the failing
// component's log tail.
func Up(ctx context.Context, opts Options) (*Cluster, error) {
	opts.defaults()
	if missing := Missing(opts.ToolsBin); len(missing) > 0 {
		return nil, &MissingError{Missing: missing}
	}
	if opts.Images == "" {
		return nil, errors.New("clustertest: Options.Images (an OCI layout with the pause image) is required")
	}
	w, err := filepath.Abs(filepath.Join(opts.BaseDir, opts.Name))
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: opts.Name, Dir: w, Netns: NetnsPath(opts.Name), opts: opts, layout: layout{w: w}}
	if err := c.up(ctx); err != nil {
		if derr := c.Down(); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	return c, nil
}

func (c *Cluster) phase(name string, start time.Time) {
	p := Phase{Name: name, Took: time.Since(start)}
	c.mu.Lock()
	c.Phases = append(c.Phases, p)
	c.mu.Unlock()
	c.opts.Logf("clustertest: %s: %s", name, p.Took.Round(time.Millisecond))
}

func (c *Cluster) up(ctx context.Context) error {
	l := c.layout
	t0 := time.Now()
	if err := Teardown(c.opts.BaseDir, c.Name); err != nil {
		return fmt.Errorf("clustertest: removing what an earlier run left: %w", err)
	}
	if err := os.RemoveAll(l.w); err != nil {
		return err
	}
	c.phase("leftovers removed", t0)

	t := time.Now()
	if err := c.writeConfigs(c.opts.PauseRef); err != nil {
		return fmt.Errorf("clustertest: %w", err)
	}
	if err := createCgroups(cgroupName(c.Name)); err != nil {
		return err
	}
	if err := setupNetns(c.Name); err != nil {
		return err
	}
	if err := c.startProxy(); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "the netns proxy", 20*time.Second, func(context.Context) error {
		conn, err := net.Dial("unix", l.proxySocket())
		if err == nil {
			conn.Close()
		}
		return err
	}); err != nil {
		return err
	}
	c.phase("certificates, configs, netns, proxy", t)

	t = time.Now()
	if err := c.start("containerd", "containerd", "--config", l.cfg("containerd.toml")); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "containerd", 30*time.Second, func(ctx context.Context) error {
		_, err := c.ctr(ctx, nil, "version")
		return err
	}); err != nil {
		return err
	}
	c.phase("containerd ready", t)

	imported := make(chan error, 1)
	go func() {
		ti := time.Now()
		err := c.importImages(ctx, c.opts.Images)
		if err == nil {
			c.phase("images imported", ti)
		}
		imported <- err
	}()

	t = time.Now()
	if err := c.startControlPlane(ctx); err != nil {
		return err
	}
	c.phase("etcd + apiserver ready", t)

	t = time.Now()
	if err := c.startNode(); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "node "+NodeName+" Ready", 90*time.Second, c.nodeReady); err != nil {
		return err
	}
	c.phase("node Ready", t)
	if err := c.waitFor(ctx, "the default ServiceAccount", 90*time.Second, func(ctx context.Context) error {
		_, err := c.Clientset.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	c.phase("default ServiceAccount", t)
	select {
	case err := <-imported:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	c.phase("up", t0)
	return nil
}

// setupNetns creates the network namespace with loopback up and the
// bridge cni0 holding NodeIP (before containerd: the CNI bridge plugin
// then only attaches pods to it), and a route for ServiceCIDR so that
// processes in the netns reach ClusterIPs (kube-proxy's rules act on it).
func setupNetns(name string) error {
	steps := [][]string{
		{"netns", "add", name},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "link", "add", "cni0", "type", "bridge"},
		{"-n", name, "addr", "add", NodeIP + "/24", "dev", "cni0"},
		{"-n", name, "link", "set", "cni0", "up"},
		{"-n", name, "route", "add", ServiceCIDR, "dev", "cni0"},
	}
	for _, s := range steps {
		if out, err := exec.Command(ipCommand(), s...).CombinedOutput(); err != nil {
			return fmt.Errorf("clustertest: ip %s: %w: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

func (c *Cluster) startProxy() error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("clustertest: %w", err)
	}
	args := []string{exe, proxyFlag + c.layout.proxySocket()}
	if !c.opts.NoDNS {
		args = append(args, dnsFlag+c.dnsAddr(), c.layout.kubeconfig("admin"))
	}
	return c.start("netns-proxy", args...)
}

// dnsAddr is where the cluster DNS listens ("" without one).
func (c *Cluster) dnsAddr() string {
	if c.opts.NoDNS {
		return ""
	}
	return net.JoinHostPort(NodeIP, "53")
}

func (c *Cluster) startControlPlane(ctx context.Context) error {
	l := c.layout
	pki := func(f string) string { return filepath.Join(l.pki(), f) }
	if err := c.start("etcd", "etcd",
		"--name=n1", "--data-dir="+l.path("etcd"), "--unsafe-no-fsync",
		"--listen-client-urls=http://127.0.0.1:2379", "--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=n1=http://127.0.0.1:2380", "--listen-metrics-urls=http://127.0.0.1:2381",
		"--log-level=warn"); err != nil {
		return err
	}
	plain := &http.Client{Transport: &http.Transport{DialContext: c.DialContext}, Timeout: 5 * time.Second}
	if err := c.waitFor(ctx, "etcd", 60*time.Second, func(ctx context.Context) error {
		return httpOK(ctx, plain, "http://127.0.0.1:2379/health")
	}); err != nil {
		return err
	}
	if err := c.start("kube-apiserver", "kube-apiserver",
		"--etcd-servers=http://127.0.0.1:2379",
		"--bind-address=0.0.0.0", "--secure-port="+strconv.Itoa(APIServerPort), "--advertise-address="+NodeIP,
		"--client-ca-file="+pki("ca.crt"),
		"--tls-cert-file="+pki("apiserver.crt"), "--tls-private-key-file="+pki("apiserver.key"),
		"--kubelet-client-certificate="+pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+pki("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP",
		"--service-account-issuer=https://kubernetes.default.svc."+ClusterDomain,
		"--service-account-key-file="+pki("sa.pub"), "--service-account-signing-key-file="+pki("sa.key"),
		"--service-cluster-ip-range="+ServiceCIDR,
		"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true", "--enable-aggregator-routing=true",
		"--cert-dir="+l.run("apiserver-certs"), "--profiling=false"); err != nil {
		return err
	}
	cfg := &rest.Config{
		Host: fmt.Sprintf("https://127.0.0.1:%d", APIServerPort),
		TLSClientConfig: rest.TLSClientConfig{
			CAFile: pki("ca.crt"), CertFile: pki("admin.crt"), KeyFile: pki("admin.key"),
		},
		Dial:  c.DialContext,
		QPS:   50,
		Burst: 100,
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("clustertest: %w", err)
	}
	c.Config, c.Clientset, c.Kubeconfig = cfg, cs, l.kubeconfig("admin")
	return c.waitFor(ctx, "kube-apiserver /readyz", 90*time.Second, func(ctx context.Context) error {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%w: %s", err, body)
		}
		return nil
	})
}

func (c *Cluster) startNode() error {
	l := c.layout
	pki := func(f string) string { return filepath.Join(l.pki(), f) }
	kcm := l.kubeconfig("kcm")
	if err := c.start("kube-controller-manager", "kube-controller-manager",
		"--kubeconfig="+kcm, "--authentication-kubeconfig="+kcm, "--authorization-kubeconfig="+kcm,
		"--bind-address=127.0.0.1", "--leader-elect=false", "--use-service-account-credentials=true",
		"--service-account-private-key-file="+pki("sa.key"), "--root-ca-file="+pki("ca.crt"),
		"--cluster-signing-cert-file="+pki("ca.crt"), "--cluster-signing-key-file="+pki("ca.key"),
		"--service-cluster-ip-range="+ServiceCIDR, "--cluster-name=clustertest", "--profiling=false",
		"--flex-volume-plugin-dir="+l.path("kubelet-plugins")); err != nil {
		return err
	}
	sch := l.kubeconfig("scheduler")
	if err := c.start("kube-scheduler", "kube-scheduler",
		"--kubeconfig="+sch, "--authentication-kubeconfig="+sch, "--authorization-kubeconfig="+sch,
		"--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false"); err != nil {
		return err
	}
	if err := c.start("kubelet", "kubelet",
		"--config="+l.cfg("kubelet.yaml"), "--kubeconfig="+l.kubeconfig("kubelet"),
		"--root-dir="+l.path("kubelet"), "--cert-dir="+l.path("kubelet", "pki"),
		"--hostname-override="+NodeName, "--node-ip="+NodeIP); err != nil {
		return err
	}
	if !c.opts.NoKubeProxy {
		if err := c.start("kube-proxy", "kube-proxy", "--config="+l.cfg("kube-proxy.yaml")); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) nodeReady(ctx context.Context) error {
	n, err := c.Clientset.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("Ready=%s: %s", cond.Status, cond.Message)
		}
	}
	return errors.New("no Ready condition yet")
}

// start runs argv inside the netns (nsenter --net execs it, so the PID is
// the component's), output appended to logs/<name>.log, its PID in
// run/<name>.pid.
func (c *Cluster) start(name string, argv ...string) error {
	l := c.layout
	logf, err := os.OpenFile(l.logFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("clustertest: %w", err)
	}
	cmd := exec.Command(nsenterCommand(), append([]string{"--net=" + c.Netns, "--"}, argv...)...)
	cmd.Env = c.env()
	cmd.Dir = l.w
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if !c.opts.Detach {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("clustertest: starting %s: %w", name, err)
	}
	_ = os.WriteFile(l.pidFile(name), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	if c.opts.Detach {
		logf.Close()
		_ = cmd.Process.Release()
		return nil
	}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return nil
}

// env is every component's environment: the tools first on PATH, then
// the system's sbin folders (runc, iptables, containerd's shim).
func (c *Cluster) env() []string {
	env := []string{"PATH=" + c.opts.ToolsBin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "KUBECONFIG", "CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE", "GOFLAGS", "GOMAXPROCS":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// exited reports a component that has stopped, with its log's tail.
func (c *Cluster) exited() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v); the end of %s:\n%s", p.name, p.err, c.layout.logFile(p.name), c.LogTail(p.name, 30))
		default:
		}
	}
	return nil
}

// waitFor polls check until it succeeds, a component exits, or timeout.
func (c *Cluster) waitFor(ctx context.Context, what string, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		if err := c.exited(); err != nil {
			return fmt.Errorf("clustertest: waiting for %s: %w", what, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("clustertest: %s not ready after %s: %v (logs in %s)", what, timeout, last, c.layout.path("logs"))
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// LogTail is the last n lines of a component's log (logs/<component>.log:
// containerd, etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet, kube-proxy, netns-proxy).
func (c *Cluster) LogTail(component string, n int) string {
	b, err := os.ReadFile(c.layout.logFile(component))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Down stops the cluster and removes it ([Teardown]); the logs stay in
// Dir/logs until the next Up. Calling it twice is harmless.
func (c *Cluster) Down() error {
	c.mu.Lock()
	if c.down {
		c.mu.Unlock()
		return nil
	}
	c.down = true
	procs := c.procs
	c.mu.Unlock()
	t := time.Now()
	hostFiles, err := teardown(c.opts.BaseDir, c.Name)
	c.mu.Lock()
	c.hostFiles = hostFiles
	c.mu.Unlock()
	for _, p := range procs {
		if c.opts.Detach {
			continue
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			err = errors.Join(err, fmt.Errorf("clustertest: %s (pid %d) not reaped 10 s after teardown", p.name, p.cmd.Process.Pid))
		}
	}
	c.phase("down", t)
	return err
}

// DialContext connects to addr ("10.244.0.7:8080", "127.0.0.1:6443", a
// ClusterIP) from inside the cluster's network namespace, through the
// netns proxy. Only TCP.
func (c *Cluster) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialThrough(ctx, c.layout.proxySocket(), network, addr)
}

// HTTPClient sends its requests from inside the netns (pods, Services by
// ClusterIP, the node's ports).
func (c *Cluster) HTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: c.DialContext, DisableKeepAlives: true},
		Timeout:   30 * time.Second,
	}
}

// Command runs name inside the netns (nsenter --net) with KUBECONFIG set
// to the admin kubeconfig and the tools (kubectl, crictl) on PATH.
func (c *Cluster) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, nsenterCommand(), append([]string{"--net=" + c.Netns, "--", name}, args...)...)
	cmd.Env = append(c.env(), "KUBECONFIG="+c.Kubeconfig,
		"CONTAINER_RUNTIME_ENDPOINT=unix://"+c.layout.containerdSocket())
	return cmd
}

// Kubectl runs kubectl in the netns as admin and returns its combined
// output; a non-zero exit is an error holding that output.
func (c *Cluster) Kubectl(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := c.Command(ctx, filepath.Join(c.opts.ToolsBin, "kubectl"), args...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return out, nil
}

// ctr runs containerd's ctr against the cluster's containerd, namespace
// k8s.io (the CRI's). ctr only talks to the socket, so it runs outside
// the netns.
func (c *Cluster) ctr(ctx context.Context, stdin io.Reader, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.layout.containerdSocket(), "--namespace", "k8s.io"}, args...)...)
	cmd.Stdin = stdin
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// ImportImages imports every image of the OCI layout at dir into the
// cluster's containerd (unpacked, ready for pods with imagePullPolicy
// Never) and adds them to c.Images.
func (c *Cluster) ImportImages(ctx context.Context, dir string) error {
	return c.importImages(ctx, dir)
}

func (c *Cluster) importImages(ctx context.Context, dir string) error {
	imgs, err := ociimage.ReadLayout(dir)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(ociimage.WriteArchive(pw, dir)) }()
	if _, err := c.ctr(ctx, pr, "images", "import", "-"); err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("clustertest: importing %s: %w", dir, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Images == nil {
		c.Images = map[string]string{}
	}
	for ref, img := range imgs {
		d, err := img.Digest()
		if err != nil {
			return err
		}
		c.Images[ref] = d.String()
	}
	return nil
}

func httpOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	return nil
}

func nsenterCommand() string {
	for _, p := range []string{"/usr/bin/nsenter", "/bin/nsenter"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "nsenter"
}
