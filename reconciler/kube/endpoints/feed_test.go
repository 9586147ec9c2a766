package endpoints_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/credentials/insecure"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/reconciler/kube/endpoints"
	"github.com/weft-dev/weft/reconciler/kube/kubetesting"
	"github.com/weft-dev/weft/reconciler/kube/serving"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/xds"
	"github.com/weft-dev/weft/schema/mesh"
)

const (
	reviewsPort = 9080
	v1Cluster   = "outbound|9080|v1|reviews.shop"
	v2Cluster   = "outbound|9080|v2|reviews.shop"
	allCluster  = "outbound|9080||reviews.shop"
)

// fixture is a served shop mesh whose endpoints come from the test
// apiserver through a Feed.
type fixture struct {
	env      *kubetest.Env
	srv      *xds.Server
	feed     *endpoints.Feed
	addr     string
	compiles atomic.Int32
	lp       *kubetesting.ListenerPorts
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// reviewsPod is a pod of reviews of the given version at ip.
func reviewsPod(name, version, ip string) kubetesting.Pod {
	return kubetesting.Pod{Namespace: "shop", Name: name, ServiceAccount: "reviews", IP: ip,
		Labels: map[string]string{"mesh.weft.dev/service": "reviews", "version": version}}
}

func start(t *testing.T, mtls string) *fixture {
	t.Helper()
	f := &fixture{env: kubetest.Start(t, kubetest.Options{}), lp: &kubetesting.ListenerPorts{}}
	cs := f.env.Clientset
	kubetesting.Namespace(t, cs, "shop")
	for i, v := range []string{"v1", "v2"} {
		for j := range 3 {
			kubetesting.CreatePod(t, cs, reviewsPod(fmt.Sprintf("reviews-%s-%d", v, j), v, fmt.Sprintf("10.2.%d.%d", i+1, j+1)))
		}
	}
	kubetesting.ApplySlice(t, cs, kubetesting.Slice("shop", "reviews", "reviews-a",
		kubetesting.Endpoint{IP: "10.2.1.1", Pod: "reviews-v1-0"}, kubetesting.Endpoint{IP: "10.2.2.1", Pod: "reviews-v2-0"}))

	var co cache.Options
	serving.CacheOptions(&co)
	mgr := kubetesting.NewManager(t, f.env.Config, co, "", "")
	f.srv = xds.New(xds.Options{Logger: quiet(), PerNode: f.lp.PerNode})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	go f.srv.Serve(ln)
	t.Cleanup(f.srv.Stop)
	f.feed, err = endpoints.New(mgr.GetCache(), f.srv, endpoints.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Add(f.feed); err != nil {
		t.Fatal(err)
	}
	kubetesting.Run(t, mgr)

	dir := t.TempDir()
	kubetesting.WriteMesh(t, dir, kubetesting.ShopMesh(mtls, reviewsPort))
	p := &pipeline.Pipeline{
		Gate: &pipeline.Gate{NoPolicies: true},
		// Called once per compile: it counts the compilations.
		Endpoints: func(m *mesh.Model) (compiler.Endpoints, error) {
			f.compiles.Add(1)
			return f.feed.Endpoints(m)
		},
		Publisher: f.feed,
	}
	if _, err := p.Reconcile(context.Background(), pipeline.Revision{Name: "r1", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	return f
}

// classVersion is the snapshot version the server serves class c.
func (f *fixture) classVersion(c string) string { return f.srv.Status().Classes[c] }

// waitACK waits until node has ACKed a version of its class other than
// old, the one served, and returns it.
func (f *fixture) waitACK(t *testing.T, node, class, old string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		ch := f.srv.Changed()
		st := f.srv.Status()
		for _, p := range st.Proxies {
			if p.NodeID == node && p.Connected && p.InSync && p.AckedVersion != old && p.AckedVersion == st.Classes[class] {
				return p.AckedVersion
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("node %s did not ACK a version of %s other than %s: %+v", node, class, old, st.Proxies)
		}
	}
}

func ips(hosts ...string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, fmt.Sprintf("%s:%d", h, reviewsPort))
	}
	sort.Strings(out)
	return out
}

// TestEndpointSlicesReachEnvoy: EndpointSlice and pod changes in the
// apiserver reach a real Envoy (delta ADS) as new load assignments, and
// nothing else: the mesh is not compiled again, and neither Envoy nor a
// second delta client receives anything but ClusterLoadAssignments.
// Only ready endpoints are served, each in the version its pod's labels
// select; an endpoint whose pod matches no version is left out and
// reported. The time from the API write to Envoy's ACK is measured.
func TestEndpointSlicesReachEnvoy(t *testing.T) {
	f := start(t, "disable") // plaintext: the Envoy has no agent for SDS
	cs := f.env.Clientset
	const class = "frontend-v1"
	envoy := kubetesting.StartEnvoy(t, f.lp, f.addr, "frontend-0", class)
	raw := kubetesting.NewXDSClient(f.addr, insecure.NewCredentials(), &corev3.Node{Id: "frontend-1", Cluster: class})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go raw.Run(ctx)
	version := f.waitACK(t, "frontend-0", class, "")
	f.waitACK(t, "frontend-1", class, "")
	if got, want := envoy.Hosts(t, v1Cluster), ips("10.2.1.1"); !slices.Equal(got, want) {
		t.Fatalf("Envoy's %s hosts %v, want %v", v1Cluster, got, want)
	}

	lds, cds := envoy.Counter(t, "listener_manager.lds.update_attempt"), envoy.Counter(t, "cluster_manager.cds.update_attempt")
	rawBefore := raw.State().Responses

	type step struct {
		name  string
		apply func()
		v1    []string // reviews v1 and v2 hosts afterwards
		v2    []string
	}
	slice := func(name string, eps ...kubetesting.Endpoint) func() {
		return func() { kubetesting.ApplySlice(t, cs, kubetesting.Slice("shop", "reviews", name, eps...)) }
	}
	a := func(ip, pod string) kubetesting.Endpoint { return kubetesting.Endpoint{IP: ip, Pod: pod} }
	notReady := func(ip, pod string) kubetesting.Endpoint {
		return kubetesting.Endpoint{IP: ip, Pod: pod, NotReady: true}
	}
	base := []kubetesting.Endpoint{a("10.2.1.1", "reviews-v1-0"), a("10.2.2.1", "reviews-v2-0")}
	steps := []step{
		{"a v1 endpoint is added", slice("reviews-a", append(base, a("10.2.1.2", "reviews-v1-1"))...), ips("10.2.1.1", "10.2.1.2"), ips("10.2.2.1")},
		{"a v2 endpoint that is not ready is left out", slice("reviews-a", append(base, a("10.2.1.2", "reviews-v1-1"), notReady("10.2.2.2", "reviews-v2-1"))...), nil, nil},
		{"it becomes ready", slice("reviews-a", append(base, a("10.2.1.2", "reviews-v1-1"), a("10.2.2.2", "reviews-v2-1"))...), ips("10.2.1.1", "10.2.1.2"), ips("10.2.2.1", "10.2.2.2")},
		{"an endpoint goes", slice("reviews-a", a("10.2.1.2", "reviews-v1-1"), a("10.2.2.2", "reviews-v2-1"), a("10.2.2.1", "reviews-v2-0")), ips("10.2.1.2"), ips("10.2.2.1", "10.2.2.2")},
		{"a second slice", slice("reviews-b", a("10.2.1.3", "reviews-v1-2")), ips("10.2.1.2", "10.2.1.3"), ips("10.2.2.1", "10.2.2.2")},
		{"a pod moves to v2 (its labels)", func() {
			patch := `{"metadata":{"labels":{"version":"v2"}}}`
			if _, err := cs.CoreV1().Pods("shop").Patch(context.Background(), "reviews-v1-2", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}, ips("10.2.1.2"), ips("10.2.1.3", "10.2.2.1", "10.2.2.2")},
		{"the second slice goes", func() {
			if err := cs.DiscoveryV1().EndpointSlices("shop").Delete(context.Background(), "reviews-b", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, ips("10.2.1.2"), ips("10.2.2.1", "10.2.2.2")},
	}
	// More rounds of add and remove, for the latency figures.
	for i := range 8 {
		with := slice("reviews-a", a("10.2.1.2", "reviews-v1-1"), a("10.2.2.2", "reviews-v2-1"), a("10.2.2.1", "reviews-v2-0"), a("10.2.1.1", "reviews-v1-0"))
		without := slice("reviews-a", a("10.2.1.2", "reviews-v1-1"), a("10.2.2.2", "reviews-v2-1"), a("10.2.2.1", "reviews-v2-0"))
		steps = append(steps,
			step{fmt.Sprintf("round %d: add", i), with, ips("10.2.1.1", "10.2.1.2"), ips("10.2.2.1", "10.2.2.2")},
			step{fmt.Sprintf("round %d: remove", i), without, ips("10.2.1.2"), ips("10.2.2.1", "10.2.2.2")})
	}

	var took []time.Duration
	updates := f.feed.Stats().Updates
	for _, s := range steps {
		t0 := time.Now()
		s.apply()
		if s.v1 == nil {
			// Nothing to serve: the Feed recomputes and publishes nothing.
			time.Sleep(500 * time.Millisecond)
			if v := f.classVersion(class); v != version {
				t.Fatalf("%s: the served version changed from %s to %s", s.name, version, v)
			}
			continue
		}
		version = f.waitACK(t, "frontend-0", class, version)
		took = append(took, time.Since(t0))
		if got := envoy.Hosts(t, v1Cluster); !slices.Equal(got, s.v1) {
			t.Fatalf("%s: Envoy's v1 hosts %v, want %v", s.name, got, s.v1)
		}
		if got := envoy.Hosts(t, v2Cluster); !slices.Equal(got, s.v2) {
			t.Fatalf("%s: Envoy's v2 hosts %v, want %v", s.name, got, s.v2)
		}
		if got, want := envoy.Hosts(t, allCluster), sorted(append(slices.Clone(s.v1), s.v2...)); !slices.Equal(got, want) {
			t.Fatalf("%s: Envoy's all-versions hosts %v, want %v", s.name, got, want)
		}
	}
	f.waitACK(t, "frontend-1", class, "")

	if n := f.compiles.Load(); n != 1 {
		t.Errorf("the mesh was compiled %d times, want once", n)
	}
	if got := f.feed.Stats().Updates - updates; got != len(took) {
		t.Errorf("%d endpoint updates published, want %d", got, len(took))
	}
	if n := envoy.Counter(t, "listener_manager.lds.update_attempt"); n != lds {
		t.Errorf("Envoy received listeners %d times since the first sync, want none", n-lds)
	}
	if n := envoy.Counter(t, "cluster_manager.cds.update_attempt"); n != cds {
		t.Errorf("Envoy received clusters %d times since the first sync, want none", n-cds)
	}
	after := raw.State().Responses
	for _, typ := range compiler.ResourceTypes {
		if typ != resource.EndpointType && after[typ] != rawBefore[typ] {
			t.Errorf("the delta client received %d %s responses since the first sync, want none", after[typ]-rawBefore[typ], typ)
		}
	}
	if after[resource.EndpointType] == rawBefore[resource.EndpointType] {
		t.Error("the delta client received no load assignment")
	}
	for _, r := range raw.State().Log {
		if r.Type == resource.EndpointType && len(r.Names) > 3 {
			t.Errorf("an EDS response of %d resources: %v", len(r.Names), r.Names)
		}
	}
	slices.Sort(took)
	t.Logf("endpoint change -> Envoy ACK over %d changes: p50 %s, max %s (debounce %s)",
		len(took), took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), endpoints.DefaultDebounce)
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}

// TestExcludedEndpoints: endpoints the mesh cannot place are left out and
// reported; fixing the pod brings the endpoint in.
func TestExcludedEndpoints(t *testing.T) {
	f := start(t, "strict")
	cs := f.env.Clientset
	kubetesting.CreatePod(t, cs, reviewsPod("reviews-v9-0", "v9", "10.2.9.1"))
	kubetesting.CreatePod(t, cs, kubetesting.Pod{Namespace: "shop", Name: "impostor", ServiceAccount: "frontend", IP: "10.2.9.2",
		Labels: map[string]string{"mesh.weft.dev/service": "reviews", "version": "v1"}})
	eps := []kubetesting.Endpoint{
		{IP: "10.2.1.1", Pod: "reviews-v1-0"},
		{IP: "10.2.9.1", Pod: "reviews-v9-0"},
		{IP: "10.2.9.2", Pod: "impostor"},
		{IP: "10.2.9.3"},
		{IP: "10.2.9.4", Pod: "ghost"},
	}
	kubetesting.ApplySlice(t, cs, kubetesting.Slice("shop", "reviews", "reviews-a", eps...))
	want := []endpoints.Excluded{
		{Namespace: "shop", Service: "reviews", Pod: "reviews-v9-0", Address: "10.2.9.1", Reason: "its labels match no version of service reviews (v1: version=v1; v2: version=v2)"},
		{Namespace: "shop", Service: "reviews", Pod: "impostor", Address: "10.2.9.2", Reason: "the pod runs as service account frontend, not reviews: callers would refuse its certificate"},
		{Namespace: "shop", Service: "reviews", Address: "10.2.9.3", Reason: "the endpoint names no pod, so its version cannot be told"},
		{Namespace: "shop", Service: "reviews", Pod: "ghost", Address: "10.2.9.4", Reason: "its pod is not known yet"},
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := f.feed.Excluded()
		if excludedMatch(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("excluded %+v, want %+v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := f.feed.Stats(); st.Endpoints != 1 {
		t.Errorf("%d endpoints served, want 1 (reviews-v1-0)", st.Endpoints)
	}
	patch := `{"metadata":{"labels":{"version":"v2"}}}`
	if _, err := cs.CoreV1().Pods("shop").Patch(context.Background(), "reviews-v9-0", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for f.feed.Stats().Endpoints != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("after relabelling: %+v, excluded %+v", f.feed.Stats(), f.feed.Excluded())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := f.srv.Status(); st.LastAttempt == nil || st.LastAttempt.Step != "" || st.Revision != "r1" {
		t.Errorf("server status after the updates: revision %q, last attempt %+v", st.Revision, st.LastAttempt)
	}
}

// excludedMatch: got has exactly want's entries, each reason containing
// want's.
func excludedMatch(got, want []endpoints.Excluded) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if g.Namespace == w.Namespace && g.Service == w.Service && g.Pod == w.Pod && g.Address == w.Address && strings.Contains(g.Reason, w.Reason) {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
