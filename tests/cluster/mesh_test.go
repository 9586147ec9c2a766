package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-dev/weft/environments/deploy"
	"github.com/weft-dev/weft/internal/clustertest"
	"github.com/weft-dev/weft/internal/fluxtest"
	"github.com/weft-dev/weft/internal/images"
	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/sidecar/inject"
)

// The shop's namespace (the example mesh's defaults.namespace) and the
// namespace of a pod without a sidecar.
const (
	shopNS    = "shop"
	outsideNS = "outside"
)

// TestMesh deploys weft as a user does and proves the mesh through the
// injected Envoys of real pods (issue 10), on one cluster whose steps run
// in order:
//
//   - weft: `weft install --export` (controller image localhost/weft)
//     applied; Flux's source-controller (the binary of `make tools`, run
//     inside the cluster's network namespace: there is no image of it)
//     serving a GitRepository of a real git repository (git's smart HTTP)
//     holding the example shop (environments/) plus the overlay
//     tests/testdata/mesh-e2e; a Mesh of it in the environment e2e;
//   - the shop: Deployments of `weft demo-app` (reviews v1 x2, reviews v2,
//     orders, orders-shadow, catalog) and busybox clients (frontend,
//     intruder) in the namespace shop labelled weft.dev/inject=enabled,
//     every pod injected by the webhook;
//   - then, each a subtest, what a user sees from the frontend pod: the
//     90/10 split over 1,000 requests, the x-canary header route, retries,
//     the 429 of a rate limit, an injected fault, the mirror, mTLS and
//     authz, git commits shifting the traffic (timed), the first request
//     of a starting pod, a pod deleted, a controller replica killed and
//     the certificates rotating (the controller's --cert-ttl is 40 s)
//     under load with no failed request.
//
// The numbers are logged; the assertions are on what is deterministic or
// within a statistical tolerance (the split within 5 points), never on
// time: the commit-to-traffic time is measured, logged and bounded only
// by a 2-minute timeout.
func TestMesh(t *testing.T) {
	kubetest.RequireBinaries(t, tooltest.BinDir(), "source-controller") // skips, or fails under CI=true
	c := clustertest.Start(t, clustertest.Options{})
	ctx := context.Background()
	started := time.Now()
	t.Logf("cluster %s up: %s", c.Name, c.Timings())
	weftBin := clustertest.BuildImages(t).Inputs.Weft

	repo, sc := startFlux(t, c)
	commitShop(t, repo, "90/10", nil)
	installWeft(t, c, weftBin, sc)
	// The shop's namespaces (the Mesh applies NetworkPolicies in them):
	// shop labelled for injection, payments (no pods here).
	createNamespace(t, c.Clientset, "payments")
	createNamespace(t, c.Clientset, shopNS)
	if _, err := c.Kubectl(ctx, nil, "label", "namespace", shopNS, inject.InjectKey+"=enabled"); err != nil {
		t.Fatal(err)
	}
	applyMesh(t, c)
	deployShop(t, c)
	t.Logf("weft, Flux and the shop up %s after the cluster", time.Since(started).Round(100*time.Millisecond))

	fe := firstPod(t, c, shopNS, "app=frontend")
	m := &meshClient{c: c, pod: fe}

	t.Run("injected", func(t *testing.T) { testInjected(t, c, weftBin) })
	t.Run("split 90/10", func(t *testing.T) {
		v2 := m.v2Share(t, 1000, "http://reviews:9080/")
		t.Logf("reviews: %.1f%% v2 over 1,000 requests (want 10 ± 5)", v2)
		if v2 < 5 || v2 > 15 {
			t.Errorf("reviews v2 got %.1f%% of 1,000 requests, want 10 ± 5", v2)
		}
	})
	t.Run("header route", func(t *testing.T) {
		rs := m.run(t, 20, `-S --header "x-canary: 1" http://reviews:9080/`)
		for _, r := range rs {
			if r.code != 200 || r.ans.Version != "v2" || r.ans.Headers["x-reviews-track"] != "canary" ||
				!strings.Contains(strings.ToLower(r.raw), "x-reviews-version: v2") {
				t.Fatalf("x-canary: 1 should reach v2 with x-reviews-track: canary and answer x-reviews-version: v2; got %d %s: %s", r.code, r.ans.Version, r.raw)
			}
		}
	})
	t.Run("retries", func(t *testing.T) { testRetries(t, c, m) })
	t.Run("rate limit", func(t *testing.T) {
		time.Sleep(2 * time.Second) // a full bucket
		codes := m.codes(t, 40, "http://orders:8083/orders/1")
		t.Logf("40 requests in a burst to orders' read route (5/s, burst 10): %v", codes)
		if codes[429] < 10 || codes[200] < 5 || codes[200]+codes[429] != 40 {
			t.Errorf("want at least 10 answers 429 and 5 answers 200 (nothing else), got %v", codes)
		}
	})
	t.Run("fault", func(t *testing.T) {
		if codes := m.codes(t, 20, "http://catalog:8081/search?q=tea"); codes[418] != 20 {
			t.Errorf("catalog's search route aborts with 418: got %v", codes)
		}
		if codes := m.codes(t, 5, "http://catalog:8081/products/7"); codes[200] != 5 {
			t.Errorf("catalog's other routes answer 200: got %v", codes)
		}
	})
	t.Run("mirror", func(t *testing.T) { testMirror(t, c, m) })
	t.Run("mtls and authz", func(t *testing.T) { testMTLS(t, c, m) })
	t.Run("gitops", func(t *testing.T) { testGitOps(t, c, m, repo) })
	t.Run("first request at start", func(t *testing.T) { testFirstRequest(t, c) })
	t.Run("pod deleted under load", func(t *testing.T) {
		victim := firstPod(t, c, shopNS, "app=reviews,version=v1")
		fails := m.underLoad(t, func() {
			if err := c.Clientset.CoreV1().Pods(shopNS).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
				t.Error(err)
			}
		})
		if fails != "" {
			t.Errorf("deleting %s under load: failed requests:\n%s", victim.Name, fails)
		}
		waitAvailable(t, c.Clientset, shopNS, "reviews-v1", 2, 2*time.Minute)
	})
	t.Run("controller replica killed under load", func(t *testing.T) { testControllerKilled(t, c, m) })
	t.Run("certificate rotation under load", func(t *testing.T) { testRotation(t, c, m) })
	t.Logf("TestMesh: %s from the cluster's start", time.Since(started).Round(100*time.Millisecond))
}

// installWeft applies `weft install --export` (the controller's
// certificates shortened to certTTL) and the GitRepository, and waits
// until the controller is Available and the injector's webhook has its
// caBundle.
func installWeft(t *testing.T, c *clustertest.Cluster, weftBin string, sc *sourceCtl) {
	ctx := context.Background()
	manifests, err := exec.Command(weftBin, "install", "--export", "--image", images.Ref(images.WeftName, images.DefaultTag)).Output()
	if err != nil {
		t.Fatalf("weft install --export: %v", err)
	}
	// Workload certificates of 40 s (renewed at about half of it), so
	// that every pod rotates its certificate several times during the
	// test and the rotation subtest sees it under load; a user changes
	// these flags with a kustomize patch.
	arg := regexp.MustCompile(`\n( +)- controller\n`)
	if !arg.Match(manifests) {
		t.Fatalf("weft install --export: the controller's args do not start with controller:\n%s", manifests)
	}
	manifests = arg.ReplaceAll(manifests, []byte("\n${1}- controller\n${1}- --cert-ttl="+certTTL.String()+"\n${1}- --cert-min-ttl=10s\n"))
	if _, err := c.Kubectl(ctx, bytes.NewReader(manifests), "apply", "--server-side", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	ns := deploy.DefaultNamespace
	applyGitRepository(t, c, sc)
	waitAvailable(t, c.Clientset, ns, "weft-controller", 2, 3*time.Minute)
	deadline := time.Now().Add(time.Minute)
	for {
		w, err := c.Clientset.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "weft-injector", metav1.GetOptions{})
		if err == nil && len(w.Webhooks) > 0 && len(w.Webhooks[0].ClientConfig.CABundle) > 0 {
			return
		}
		if time.Now().After(deadline) {
			logs, _ := c.Kubectl(ctx, nil, "-n", ns, "logs", "deploy/weft-controller", "--tail=20")
			t.Fatalf("weft-controller is Available but has not set the caBundle of MutatingWebhookConfiguration "+
				"weft-injector in a minute (err %v); its log:\n%s", err, logs)
		}
		time.Sleep(time.Second)
	}
}

// certTTL is the lifetime of the pods' workload certificates.
const certTTL = 40 * time.Second

// The ports source-controller listens on inside the cluster's netns.
const (
	storagePort = 19090
	scHealth    = "127.0.0.1:19091"
	scMetrics   = "127.0.0.1:19092"
)

// startFlux starts a git server (on the host, reached by the netns through
// Listen at the node address) and source-controller inside the netns with
// the admin kubeconfig. Why not a pod: `make images` builds no image of
// source-controller (only weft's own); its binary from `make tools` runs
// beside the cluster's other components instead, which is what a pod on
// the host network would be. Its artifacts are served at the node address,
// which pods reach.
func startFlux(t *testing.T, c *clustertest.Cluster) (*fluxtest.Repo, *sourceCtl) {
	ctx := context.Background()
	git := fluxtest.StartGitServer(t)
	ln, inside := c.Listen(t, clustertest.NodeIP+":0")
	go relay(ln, strings.TrimPrefix(git.URL, "http://"))
	repo := git.CreateRepo(t, "shop")
	sc := &sourceCtl{url: "http://" + inside + "/shop.git"}

	crds, err := filepath.EvalSymlinks(fluxtest.CRDDir()) // kubectl reads a linked folder as a file
	if err != nil {
		t.Fatalf("source-controller's CRDs (make tools): %v", err)
	}
	if _, err := c.Kubectl(ctx, nil, "apply", "--server-side", "-f", crds); err != nil {
		t.Fatal(err)
	}
	storage := t.TempDir()
	cmd := c.Command(context.Background(), filepath.Join(tooltest.BinDir(), "source-controller"),
		"--storage-path="+storage,
		"--storage-addr="+net.JoinHostPort(clustertest.NodeIP, strconv.Itoa(storagePort)),
		"--storage-adv-addr="+net.JoinHostPort(clustertest.NodeIP, strconv.Itoa(storagePort)),
		"--metrics-addr="+scMetrics, "--health-addr="+scHealth, "--events-addr=",
		"--enable-leader-election=false", "--watch-all-namespaces=true",
		"--log-level=info", "--log-encoding=console")
	cmd.Env = append(cmd.Env, "RUNTIME_NAMESPACE=flux-system")
	out := &tooltest.Output{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("--- source-controller log:\n%s", out)
		}
	})
	waitFor(t, "source-controller /readyz", time.Minute, func() error {
		resp, err := c.HTTPClient().Get("http://" + scHealth + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	})
	return repo, sc
}

// sourceCtl is what the test knows of its source-controller: the URL of
// the shop's repository as it reaches it.
type sourceCtl struct{ url string }

// relay accepts connections on ln and splices each to the address to.
func relay(ln net.Listener, to string) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := net.Dial("tcp", to)
			if err != nil {
				return
			}
			defer out.Close()
			go func() { _, _ = io.Copy(out, in); out.(*net.TCPConn).CloseWrite() }()
			_, _ = io.Copy(in, out)
		}()
	}
}

// commitShop commits the example shop (environments/: its CUE files,
// cue.mod and overlays) with the e2e overlay and its policy settings, the
// split of reviews replaced by split ("90/10" as written in the overlay),
// and extra files; it returns the commit's SHA.
func commitShop(t *testing.T, repo *fluxtest.Repo, split string, extra map[string]string) string {
	root := tooltest.RepoRoot()
	files := map[string]string{}
	src := filepath.Join(root, "environments")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && (rel == "deploy" || rel == "flux") {
			return filepath.SkipDir
		}
		if d.Type()&fs.ModeSymlink != 0 || d.IsDir() || !(strings.HasSuffix(p, ".cue") || strings.HasSuffix(p, ".yaml")) {
			return nil // cue.mod/pkg/weft.dev/weft links to the schema: weft brings its own
		}
		b, err := os.ReadFile(p)
		files["environments/"+filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	overlay := readFile(t, filepath.Join(root, "tests", "testdata", "mesh-e2e", "e2e.cue"))
	v1, v2, _ := strings.Cut(split, "/")
	overlay = strings.Replace(overlay, "to: {v1: 90, v2: 10}", "to: {v1: "+v1+", v2: "+v2+"}", 1)
	files["environments/e2e/e2e.cue"] = overlay
	files["environments/policies/weft.yaml"] = readFile(t, filepath.Join(root, "tests", "testdata", "mesh-e2e", "weft.yaml"))
	for k, v := range extra {
		files[k] = v
	}
	return repo.Commit(t, files, "reviews "+split)
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// applyGitRepository creates the GitRepository of the shop (as
// environments/flux/shop.yaml, with the test's repository) in weft's
// namespace and waits for its artifact.
func applyGitRepository(t *testing.T, c *clustertest.Cluster, sc *sourceCtl) {
	manifest := fmt.Sprintf(`apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: weft-shop, namespace: %s}
spec:
  interval: 10m
  url: %s
  ref: {branch: main}
  ignore: |
    /*
    !/environments/
`, deploy.DefaultNamespace, sc.url)
	if _, err := c.Kubectl(context.Background(), strings.NewReader(manifest), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "GitRepository weft-shop Ready", 2*time.Minute, func() error {
		out, err := c.Kubectl(context.Background(), nil, "-n", deploy.DefaultNamespace, "get", "gitrepositories.source.toolkit.fluxcd.io", "weft-shop",
			"-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.artifact.revision} {.status.conditions[?(@.type=="Ready")].message}`)
		if err != nil {
			return err
		}
		if strings.HasPrefix(string(out), "True ") {
			return nil
		}
		return fmt.Errorf("GitRepository: %s", out)
	})
}

// applyMesh creates the Mesh of the shop (as environments/flux/shop.yaml,
// in the environment e2e) and waits until it is Ready.
func applyMesh(t *testing.T, c *clustertest.Cluster) {
	manifest := fmt.Sprintf(`apiVersion: mesh.weft.dev/v1alpha1
kind: Mesh
metadata: {name: shop, namespace: %s}
spec:
  sourceRef: {kind: GitRepository, name: weft-shop}
  path: ./environments
  environment: e2e
  interval: 10m
  timeout: 2m
`, deploy.DefaultNamespace)
	if _, err := c.Kubectl(context.Background(), strings.NewReader(manifest), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	waitMeshRevision(t, c, "", 3*time.Minute)
}

// waitMeshRevision waits until the Mesh is Ready with its last applied
// revision containing sha ("" for any) and returns it.
func waitMeshRevision(t *testing.T, c *clustertest.Cluster, sha string, timeout time.Duration) string {
	var rev string
	waitFor(t, "Mesh shop Ready at "+sha, timeout, func() error {
		out, err := c.Kubectl(context.Background(), nil, "-n", deploy.DefaultNamespace, "get", "meshes.mesh.weft.dev", "shop",
			"-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.lastAppliedRevision} {.status.conditions[?(@.type=="Ready")].message}`)
		if err != nil {
			return err
		}
		f := strings.Fields(string(out))
		if len(f) >= 2 && f[0] == "True" && strings.Contains(f[1], sha) {
			rev = f[1]
			return nil
		}
		return fmt.Errorf("Mesh: %s", out)
	})
	return rev
}

// app is one Deployment of the shop.
type app struct {
	name, service, version, sa string
	port                       int32
	replicas                   int32
	labels                     map[string]string
	busybox                    bool // a client: sleeps, the test execs wget in it
}

func shopApps() []app {
	return []app{
		{name: "frontend", service: "frontend", version: "v1", sa: "frontend", port: 8080, replicas: 1, busybox: true},
		{name: "intruder", service: "intruder", version: "v1", sa: "intruder", port: 8086, replicas: 1, busybox: true},
		{name: "reviews-v1", service: "reviews", version: "v1", sa: "reviews", port: 9080, replicas: 2},
		{name: "reviews-v2", service: "reviews", version: "v2", sa: "reviews", port: 9080, replicas: 1, labels: map[string]string{"track": "canary"}},
		{name: "orders", service: "orders", version: "v1", sa: "orders", port: 8083, replicas: 1},
		{name: "orders-shadow", service: "orders-shadow", version: "v2", sa: "orders-shadow", port: 8085, replicas: 1},
		{name: "catalog", service: "catalog", version: "v1", sa: "catalog", port: 8081, replicas: 1},
	}
}

// deployShop creates in the namespace shop a
// ServiceAccount and a Service per mesh service and the Deployments, and
// waits until all are Available.
func deployShop(t *testing.T, c *clustertest.Cluster) {
	ctx := context.Background()
	cs := c.Clientset
	ns := shopNS
	services := map[string]int32{}
	var aliases []corev1.HostAlias
	for _, a := range shopApps() {
		if _, ok := services[a.service]; ok {
			continue
		}
		services[a.service] = a.port
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: a.sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: a.service},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": a.service},
				Ports:    []corev1.ServicePort{{Name: "http", Port: a.port, TargetPort: intstr.FromInt32(a.port)}},
			},
		}
		created, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		aliases = append(aliases, corev1.HostAlias{IP: created.Spec.ClusterIP, Hostnames: []string{a.service, a.service + "." + ns}})
	}
	shopAliases = aliases
	for _, a := range shopApps() {
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, meshDeployment(a), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range shopApps() {
		waitAvailable(t, cs, ns, a.name, a.replicas, 3*time.Minute)
	}
}

// shopAliases map the shop's Service names to their ClusterIPs in the
// clients' /etc/hosts. The cluster's DNS (internal/clustertest's, which
// reads the apiserver on every query; no CoreDNS) takes 0.5-0.8 s per
// lookup on a loaded machine, which would make a 1,000-request loop of
// busybox wget (a lookup each) measure the test's DNS instead of the mesh.
// The outbound listener routes by Host ("reviews:9080"), as with DNS.
var shopAliases []corev1.HostAlias

func meshDeployment(a app) *appsv1.Deployment {
	labels := map[string]string{"app": a.service, "version": a.version}
	for k, v := range a.labels {
		labels[k] = v
	}
	sel := map[string]string{"app": a.service, "version": a.version}
	ctr := corev1.Container{
		Name:            "app",
		Image:           images.Ref(images.WeftName, images.DefaultTag),
		ImagePullPolicy: corev1.PullNever,
		Args:            []string{"demo-app", "--addr", fmt.Sprintf("0.0.0.0:%d", a.port), "--service", a.service, "--version", a.version},
		Env: []corev1.EnvVar{{Name: "WEFT_INSTANCE", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"},
		}}},
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: a.port}},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/_demo/count", Port: intstr.FromString("http")}},
			PeriodSeconds: 1,
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: ptr(true), AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		// The app keeps accepting for 2 s after its pod is deleted, while
		// the EndpointSlice drops it and weft pushes that to the callers'
		// Envoys (as without a mesh, where kube-proxy's rules trail the
		// same way): demo-app stops listening at SIGTERM.
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 2}}},
	}
	if a.busybox {
		ctr.Image = images.Ref(images.TestAppName, images.DefaultTag)
		ctr.Command = []string{"sleep", "3600"}
		ctr.Args, ctr.Ports, ctr.ReadinessProbe, ctr.Lifecycle = nil, nil, nil, nil
	}
	var aliases []corev1.HostAlias
	var volumes []corev1.Volume
	if a.busybox {
		aliases = shopAliases
		// A writable /tmp (the root file system is read-only).
		volumes = []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		ctr.VolumeMounts = []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: a.name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(a.replicas),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            a.sa,
					HostAliases:                   aliases,
					Volumes:                       volumes,
					TerminationGracePeriodSeconds: ptr(int64(10)),
					Containers:                    []corev1.Container{ctr},
				},
			},
		},
	}
}

func firstPod(t *testing.T, c *clustertest.Cluster, ns, selector string) corev1.Pod {
	t.Helper()
	pods := runningPods(t, c.Clientset, ns, selector)
	if len(pods) == 0 {
		t.Fatalf("no running pod %s in %s", selector, ns)
	}
	return pods[0]
}

// testInjected: every pod of the shop was injected by the webhook (the
// init container weft-init, the native sidecar weft-proxy, the
// annotation), its containers are all ready (2/2), its agent holds the
// SPIFFE identity of its service account, and `weft status` counts the
// proxies.
func testInjected(t *testing.T, c *clustertest.Cluster, weftBin string) {
	ctx := context.Background()
	pods := runningPods(t, c.Clientset, shopNS, "")
	want := int32(0)
	for _, a := range shopApps() {
		want += a.replicas
	}
	if len(pods) != int(want) {
		t.Errorf("%d running pods in %s, want %d", len(pods), shopNS, want)
	}
	out, err := c.Kubectl(ctx, nil, "-n", shopNS, "get", "pods")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kubectl -n shop get pods:\n%s", out)
	for _, p := range pods {
		var inits []string
		for _, ic := range p.Spec.InitContainers {
			inits = append(inits, ic.Name)
		}
		if len(inits) < 2 || inits[0] != inject.InitContainerName || inits[1] != inject.ProxyContainerName {
			t.Errorf("pod %s: init containers %v, want %s then %s", p.Name, inits, inject.InitContainerName, inject.ProxyContainerName)
		}
		if p.Annotations[inject.VersionAnnotation] == "" {
			t.Errorf("pod %s has no annotation %s", p.Name, inject.VersionAnnotation)
		}
		ready := 0 // what kubectl's READY counts: running and ready
		for _, s := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			if s.Ready && s.State.Running != nil {
				ready++
			}
		}
		if ready != 2 {
			t.Errorf("pod %s: %d containers ready, want 2 (app and weft-proxy)", p.Name, ready)
		}
		st := readAgentStatus(t, c, p)
		if wantID := "spiffe://shop.example/ns/shop/sa/" + p.Spec.ServiceAccountName; !st.Ready || st.Identity != wantID {
			t.Errorf("agent /status of %s: ready %v identity %q, want ready and %s", p.Name, st.Ready, st.Identity, wantID)
		}
	}
	status := exec.Command(weftBin, "status", "--kubeconfig", c.HostKubeconfig(t), "-n", deploy.DefaultNamespace)
	b, err := status.CombinedOutput()
	t.Logf("weft status:\n%s", b)
	if err != nil {
		t.Errorf("weft status: %v", err)
	}
	// The Mesh's status counts the proxies connected to the leading
	// replica (each replica serves its own streams; the Service spreads
	// the agents over both), so between 1 and all of them.
	if mm := regexp.MustCompile(`proxies:\s+(\d+) connected`).FindSubmatch(b); mm == nil {
		t.Errorf("weft status shows no connected proxies:\n%s", b)
	} else if n, _ := strconv.Atoi(string(mm[1])); n < 1 || n > int(want) {
		t.Errorf("weft status: %d proxies connected, want 1..%d", n, want)
	}
}

// meshClient runs busybox wget in the app container of a meshed client
// pod: its requests leave through the pod's iptables redirect and Envoy.
type meshClient struct {
	c   *clustertest.Cluster
	pod corev1.Pod
}

// result is one request's outcome: the status code (0: no HTTP answer)
// and demo-app's answer.
type result struct {
	code int
	raw  string
	ans  struct {
		Service  string            `json:"service"`
		Version  string            `json:"version"`
		Instance string            `json:"instance"`
		Headers  map[string]string `json:"headers"`
	}
}

var statusRE = regexp.MustCompile(`HTTP/1\.[01] (\d{3})`)

// loop is a shell loop of n wget runs with args; each prints one line,
// "OK <body>" or "ERR <wget's message>".
func loop(n int, args string) string {
	return fmt.Sprintf(`i=0; while [ $i -lt %d ]; do i=$((i+1)); if out=$(wget -q -O - %s 2>&1); then echo "OK $out" | tr '\n' ' '; else echo "ERR $out" | tr '\n' ' '; fi; echo; done`, n, args)
}

// sh runs script in the client pod's app container.
func (m *meshClient) sh(t *testing.T, script string) string {
	t.Helper()
	out, err := m.c.Kubectl(context.Background(), nil, "-n", m.pod.Namespace, "exec", m.pod.Name, "-c", "app", "--", "sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func (m *meshClient) run(t *testing.T, n int, args string) []result {
	t.Helper()
	return parseResults(t, m.sh(t, loop(n, args)), n)
}

func parseResults(t *testing.T, out string, n int) []result {
	t.Helper()
	var rs []result
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var r result
		r.raw = line
		switch {
		case strings.HasPrefix(line, "OK "):
			r.code = 200
			body := line[3:]
			if i := strings.Index(body, "{"); i >= 0 {
				_ = json.Unmarshal([]byte(body[i:]), &r.ans)
			}
		case strings.HasPrefix(line, "ERR "):
			if mm := statusRE.FindStringSubmatch(line); mm != nil {
				r.code, _ = strconv.Atoi(mm[1])
			}
		default:
			continue
		}
		rs = append(rs, r)
	}
	if n > 0 && len(rs) != n {
		t.Fatalf("%d results, want %d:\n%s", len(rs), n, out)
	}
	return rs
}

func (m *meshClient) codes(t *testing.T, n int, args string) map[int]int {
	t.Helper()
	out := map[int]int{}
	for _, r := range m.run(t, n, args) {
		out[r.code]++
	}
	return out
}

// v2Share sends n requests to url and returns the percentage answered by
// version v2; any answer other than 200 fails t.
func (m *meshClient) v2Share(t *testing.T, n int, url string) float64 {
	t.Helper()
	v2 := 0
	for _, r := range m.run(t, n, url) {
		if r.code != 200 {
			t.Fatalf("GET %s: %d %s", url, r.code, r.raw)
		}
		if r.ans.Version == "v2" {
			v2++
		}
	}
	return 100 * float64(v2) / float64(n)
}

// underLoad runs a bounded load (4 loops of 60 requests to reviews, each
// held 100 ms by the app, about 6 s) from the client pod, calls action 1.5
// s into it, and returns the lines of the failed requests ("" if none).
func (m *meshClient) underLoad(t *testing.T, action func()) string {
	t.Helper()
	return m.load(t, 60, action)
}

// load is underLoad with perLoop requests in each of the 4 loops.
func (m *meshClient) load(t *testing.T, perLoop int, action func()) string {
	t.Helper()
	// Each loop writes a file of its own: lines of concurrent writers
	// to one pipe would interleave.
	script := fmt.Sprintf(`rm -f /tmp/load.*; for w in 1 2 3 4; do ( %s ) > /tmp/load.$w & done; wait; cat /tmp/load.*`,
		loop(perLoop, "'http://reviews:9080/?delay=100ms'"))
	done := make(chan string)
	go func() {
		out, err := m.c.Kubectl(context.Background(), nil, "-n", m.pod.Namespace, "exec", m.pod.Name, "-c", "app", "--", "sh", "-c", script)
		if err != nil {
			done <- "ERR kubectl exec: " + err.Error()
			return
		}
		done <- string(out)
	}()
	time.Sleep(1500 * time.Millisecond)
	action()
	out := <-done
	var failed []string
	rs := parseResults(t, out, 0)
	for _, r := range rs {
		if r.code != 200 {
			failed = append(failed, r.raw)
		}
	}
	t.Logf("%d requests under load, %d failed", len(rs), len(failed))
	if len(rs) != 4*perLoop {
		t.Errorf("%d results of %d requests:\n%s", len(rs), 4*perLoop, out)
	}
	return strings.Join(failed, "\n")
}

// appGet GETs path from a pod's app on its port through `kubectl
// port-forward` (the kubelet connects on the pod's loopback, which the
// redirect leaves alone): for demo-app's /_demo/count of a meshed pod.
func appGet(t *testing.T, c *clustertest.Cluster, pod corev1.Pod, port int32, path string) []byte {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	local := 20000 + int(port)%10000
	cmd := c.Command(ctx, filepath.Join(tooltest.BinDir(), "kubectl"), "-n", pod.Namespace, "port-forward", "pod/"+pod.Name, fmt.Sprintf("%d:%d", local, port))
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	first, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(first, "Forwarding from") {
		t.Fatalf("kubectl port-forward %s: %v %s", pod.Name, err, first)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	resp, err := c.HTTPClient().Get(fmt.Sprintf("http://127.0.0.1:%d%s", local, path))
	if err != nil {
		t.Fatalf("GET %s of pod %s: %v", path, pod.Name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// counts sums demo-app's /_demo/count over the running pods of selector.
func counts(t *testing.T, c *clustertest.Cluster, selector string, port int32) int {
	t.Helper()
	sum := 0
	for _, p := range runningPods(t, c.Clientset, shopNS, selector) {
		var v struct{ Count int }
		if err := json.Unmarshal(appGet(t, c, p, port, "/_demo/count"), &v); err != nil {
			t.Fatal(err)
		}
		sum += v.Count
	}
	return sum
}

// testRetries: with every reviews pod failing half of the requests (503),
// the route's retries (2, on 5xx) hide most of it from the caller: about
// 12.5% fail instead of 50%, and the apps see more requests than were sent.
func testRetries(t *testing.T, c *clustertest.Cluster, m *meshClient) {
	const n = 200
	before := counts(t, c, "app=reviews", 9080)
	codes := m.codes(t, n, "'http://reviews:9080/?fail=0.5'")
	served := counts(t, c, "app=reviews", 9080) - before
	t.Logf("%d requests, each failing with probability 0.5 at the app: the caller saw %v; the apps served %d", n, codes, served)
	if codes[200]+codes[503] != n || codes[503] > n/4 {
		t.Errorf("want at most %d of %d answers 503 (retries: 12.5%% expected), the rest 200: got %v", n/4, n, codes)
	}
	if served < n*13/10 {
		t.Errorf("the reviews apps served %d requests for %d sent: no retries", served, n)
	}
}

// testMirror: the orders route create mirrors 10% of the POSTs to
// orders-shadow, whose answers nobody sees.
func testMirror(t *testing.T, c *clustertest.Cluster, m *meshClient) {
	const n = 200
	before := counts(t, c, "app=orders-shadow", 8085)
	rs := m.run(t, n, `--post-data '{"item":1}' http://orders:8083/orders`)
	for _, r := range rs {
		if r.code != 200 || r.ans.Service != "orders" {
			t.Fatalf("POST /orders should be answered by orders: %d %s", r.code, r.raw)
		}
	}
	var copies int
	waitFor(t, "the mirrored copies", 10*time.Second, func() error {
		copies = counts(t, c, "app=orders-shadow", 8085) - before
		if copies < 5 {
			return fmt.Errorf("orders-shadow received %d copies", copies)
		}
		return nil
	})
	t.Logf("orders-shadow received %d copies of %d POSTs (mirror 10%%)", copies, n)
	if copies > 45 {
		t.Errorf("orders-shadow received %d copies of %d POSTs, want about 10%%", copies, n)
	}
}

// testMTLS: a pod without a sidecar is refused by a meshed pod's inbound
// (plain text to its port); the intruder, which orders' authz does not
// admit, gets 403; the frontend, which it admits, 200.
func testMTLS(t *testing.T, c *clustertest.Cluster, m *meshClient) {
	ctx := context.Background()
	createNamespace(t, c.Clientset, outsideNS)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "plain"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(1)),
			HostAliases:                   shopAliases,
			Containers: []corev1.Container{{
				Name: "app", Image: images.Ref(images.TestAppName, images.DefaultTag), ImagePullPolicy: corev1.PullNever,
				Command: []string{"sleep", "3600"},
			}},
		},
	}
	if _, err := c.Clientset.CoreV1().Pods(outsideNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Kubectl(ctx, nil, "-n", outsideNS, "wait", "--for=condition=Ready", "pod/plain", "--timeout=90s"); err != nil {
		t.Fatal(err)
	}
	p, err := c.Clientset.CoreV1().Pods(outsideNS).Get(ctx, "plain", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.InitContainers) != 0 {
		t.Errorf("pod outside/plain was injected: %v", p.Spec.InitContainers)
	}
	orders := firstPod(t, c, shopNS, "app=orders")
	before := counts(t, c, "app=orders", 8083)
	plain := &meshClient{c: c, pod: *p}
	for _, target := range []string{fmt.Sprintf("http://%s:8083/orders/1", orders.Status.PodIP), "http://orders.shop:8083/orders/1"} {
		r := plain.run(t, 1, target)[0]
		if r.code != 0 {
			t.Errorf("plain text from a pod without a sidecar to %s: got HTTP %d, want no answer: %s", target, r.code, r.raw)
		} else {
			t.Logf("plain text to %s refused: %s", target, r.raw)
		}
	}
	if after := counts(t, c, "app=orders", 8083); after != before {
		t.Errorf("orders' app served %d plain-text requests", after-before)
	}

	intruder := &meshClient{c: c, pod: firstPod(t, c, shopNS, "app=intruder")}
	r := intruder.run(t, 1, "http://orders:8083/orders/1")[0]
	if r.code != 403 {
		t.Errorf("intruder (not in orders' authz.allow) GET /orders/1: got %d, want 403: %s", r.code, r.raw)
	}
	time.Sleep(time.Second) // orders' read route is rate limited
	r = m.run(t, 1, "http://orders:8083/orders/1")[0]
	if r.code != 200 || r.ans.Service != "orders" {
		t.Errorf("frontend (in orders' authz.allow) GET /orders/1: got %d, want 200 from orders: %s", r.code, r.raw)
	}
}

// testGitOps commits 10/90 to the mesh repository, asks source-controller
// to fetch it now (reconcile.fluxcd.io/requestedAt, as `flux reconcile
// source git` does) and times the moment the frontend's requests shift to
// v2; then commits 90/10 back and times the shift back.
func testGitOps(t *testing.T, c *clustertest.Cluster, m *meshClient, repo *fluxtest.Repo) {
	for _, step := range []struct {
		split    string
		shifted  func(v2 float64) bool
		min, max float64
	}{
		{"10/90", func(v2 float64) bool { return v2 >= 75 }, 82, 97},
		{"90/10", func(v2 float64) bool { return v2 <= 25 }, 3, 18},
	} {
		start := time.Now()
		sha := commitShop(t, repo, step.split, nil)
		requestReconcile(t, c)
		var took time.Duration
		for {
			// 20 requests: under the old split, 15 or more of them on the
			// new side has a probability below 1e-9.
			if step.shifted(m.v2Share(t, 20, "http://reviews:9080/")) {
				took = time.Since(start)
				break
			}
			if time.Since(start) > 2*time.Minute {
				t.Fatalf("the traffic did not shift to %s in 2m after the commit", step.split)
			}
		}
		rev := waitMeshRevision(t, c, sha, time.Minute)
		v2 := m.v2Share(t, 200, "http://reviews:9080/")
		t.Logf("GitOps: commit %s (reviews %s) -> requestedAt -> source-controller -> weft -> Envoys of the pods: "+
			"traffic shifted %s after the commit (goal <= 5s); then %.1f%% v2 over 200 requests; Mesh at %s",
			sha[:8], step.split, took.Round(10*time.Millisecond), v2, rev)
		if v2 < step.min || v2 > step.max {
			t.Errorf("after the commit of %s, v2 got %.1f%% of 200 requests, want %.0f..%.0f", step.split, v2, step.min, step.max)
		}
	}
}

// requestReconcile asks source-controller to fetch the GitRepository now.
func requestReconcile(t *testing.T, c *clustertest.Cluster) {
	at := time.Now().Format(time.RFC3339Nano)
	if _, err := c.Kubectl(context.Background(), nil, "-n", deploy.DefaultNamespace, "annotate", "--overwrite",
		"gitrepositories.source.toolkit.fluxcd.io/weft-shop", "reconcile.fluxcd.io/requestedAt="+at); err != nil {
		t.Fatal(err)
	}
}

// testFirstRequest: a frontend pod whose app's first act is a request to
// reviews succeeds, because the native sidecar was ready (listeners and
// certificate) before the app started.
func testFirstRequest(t *testing.T, c *clustertest.Cluster) {
	d := meshDeployment(app{name: "first", service: "frontend", version: "v1", sa: "frontend", busybox: true})
	spec := d.Spec.Template.Spec
	spec.RestartPolicy = corev1.RestartPolicyNever
	spec.Containers[0].Command = []string{"wget", "-q", "-O", "-", "http://reviews:9080/first"}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "first", Labels: d.Spec.Template.Labels}, Spec: spec}
	logs := runPod(t, c.Clientset, shopNS, pod)
	if !strings.Contains(logs["app"], `"service":"reviews"`) {
		t.Errorf("the first request of the app: %q", logs["app"])
	}
}

// testControllerKilled kills the controller replica leading (SIGKILL:
// grace period 0) under load.
func testControllerKilled(t *testing.T, c *clustertest.Cluster, m *meshClient) {
	ctx := context.Background()
	ns := deploy.DefaultNamespace
	pods := runningPods(t, c.Clientset, ns, "app.kubernetes.io/component=controller")
	if len(pods) != 2 {
		t.Fatalf("%d controller pods, want 2", len(pods))
	}
	victim := pods[0].Name
	if l, err := c.Clientset.CoordinationV1().Leases(ns).Get(ctx, "weft-controller-leader", metav1.GetOptions{}); err == nil && l.Spec.HolderIdentity != nil {
		for _, p := range pods {
			if strings.HasPrefix(*l.Spec.HolderIdentity, p.Name) {
				victim = p.Name
			}
		}
	}
	fails := m.underLoad(t, func() {
		if err := c.Clientset.CoreV1().Pods(ns).Delete(ctx, victim, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
			t.Error(err)
		}
	})
	if fails != "" {
		t.Errorf("killing controller %s under load: failed requests:\n%s", victim, fails)
	}
	waitAvailable(t, c.Clientset, ns, "weft-controller", 2, 2*time.Minute)
}

// agentStatus is the part of the agent's /status the test reads.
type agentStatus struct {
	Ready    bool      `json:"ready"`
	Identity string    `json:"identity"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"notAfter"`
	Renewals int       `json:"renewals"`
}

func readAgentStatus(t *testing.T, c *clustertest.Cluster, p corev1.Pod) agentStatus {
	t.Helper()
	var st agentStatus
	resp, err := c.HTTPClient().Get(fmt.Sprintf("http://%s:%d/status", p.Status.PodIP, inject.HealthPort))
	if err != nil {
		t.Fatalf("agent /status of %s: %v", p.Name, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("agent /status of %s: %v", p.Name, err)
	}
	return st
}

// testRotation: with workload certificates of certTTL (the controller's
// --cert-ttl), the client's and the servers' agents renew theirs during a
// load of about 30 s (4 loops of 250 requests of 100 ms), and no request
// fails.
func testRotation(t *testing.T, c *clustertest.Cluster, m *meshClient) {
	pods := append([]corev1.Pod{m.pod}, runningPods(t, c.Clientset, shopNS, "app=reviews")...)
	before := map[string]agentStatus{}
	for _, p := range pods {
		st := readAgentStatus(t, c, p)
		if life := time.Until(st.NotAfter); life > certTTL+5*time.Second {
			t.Fatalf("pod %s: certificate valid for %s more, want at most --cert-ttl %s", p.Name, life.Round(time.Second), certTTL)
		}
		before[p.Name] = st
	}
	fails := m.load(t, 250, func() {})
	if fails != "" {
		t.Errorf("failed requests while the certificates rotate:\n%s", fails)
	}
	for _, p := range pods {
		st := readAgentStatus(t, c, p)
		b := before[p.Name]
		t.Logf("pod %s: renewals %d -> %d, serial %s -> %s", p.Name, b.Renewals, st.Renewals, short(b.Serial), short(st.Serial))
		if st.Renewals <= b.Renewals || st.Serial == b.Serial || !st.Ready {
			t.Errorf("pod %s did not renew its certificate during the load: renewals %d -> %d, serial %s -> %s, ready %v",
				p.Name, b.Renewals, st.Renewals, b.Serial, st.Serial, st.Ready)
		}
	}
}

func short(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
