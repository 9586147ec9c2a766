package controller_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/fluxtest"
	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/internal/tooltest"
	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/controller"
	"github.com/weft-dev/weft/reconciler/xds"
)

// Namespaces of the tests: the control plane's (Mesh, GitRepository)
// and the mesh services' (NetworkPolicies).
const (
	controlNS = "weft-system"
	meshNS    = "shop"
)

// plane is a real etcd + kube-apiserver, Flux's source-controller, a git
// server with the mesh repository, and `weft controller` running
// in-process against them.
type plane struct {
	t    *testing.T
	env  *kubetest.Env
	sc   *fluxtest.SourceController
	repo *fluxtest.Repo
	ctrl *controller.Controller
	// stopFirst stops the controller startPlane started.
	stopFirst func()
	c         client.Client
	ctx       context.Context
}

// startPlane starts everything; the controller gets the options opts
// (its addresses, a short status interval and the Envoy port hook are
// set here).
func startPlane(t *testing.T, opts controller.Options) *plane {
	t.Helper()
	env := kubetest.Start(t, kubetest.Options{Scheme: controller.Scheme()})
	env.InstallCRDs(t, filepath.Join(tooltest.RepoRoot(), "environments", "deploy", "crd"))
	srv := fluxtest.StartGitServer(t)
	sc := fluxtest.StartSourceController(t, env)
	p := &plane{t: t, env: env, sc: sc, repo: srv.CreateRepo(t, "shop"), c: env.Client, ctx: context.Background()}
	for _, ns := range []string{controlNS, meshNS} {
		if err := p.c.Create(p.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	p.ctrl, p.stopFirst = p.runController(opts, "127.0.0.1:0")
	return p
}

// waitGone waits until the object key of obj's kind is not found.
func (p *plane) waitGone(obj client.Object, key client.ObjectKey) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := p.c.Get(p.ctx, key, obj)
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%T %s not gone after 30s (get: %v)", obj, key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runController runs a controller with opts on xdsAddr against the
// plane; stop stops it (t.Cleanup also does).
func (p *plane) runController(opts controller.Options, xdsAddr string) (*controller.Controller, func()) {
	t := p.t
	t.Helper()
	opts.XDSAddress, opts.MetricsAddress, opts.HealthAddress = xdsAddr, "127.0.0.1:0", "0"
	opts.Namespace = controlNS
	if opts.StatusInterval == 0 {
		opts.StatusInterval = 50 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(&testWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	opts.Components = append(opts.Components, controller.Component{Name: "test-ports", XDS: func(o *xds.Options) error {
		o.PerNode = portsHook
		return nil
	}})
	opts.Manager = func(mo *manager.Options) {
		mo.Controller.SkipNameValidation = ptr(true)
	}
	c, err := controller.New(p.env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Start(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("controller: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

func ptr[T any](v T) *T { return &v }

// testWriter sends the controller's warnings to the test log.
type testWriter struct {
	t  *testing.T
	mu sync.Mutex
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// commit pushes files and returns the artifact revision of the commit.
func (p *plane) commit(files map[string]string, msg string) string {
	p.t.Helper()
	return fluxtest.Revision(fluxtest.Branch, p.repo.Commit(p.t, files, msg))
}

// gitRepository creates the GitRepository shop following the repository
// and waits for the artifact of rev.
func (p *plane) gitRepository(rev string) {
	p.t.Helper()
	p.sc.CreateGitRepository(p.t, controlNS, "shop", p.repo.URL)
	p.sc.WaitForArtifact(p.t, client.ObjectKey{Namespace: controlNS, Name: "shop"}, rev, 2*time.Minute)
}

// fetch makes source-controller fetch the branch now (requestedAt).
func (p *plane) fetch() {
	p.sc.RequestReconcile(p.t, client.ObjectKey{Namespace: controlNS, Name: "shop"})
}

// newMesh is a Mesh of the repository's dev environment.
func newMesh(name string) *meshv1.Mesh {
	return &meshv1.Mesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: controlNS, Name: name},
		Spec: meshv1.MeshSpec{
			SourceRef:     meshv1.SourceReference{Kind: meshv1.GitRepositoryKind, Name: "shop"},
			Path:          "./mesh",
			Environment:   "dev",
			Policies:      []string{"org/policies"},
			Interval:      metav1.Duration{Duration: time.Hour},
			RetryInterval: &metav1.Duration{Duration: time.Second},
		},
	}
}

// mesh reads Mesh name.
func (p *plane) mesh(name string) *meshv1.Mesh {
	p.t.Helper()
	m := &meshv1.Mesh{}
	if err := p.c.Get(p.ctx, client.ObjectKey{Namespace: controlNS, Name: name}, m); err != nil {
		p.t.Fatal(err)
	}
	return m
}

// waitMesh waits until cond holds for Mesh name.
func (p *plane) waitMesh(name, what string, cond func(*meshv1.Mesh) bool) *meshv1.Mesh {
	p.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		m := &meshv1.Mesh{}
		err := p.c.Get(p.ctx, client.ObjectKey{Namespace: controlNS, Name: name}, m)
		if err == nil && cond(m) {
			return m
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("Mesh %s: %s: not after 90s (get: %v)\n%s\nxDS status:\n%s", name, what, err, describeMesh(m), describeStatus(p.ctrl.XDS.Status()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitXDS waits until cond holds for the xDS server's status.
func (p *plane) waitXDS(what string, cond func(status.Status) bool) status.Status {
	p.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st := p.ctrl.XDS.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("xDS: %s: not after 90s\n%s", what, describeStatus(st))
		}
		select {
		case <-p.ctrl.XDS.Changed():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func describeMesh(m *meshv1.Mesh) string {
	var b strings.Builder
	fmt.Fprintf(&b, "generation %d observed %d applied %q attempted %q snapshot %q handled %q\n", m.Generation, m.Status.ObservedGeneration,
		m.Status.LastAppliedRevision, m.Status.LastAttemptedRevision, m.Status.SnapshotVersion, m.Status.LastHandledReconcileAt)
	for _, c := range m.Status.Conditions {
		fmt.Fprintf(&b, "  %s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	if m.Status.Failure != nil {
		fmt.Fprintf(&b, "  failure %+v\n", *m.Status.Failure)
	}
	if m.Status.Proxies != nil {
		fmt.Fprintf(&b, "  proxies %+v\n", *m.Status.Proxies)
	}
	return b.String()
}

func describeStatus(st status.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "revision %q applied %q attempted %q rollout %+v\n", st.Revision, st.LastAppliedRevision, st.LastAttemptedRevision, st.Rollout)
	if a := st.LastAttempt; a != nil {
		fmt.Fprintf(&b, "last attempt %s step %q: %s\n", a.Revision, a.Step, a.Error)
	}
	for _, p := range st.Proxies {
		fmt.Fprintf(&b, "  proxy %s class %s connected %v version %q acked %q inSync %v\n", p.NodeID, p.Class, p.Connected, p.Version, p.AckedVersion, p.InSync)
	}
	return b.String()
}

// acked reports whether every proxy named is connected and has ACKed a
// version of revision rev.
func acked(rev string, ids ...string) func(status.Status) bool {
	return func(st status.Status) bool {
		for _, id := range ids {
			ok := false
			for _, p := range st.Proxies {
				if p.NodeID == id && p.Connected && p.InSync && strings.HasPrefix(p.AckedVersion, rev+"/") {
					ok = true
				}
			}
			if !ok {
				return false
			}
		}
		return true
	}
}

// nodePorts holds, by node id, the listener ports of the test Envoys:
// several Envoys on one machine cannot all listen on 15006/15001.
var nodePorts sync.Map // node id -> [2]uint32

// portsHook is the xds.PerNodeFunc of the tests: a node's inbound and
// outbound listeners listen on its recorded ports.
func portsHook(nodeID string, c *compiler.Class) (*compiler.Class, error) {
	v, ok := nodePorts.Load(nodeID)
	if !ok {
		return c, nil
	}
	p := v.([2]uint32)
	ports := map[string]uint32{compiler.InboundListenerName: p[0], compiler.OutboundListenerName: p[1]}
	cp := *c
	cp.Resources = map[resource.Type][]types.Resource{}
	for t, rs := range c.Resources {
		cp.Resources[t] = rs
	}
	var ls []types.Resource
	for _, r := range c.Resources[resource.ListenerType] {
		l := r.(*listenerv3.Listener)
		if port := ports[l.Name]; port != 0 {
			l = proto.Clone(l).(*listenerv3.Listener)
			l.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: port}
		}
		ls = append(ls, l)
	}
	cp.Resources[resource.ListenerType] = ls
	return &cp, nil
}

// envoy is a real Envoy connected to the controller's xDS server.
type envoy struct {
	id    string
	admin uint32
}

// startEnvoy runs a real Envoy of class whose only static resource is
// the xds cluster (ADS, SotW or delta).
func (p *plane) startEnvoy(id, class string, delta bool) *envoy {
	t := p.t
	t.Helper()
	bin := tooltest.Envoy(t)
	ports := tooltest.FreePorts(t, 3)
	nodePorts.Store(id, [2]uint32{ports[1], ports[2]})
	t.Cleanup(func() { nodePorts.Delete(id) })
	host, port, _ := net.SplitHostPort(p.ctrl.Addr())
	api := "GRPC"
	if delta {
		api = "DELTA_GRPC"
	}
	boot := fmt.Sprintf(`node: {id: %q, cluster: %q}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}
dynamic_resources:
  ads_config:
    api_type: %s
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services: [{envoy_grpc: {cluster_name: xds}}]
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %s, port_value: %s}}}}]}]
`, id, class, ports[0], api, host, port)
	file := filepath.Join(t.TempDir(), id+".yaml")
	if err := os.WriteFile(file, []byte(boot), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &tooltest.Output{}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-c", file, "--disable-hot-restart", "--log-level", "warn", "--concurrency", "1")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("envoy %s output:\n%s", id, out.String())
		}
	})
	return &envoy{id: id, admin: ports[0]}
}

// configDump is the Envoy's config dump of resource (e.g.
// dynamic_route_configs).
func (e *envoy) configDump(t *testing.T, res string) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/config_dump?resource=%s", e.admin, res))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// scrape reads the controller's /metrics.
func (p *plane) scrape() string {
	p.t.Helper()
	resp, err := http.Get("http://" + p.ctrl.MetricsAddr() + "/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
