package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/runtime/conditions"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/weft-dev/weft/environments/deploy"
	"github.com/weft-dev/weft/internal/fluxtest"
	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/internal/meshgen"
	"github.com/weft-dev/weft/internal/tooltest"
	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/controller"
)

// cluster is a real apiserver + etcd and source-controller with a
// GitRepository "gen" in weft-system holding a generated mesh.
type cluster struct {
	env      *kubetest.Env
	sc       *fluxtest.SourceController
	revision string
}

// genFiles is a generated mesh of n services that passes every default
// policy (a service timeout on each, as the policies benchmark's clean
// meshes).
func genFiles(n int) map[string]string {
	src := meshgen.Source(meshgen.Spec{Services: n, Endpoints: 2, Calls: 2})
	src = strings.ReplaceAll(src, "\t\t\tports: http: port: 8080\n", "\t\t\tports: http: port: 8080\n\t\t\ttimeout: \"3s\"\n")
	return map[string]string{
		"cue.mod/module.cue": "module: \"example.com/gen\"\nlanguage: version: \"v0.17.0\"\n",
		"mesh.cue":           src,
	}
}

func startCluster(tb testing.TB, services int) *cluster {
	tb.Helper()
	env := kubetest.Start(tb, kubetest.Options{Scheme: controller.Scheme()})
	env.InstallCRDs(tb, filepath.Join(tooltest.RepoRoot(), "environments", "deploy", "crd"))
	srv := fluxtest.StartGitServer(tb)
	sc := fluxtest.StartSourceController(tb, env)
	for _, ns := range []string{"weft-system", "gen"} {
		if err := env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			tb.Fatal(err)
		}
	}
	repo := srv.CreateRepo(tb, "gen")
	rev := fluxtest.Revision(fluxtest.Branch, repo.Commit(tb, genFiles(services), "generated"))
	sc.CreateGitRepository(tb, "weft-system", "gen", repo.URL)
	sc.WaitForArtifact(tb, client.ObjectKey{Namespace: "weft-system", Name: "gen"}, rev, 2*time.Minute)
	return &cluster{env: env, sc: sc, revision: rev}
}

// runningController is `weft controller` as a process.
type runningController struct {
	cmd                               *exec.Cmd
	metrics, health, xds, ca, webhook string
	out                               *tooltest.Output
}

// startController runs the weft binary with the arguments of the
// Deployment that `weft install --export` renders, its addresses moved
// to free loopback ports and --trust-domain set to the generated mesh's:
// the flags contract of environments/deploy.
func startController(tb testing.TB, c *cluster) *runningController {
	tb.Helper()
	return startControllerWith(tb, c.env.Kubeconfig, map[string]string{"trust-domain": "gen.example"})
}

// startControllerWith runs the controller as startController does, with
// kubeconfig and flags set (replacing the Deployment's, or added).
func startControllerWith(tb testing.TB, kubeconfig string, flags map[string]string) *runningController {
	tb.Helper()
	args := deploymentArgs(tb)
	ports := tooltest.FreePorts(tb, 5)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	moved := map[string]string{"xds-address": addr(0), "ca-address": addr(1), "metrics-bind-address": addr(2),
		"health-probe-bind-address": addr(3), "webhook-address": addr(4)}
	maps.Copy(moved, flags)
	rc := &runningController{xds: moved["xds-address"], ca: moved["ca-address"], metrics: moved["metrics-bind-address"],
		health: moved["health-probe-bind-address"], webhook: moved["webhook-address"], out: &tooltest.Output{}}
	for i, a := range args {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if v, ok := moved[name]; ok {
			args[i] = "--" + name + "=" + v
			delete(moved, name)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(moved)) {
		args = append(args, "--"+k+"="+moved[k])
	}
	rc.cmd = exec.Command(weft(tb), args...)
	rc.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "POD_NAMESPACE=weft-system", "POD_NAME=weft-controller-0")
	rc.cmd.Stdout, rc.cmd.Stderr = rc.out, rc.out
	if err := rc.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = rc.cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = rc.cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = rc.cmd.Process.Kill()
			<-exited
		}
		if tb.Failed() {
			tb.Logf("--- weft controller output:\n%s", rc.out.String())
		}
	})
	return rc
}

// deploymentArgs are the controller container's args in the rendered
// Deployment.
func deploymentArgs(tb testing.TB) []string {
	tb.Helper()
	b, err := deploy.Render(deploy.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		if !strings.Contains(doc, "kind: Deployment") {
			continue
		}
		var d appsv1.Deployment
		if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
			tb.Fatal(err)
		}
		return append([]string(nil), d.Spec.Template.Spec.Containers[0].Args...)
	}
	tb.Fatal("no Deployment in weft install --export")
	return nil
}

// createMesh creates the Mesh gen of the GitRepository gen.
func (c *cluster) createMesh(tb testing.TB) {
	tb.Helper()
	m := &meshv1.Mesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: "gen"},
		Spec: meshv1.MeshSpec{
			SourceRef: meshv1.SourceReference{Kind: meshv1.GitRepositoryKind, Name: "gen"},
			Interval:  metav1.Duration{Duration: time.Hour},
		},
	}
	if err := c.env.Client.Create(context.Background(), m); err != nil {
		tb.Fatal(err)
	}
}

// waitReady waits until the Mesh gen is Ready with the cluster's
// revision.
func (c *cluster) waitReady(tb testing.TB, rc *runningController, timeout time.Duration) *meshv1.Mesh {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m := &meshv1.Mesh{}
		err := c.env.Client.Get(context.Background(), client.ObjectKey{Namespace: "weft-system", Name: "gen"}, m)
		if err == nil && conditions.IsReady(m) && m.Status.LastAppliedRevision == c.revision {
			return m
		}
		if time.Now().After(deadline) {
			tb.Fatalf("Mesh gen not Ready with %s after %s (get: %v): %s: %s", c.revision, timeout, err,
				conditions.GetReason(m, meta.ReadyCondition), conditions.GetMessage(m, meta.ReadyCondition))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func get(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestControllerBinary runs the weft binary as the Deployment of `weft
// install --export` runs it (its flags, leader election included)
// against a real apiserver and source-controller, and the CLI commands a
// platform engineer runs against that cluster: weft get meshes, weft
// status --kubeconfig, weft reconcile mesh.
func TestControllerBinary(t *testing.T) {
	c := startCluster(t, 3)
	rc := startController(t, c)
	c.createMesh(t)
	c.waitReady(t, rc, 2*time.Minute)
	waitReadyz(t, rc, time.Minute) // the webhook certificate loads on its own schedule
	if _, body := get(t, "http://"+rc.metrics+"/metrics"); !strings.Contains(body, `weft_served_revision_info{revision="`+c.revision+`"} 1`) {
		t.Errorf("/metrics does not show the served revision %s", c.revision)
	}
	kc := []string{"--kubeconfig", c.env.Kubeconfig, "--namespace", "weft-system"}

	r := weftRun(t, "", append([]string{"get", "meshes"}, kc...)...)
	short := regexp.QuoteMeta(c.revision[:len("main@sha1:")+8])
	if r.code != 0 || !regexp.MustCompile(`^NAME  REVISION +SUSPENDED  READY  MESSAGE\ngen   `+short+`  False +True   Applied revision: `+regexp.QuoteMeta(c.revision)+"\n$").MatchString(r.stdout) {
		t.Errorf("weft get meshes: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = weftRun(t, "", append([]string{"status", "gen"}, kc...)...)
	for _, want := range []string{"Mesh weft-system/gen: GitRepository/weft-system/gen, path .\n", "  Ready:       True Succeeded",
		"  applied:     " + c.revision + "\n", "  proxies:     0 connected, 0 in sync, 0 NACKing\n"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("weft status --kubeconfig: exit %d, want %q in\n%s%s", r.code, want, r.stdout, r.stderr)
		}
	}

	r = weftRun(t, "", append([]string{"reconcile", "mesh", "gen", "--with-source"}, kc...)...)
	if r.code != 0 || !strings.HasSuffix(r.stdout, "◎ waiting for Mesh reconciliation\n✔ applied revision "+c.revision+"\n") ||
		!strings.HasPrefix(r.stdout, "► annotating GitRepository gen in weft-system namespace\n") {
		t.Errorf("weft reconcile mesh --with-source: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r = weftRun(t, "", append([]string{"status", "missing"}, kc...)...)
	if r.code != 1 || !strings.Contains(r.stderr, `Mesh weft-system/missing: meshes.mesh.weft.dev "missing" not found`) {
		t.Errorf("weft status of a missing Mesh: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// BenchmarkControllerRSS: the memory of the `weft controller` process
// serving a 1,000-service Mesh (2,000 proxy classes) reconciled from a
// Flux artifact: its resident set once the Mesh is Ready (rss-MB) and
// its peak (peak-rss-MB, VmHWM), and the time from the Mesh's creation
// to Ready (ready-s: fetch, load, vet, compile, publish, NetworkPolicies).
func BenchmarkControllerRSS(b *testing.B) {
	for range b.N {
		c := startCluster(b, 1000)
		rc := startController(b, c)
		time.Sleep(time.Second) // the controller's caches and leader election settle first
		start := time.Now()
		c.createMesh(b)
		c.waitReady(b, rc, 5*time.Minute)
		b.ReportMetric(time.Since(start).Seconds(), "ready-s")
		rss, peak := procMemory(b, rc.cmd.Process.Pid)
		b.ReportMetric(rss, "rss-MB")
		b.ReportMetric(peak, "peak-rss-MB")
	}
}

// procMemory reads VmRSS and VmHWM of a process, in MB.
func procMemory(tb testing.TB, pid int) (rss, peak float64) {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		f := strings.Fields(string(line))
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}
