package tests

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/tooltest"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/sidecar/agent"
	"github.com/weft-dev/weft/sidecar/inject"
)

// The two meshed workloads of BenchmarkPodSidecars, added to the example
// shop (prod): loadgen calls what the shop's frontend calls plus echo, so
// its proxy carries a frontend-sized configuration; echo is a plain
// service with the shop's defaults (strict mTLS, retries, timeout,
// circuit breaker, outlier detection) and no rate limit.
const sidecarBenchCUE = `package shop

mesh: services: {
	loadgen: {
		serviceAccount: "loadgen"
		ports: http: {port: 9000, protocol: "http"}
		versions: v1: labels: {app: "loadgen", version: "v1"}
		calls: ["echo", "catalog", "cart", "orders", "reviews"]
	}
	echo: {
		serviceAccount: "echo"
		ports: http: {port: 8080, protocol: "http"}
		versions: v1: {
			labels: {app: "echo", version: "v1"}
			endpoints: ["10.77.0.2:8080"]
		}
	}
}
`

var (
	loadgenID = cav1.Identity{TrustDomain: podTrustDomain, Namespace: "shop", ServiceAccount: "loadgen"}
	echoID    = cav1.Identity{TrustDomain: podTrustDomain, Namespace: "shop", ServiceAccount: "echo"}
)

// sidecarBenchRounds alternates the variants this many times per
// iteration (odd: the figures are the rounds' medians), each loaded for
// sidecarBenchLoad.
const (
	sidecarBenchRounds = 3
	sidecarBenchLoad   = "10s"
)

// BenchmarkPodSidecars measures what two injected sidecars add to a
// request, without Kubernetes but with everything the injector puts in a
// pod: two pairs of network namespaces ("pods" joined by a veth pair,
// client 10.77.0.1, server 10.77.0.2), the server running fortio's echo
// server on :8080 as the app, the client running fortio's load generator
// at a fixed 1,000 req/s on 4 connections to http://10.77.0.2:8080/ for
// 10 s. In the "plain" pair nothing else runs. In the "mesh" pair both
// pods got `weft netinit` (the injector's arguments) and `weft agent` with
// the injected container's arguments as uid 1337 (real CA over gRPC with a
// projected-token-shaped credential, reconciler/xds serving the compiled
// example shop plus loadgen and echo), which starts a real Envoy with the
// injector's defaults: the request goes client → outbound redirect →
// loadgen's Envoy (outbound listener, route by Host echo:8080) → mTLS →
// inbound redirect → echo's Envoy (inbound listener, RBAC) → app.
// Variants alternate (plain, mesh) sidecarBenchRounds times; the raw line
// carries the median of the rounds' p50/p99 (ms) and achieved req/s, the
// difference (added-*), the resident memory (VmRSS, MB; *-anon-MB its
// anonymous part; *-envoy-heap-MB what Envoy's allocator holds for
// allocations; *-envoy-clusters the size of its configuration) of both
// Envoys and both agents after the load, netinit's run time and each proxy's start
// until the agent's /ready answers 200 (what the startup probe waits for
// before the app starts), the machine's 1-minute load average at the end
// (loadavg-1m) and the share of the measurement's wall time during which
// some runnable task on the machine waited for a CPU (cpu-wait-%, from
// /proc/pressure/cpu; -1 without it). time/op means nothing.
func BenchmarkPodSidecars(b *testing.B) {
	needNetns(b)
	envoy, fortio := tooltest.Envoy(b), tooltest.Fortio(b)
	weftBin := weft(b)
	// The agent runs as the proxy's uid: it must reach the binary.
	if err := os.Chmod(filepath.Dir(weftBin), 0o755); err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "weft-pods")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}

	plainServer, plainClient := podAndPeer(b)
	meshServer, meshClient := podAndPeer(b)
	for _, n := range []netns{plainServer, meshServer} {
		startFortioServer(b, fortio, n)
	}

	cp := startPodControlPlane(b, dir, meshClient, meshServer)
	loadgen := cp.startPod(b, weftBin, envoy, meshClient, "loadgen-0", loadgenID, 9000)
	echo := cp.startPod(b, weftBin, envoy, meshServer, "echo-0", echoID, 8080)
	loadgen.waitReady(b)
	echo.waitReady(b)

	target := "http://10.77.0.2:8080/"
	// Warm both paths up (connections, TLS sessions), not reported.
	for _, n := range []netns{plainClient, meshClient} {
		fortioLoad(b, fortio, n, target, "-qps", "200", "-c", "4", "-t", "2s")
	}
	var plain, mesh fortioResult
	stalled, since := cpuStalled(b), time.Now()
	for i := 0; i < b.N; i++ {
		var plains, meshes []fortioResult
		for r := 0; r < sidecarBenchRounds; r++ {
			for _, v := range []struct {
				name string
				ns   netns
				out  *[]fortioResult
			}{{"plain", plainClient, &plains}, {"mesh", meshClient, &meshes}} {
				res := fortioLoad(b, fortio, v.ns, target, "-qps", "1000", "-c", "4", "-t", sidecarBenchLoad)
				b.Logf("round %d %s: %.1f req/s, p50 %.3f ms, p99 %.3f ms (%d requests)", r+1, v.name, res.QPS, res.P50, res.P99, res.Count)
				*v.out = append(*v.out, res)
			}
		}
		plain, mesh = medianFortio(plains), medianFortio(meshes)
	}
	wait := -1.0
	if stalled >= 0 {
		wait = 100 * float64(cpuStalled(b)-stalled) / float64(time.Since(since))
	}
	b.ReportMetric(wait, "cpu-wait-%")
	b.ReportMetric(plain.QPS, "plain-req/s")
	b.ReportMetric(plain.P50, "plain-p50-ms")
	b.ReportMetric(plain.P99, "plain-p99-ms")
	b.ReportMetric(mesh.QPS, "mesh-req/s")
	b.ReportMetric(mesh.P50, "mesh-p50-ms")
	b.ReportMetric(mesh.P99, "mesh-p99-ms")
	b.ReportMetric(mesh.P50-plain.P50, "added-p50-ms")
	b.ReportMetric(mesh.P99-plain.P99, "added-p99-ms")
	for _, p := range []*meshPod{loadgen, echo} {
		svc := p.id.ServiceAccount
		envoyPID := p.envoyPID(b)
		b.ReportMetric(memMB(b, envoyPID, "VmRSS"), svc+"-envoy-rss-MB")
		b.ReportMetric(memMB(b, envoyPID, "RssAnon"), svc+"-envoy-anon-MB")
		heap, clusters := p.envoyAdmin(b)
		b.ReportMetric(heap, svc+"-envoy-heap-MB")
		b.ReportMetric(clusters, svc+"-envoy-clusters")
		b.ReportMetric(memMB(b, p.cmd.Process.Pid, "VmRSS"), svc+"-agent-rss-MB")
		b.ReportMetric(memMB(b, p.cmd.Process.Pid, "RssAnon"), svc+"-agent-anon-MB")
		b.ReportMetric(float64(p.ready.Microseconds())/1000, svc+"-ready-ms")
		b.ReportMetric(float64(p.netinit.Microseconds())/1000, svc+"-netinit-ms")
	}
	b.ReportMetric(loadAverage(b), "loadavg-1m")
}

// cpuStalled is the machine's total time during which some runnable task
// waited for a CPU (/proc/pressure/cpu, "some total"), or -1 without
// pressure stall information.
func cpuStalled(b *testing.B) time.Duration {
	b.Helper()
	raw, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return -1
	}
	for _, f := range strings.Fields(strings.SplitN(string(raw), "\n", 2)[0]) {
		if v, ok := strings.CutPrefix(f, "total="); ok {
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatalf("/proc/pressure/cpu: %q", raw)
			}
			return time.Duration(us) * time.Microsecond
		}
	}
	b.Fatalf("/proc/pressure/cpu: no total: %q", raw)
	return 0
}

// loadAverage is the machine's load average over the last minute.
func loadAverage(b *testing.B) float64 {
	b.Helper()
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		b.Fatal(err)
	}
	v, err := strconv.ParseFloat(strings.Fields(string(raw))[0], 64)
	if err != nil {
		b.Fatalf("/proc/loadavg: %q", raw)
	}
	return v
}

// startFortioServer runs fortio's echo server on :8080 in n (HTTP only).
func startFortioServer(b *testing.B, fortio string, n netns) {
	b.Helper()
	out := &tooltest.Output{}
	cmd := exec.Command("nsenter", "--net="+n.path, fortio, "server", "-http-port", "8080",
		"-grpc-port", "disabled", "-redirect-port", "disabled", "-tcp-port", "disabled", "-udp-port", "disabled")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: n.dialContext, DisableKeepAlives: true}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://127.0.0.1:8080/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("fortio server in %s not answering: %v\n%s", n.name, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// podControlPlane is the mesh CA and reconciler/xds's server, listening on
// 127.0.0.1:15012 and :15010 inside every pod namespace (a stand-in for
// the controller's Service: loopback is never redirected).
type podControlPlane struct {
	dir  string
	ca   *ca.CA
	auth *ca.TokenAuthenticator
}

func startPodControlPlane(b *testing.B, dir string, pods ...netns) *podControlPlane {
	b.Helper()
	c, err := ca.New(ca.Config{TrustDomain: podTrustDomain, StateDir: filepath.Join(dir, "ca")})
	if err != nil {
		b.Fatal(err)
	}
	cpID := cav1.Identity{TrustDomain: podTrustDomain, Namespace: "weft-system", ServiceAccount: "weft-controller"}
	lo := []net.IP{net.IPv4(127, 0, 0, 1)}
	caTLS, err := c.ServerTLS(cpID, []string{"localhost"}, lo, tls.NoClientCert)
	if err != nil {
		b.Fatal(err)
	}
	auth := ca.NewTokenAuthenticator()
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(caTLS)))
	ca.NewServer(c, auth, nil).Register(gs)
	xdsTLS, err := c.ServerTLS(cpID, []string{"localhost"}, lo, tls.RequireAndVerifyClientCert)
	if err != nil {
		b.Fatal(err)
	}
	classes := map[string]struct {
		id    cav1.Identity
		class string
	}{
		"loadgen-0.shop": {loadgenID, "loadgen-v1"},
		"echo-0.shop":    {echoID, "echo-v1"},
	}
	s := xds.New(xds.Options{TLS: xdsTLS, Logger: slog.New(slog.DiscardHandler), Authorizer: xds.AuthorizerFunc(
		// Stands in for the controller's pod lookup.
		func(_ context.Context, p xds.Peer, n *corev3.Node) (xds.Binding, error) {
			want, ok := classes[n.GetId()]
			svc := want.id.ServiceAccount
			if !ok || p.Identity != want.id || (n.GetCluster() != svc && n.GetCluster() != want.class) {
				return xds.Binding{}, fmt.Errorf("unknown node %q (%s, cluster %q)", n.GetId(), p.Identity, n.GetCluster())
			}
			return xds.Binding{NodeID: n.GetId(), Class: want.class}, nil
		})})
	if err := s.Publish("bench", shopBenchMesh(b)); err != nil {
		b.Fatal(err)
	}
	for _, n := range pods {
		go gs.Serve(n.listen(b, "127.0.0.1:15012"))
		go s.Serve(n.listen(b, "127.0.0.1:15010"))
	}
	b.Cleanup(gs.Stop)
	b.Cleanup(s.Stop)
	return &podControlPlane{dir: dir, ca: c, auth: auth}
}

// shopBenchMesh compiles environments/ (prod) plus sidecarBenchCUE with
// the default listener ports (15006 inbound, 15001 outbound).
func shopBenchMesh(b *testing.B) *compiler.Result {
	b.Helper()
	src := filepath.Join(tooltest.RepoRoot(), "environments")
	dst := b.TempDir()
	for _, rel := range []string{".", "cue.mod", "cue.mod/pkg/weft.dev/weft", "prod"} {
		entries, err := os.ReadDir(filepath.Join(src, rel))
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range entries {
			if e.IsDir() || !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".cue") {
				continue
			}
			body, err := os.ReadFile(filepath.Join(src, rel, e.Name()))
			if err != nil {
				b.Fatal(err)
			}
			putFile(b, filepath.Join(dst, rel, e.Name()), body)
		}
	}
	putFile(b, filepath.Join(dst, "bench.cue"), []byte(sidecarBenchCUE))
	m, err := schema.Load(dst, schema.Options{Env: "prod", Revision: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	res, err := compiler.Compile(m, nil, compiler.Options{Revision: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return res
}

func putFile(b testing.TB, path string, body []byte) {
	b.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		b.Fatal(err)
	}
}

// meshPod is one injected pod's proxy: `weft agent` (and its Envoy) in
// the pod's namespace.
type meshPod struct {
	ns      netns
	dir     string // the pod's files: token, sockets, bootstrap
	id      cav1.Identity
	cmd     *exec.Cmd
	out     *tooltest.Output
	started time.Time
	netinit time.Duration // weft netinit's run
	ready   time.Duration // agent start to /ready 200
}

// startPod injects a pod of id's service (labels app, version=v1), runs
// its weft-init container's command in n, then its weft-proxy
// container's command as uid/gid 1337 with the downward API resolved as
// the kubelet would and paths and the control plane's addresses moved to
// the test's.
func (cp *podControlPlane) startPod(b *testing.B, weftBin, envoy string, n netns, name string, id cav1.Identity, port int32) *meshPod {
	b.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{"app": id.ServiceAccount, "version": "v1"}},
		Spec: corev1.PodSpec{ServiceAccountName: id.ServiceAccount, Containers: []corev1.Container{{
			Name: id.ServiceAccount, Image: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}},
		}}},
	}
	if _, err := inject.Pod(p, "shop", inject.Options{TrustBundle: cp.ca.TrustBundlePEM(), TrustDomain: podTrustDomain}); err != nil {
		b.Fatal(err)
	}
	initC, proxy := p.Spec.InitContainers[0], p.Spec.InitContainers[1]
	mp := &meshPod{ns: n, id: id, out: &tooltest.Output{}}
	start := time.Now()
	if out := n.exec(b, append([]string{weftBin}, append(initC.Command[1:], initC.Args...)...)...); !strings.Contains(out, "rules applied") {
		b.Fatalf("weft netinit in %s:\n%s", name, out)
	}
	mp.netinit = time.Since(start)

	podDir := filepath.Join(cp.dir, name)
	mp.dir = podDir
	tok := projectedToken("shop", id.ServiceAccount, name)
	if err := cp.auth.Add(tok, id); err != nil {
		b.Fatal(err)
	}
	tokenFile := filepath.Join(podDir, "token")
	if err := ca.WriteTokenFile(tokenFile, tok); err != nil {
		b.Fatal(err)
	}
	if err := filepath.WalkDir(podDir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, inject.ProxyUID, inject.ProxyUID)
	}); err != nil {
		b.Fatal(err)
	}
	uid := strconv.Itoa(inject.ProxyUID)
	args := append([]string{"--net=" + n.path, "--setuid", uid, "--setgid", uid, weftBin}, append(proxy.Command[1:], proxy.Args...)...)
	args = append(args, "--ca-address=127.0.0.1:15012", "--xds-address=127.0.0.1:15010", "--token-file="+tokenFile,
		"--socket="+filepath.Join(podDir, "agent.sock"), "--bootstrap="+filepath.Join(podDir, "envoy.yaml"),
		"--pod-info=", "--envoy="+envoy, "--drain-timeout=1s")
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range proxy.Env {
		v := e.Value
		if e.ValueFrom != nil {
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.name":
				v = p.Name
			case "metadata.namespace":
				v = p.Namespace
			case "metadata.labels['" + compiler.ServiceLabel + "']":
				v = p.Labels[compiler.ServiceLabel]
			default:
				b.Fatalf("env %s from %s: unknown to this benchmark", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		}
		env = append(env, e.Name+"="+v)
	}
	mp.cmd = exec.Command("nsenter", args...)
	mp.cmd.Env, mp.cmd.Stdout, mp.cmd.Stderr = env, mp.out, mp.out
	mp.started = time.Now()
	if err := mp.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- mp.cmd.Wait() }()
	b.Cleanup(func() {
		_ = mp.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = mp.cmd.Process.Kill()
			<-exited
		}
		if b.Failed() {
			b.Logf("weft agent %s output:\n%s", name, mp.out.String())
		}
	})
	return mp
}

// waitReady polls the agent's /ready inside the pod (as the kubelet's
// startup probe does) until it answers 200, at most 60 s.
func (p *meshPod) waitReady(b *testing.B) {
	b.Helper()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: p.ns.dialContext, DisableKeepAlives: true}}
	deadline := p.started.Add(60 * time.Second)
	for {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/ready", inject.HealthPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				p.ready = time.Since(p.started)
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s's proxy not ready within 60s: %v\n%s", p.id.ServiceAccount, err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// envoyAdmin reads from Envoy's admin socket the memory its allocator
// holds for allocations (/memory "allocated", MB) and its number of
// active clusters (the size of the configuration it was given).
func (p *meshPod) envoyAdmin(b *testing.B) (heapMB, clusters float64) {
	b.Helper()
	socket := filepath.Join(p.dir, agent.AdminSocketName)
	_, body := tooltest.AdminGet(b, socket, "/memory")
	var mem struct {
		Allocated string `json:"allocated"`
	}
	if err := json.Unmarshal([]byte(body), &mem); err != nil {
		b.Fatalf("envoy /memory: %v\n%s", err, body)
	}
	allocated, err := strconv.ParseFloat(mem.Allocated, 64)
	if err != nil {
		b.Fatalf("envoy /memory: allocated %q", mem.Allocated)
	}
	_, stats := tooltest.AdminGet(b, socket, "/stats?filter=^cluster_manager.active_clusters$")
	_, n, ok := strings.Cut(strings.TrimSpace(stats), ": ")
	if clusters, err = strconv.ParseFloat(n, 64); !ok || err != nil {
		b.Fatalf("envoy /stats: %q", stats)
	}
	return allocated / 1e6, clusters
}

// envoyPID is the agent's child process Envoy.
func (p *meshPod) envoyPID(b *testing.B) int {
	b.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	parent := strconv.Itoa(p.cmd.Process.Pid)
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := procStatus(pid)
		if err == nil && st["PPid"] == parent && st["Name"] == "envoy" {
			return pid
		}
	}
	b.Fatalf("no envoy process under weft agent %s (pid %s)", p.id.ServiceAccount, parent)
	return 0
}

// procStatus reads /proc/<pid>/status as field: value.
func procStatus(pid int) (map[string]string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out, sc.Err()
}

// memMB is a memory field of /proc/<pid>/status (VmRSS: resident;
// RssAnon: its anonymous part, without the mapped binary and files) in MB
// (10^6 bytes).
func memMB(b *testing.B, pid int, field string) float64 {
	b.Helper()
	st, err := procStatus(pid)
	if err != nil {
		b.Fatal(err)
	}
	kb, err := strconv.ParseFloat(strings.TrimSuffix(st[field], " kB"), 64)
	if err != nil {
		b.Fatalf("%s of %d: %q", field, pid, st[field])
	}
	return kb * 1024 / 1e6
}

// fortioLoad runs fortio's load generator inside n against url with Host
// echo:8080 (the mesh routes by it; the plain app ignores it) and
// returns what it measured; every answer must be a 200.
func fortioLoad(b *testing.B, fortio string, n netns, url string, args ...string) fortioResult {
	b.Helper()
	out := filepath.Join(b.TempDir(), "fortio.json")
	cmd := exec.Command("nsenter", append(append([]string{"--net=" + n.path, fortio, "load", "-quiet", "-json", out, "-H", "Host: echo:8080"}, args...), url)...)
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("fortio in %s: %v\n%s", n.name, err, o)
	}
	return readFortio(b, out)
}

// fortioResult is the part of fortio's JSON report the benchmarks use:
// achieved req/s and latency percentiles in milliseconds.
type fortioResult struct {
	QPS, P50, P99 float64
	Count         int
}

// medianFortio is the median of each figure over rs (an odd number of
// runs): one run disturbed by the machine's other work does not move it.
func medianFortio(rs []fortioResult) fortioResult {
	median := func(f func(fortioResult) float64) float64 {
		vs := make([]float64, 0, len(rs))
		for _, r := range rs {
			vs = append(vs, f(r))
		}
		slices.Sort(vs)
		return vs[len(vs)/2]
	}
	out := fortioResult{
		QPS: median(func(r fortioResult) float64 { return r.QPS }),
		P50: median(func(r fortioResult) float64 { return r.P50 }),
		P99: median(func(r fortioResult) float64 { return r.P99 }),
	}
	for _, r := range rs {
		out.Count += r.Count
	}
	return out
}
