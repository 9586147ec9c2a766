package xds

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/reconciler/api/status"
)

// Tests with real Envoys (1.40) connected over ADS with a dynamic
// bootstrap: listeners and clusters come from the Server, SotW (GRPC) and
// delta (DELTA_GRPC). Two Envoys of one class run side by side; the
// per-node hook gives each its own listener ports (node metadata), which
// is what local mode does.

// nodePorts holds, by node id, the inbound and outbound listener ports of
// the test Envoys: the control plane's own record of where each proxy
// listens (as `weft up` keeps its placements), never what a node claims.
var nodePorts sync.Map // node id -> [2]int

// portsHook is a PerNodeFunc: the inbound and outbound listeners of a
// node listen on the ports recorded for it in nodePorts.
func portsHook(nodeID string, c *compiler.Class) (*compiler.Class, error) {
	v, ok := nodePorts.Load(nodeID)
	if !ok {
		return c, nil
	}
	p := v.([2]int)
	ports := map[string]uint32{
		compiler.InboundListenerName:  uint32(p[0]),
		compiler.OutboundListenerName: uint32(p[1]),
	}
	cp := *c
	cp.Resources = map[resource.Type][]types.Resource{}
	for t, rs := range c.Resources {
		cp.Resources[t] = rs
	}
	var ls []types.Resource
	for _, r := range c.Resources[resource.ListenerType] {
		l := r.(*listenerv3.Listener)
		if p := ports[l.Name]; p != 0 {
			l = proto.Clone(l).(*listenerv3.Listener)
			l.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: p}
		}
		ls = append(ls, l)
	}
	cp.Resources[resource.ListenerType] = ls
	return &cp, nil
}

type envoyProc struct {
	id                       string
	admin, inbound, outbound int
	out                      *tooltest.Output
}

// startEnvoy runs an Envoy whose only static resource is the xds cluster
// pointing at addr.
func startEnvoy(t *testing.T, addr, id, class string, delta bool) *envoyProc {
	t.Helper()
	bin := tooltest.Envoy(t)
	ports := tooltest.FreePorts(t, 3)
	e := &envoyProc{id: id, admin: int(ports[0]), inbound: int(ports[1]), outbound: int(ports[2]), out: &tooltest.Output{}}
	nodePorts.Store(id, [2]int{e.inbound, e.outbound})
	t.Cleanup(func() { nodePorts.Delete(id) })
	host, port, _ := net.SplitHostPort(addr)
	api := "GRPC"
	if delta {
		api = "DELTA_GRPC"
	}
	boot := fmt.Sprintf(`node:
  id: %q
  cluster: %q
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
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
`, id, class, e.admin, api, host, port)
	file := filepath.Join(t.TempDir(), id+".yaml")
	if err := os.WriteFile(file, []byte(boot), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-c", file, "--disable-hot-restart", "--log-level", "warn", "--concurrency", "1")
	cmd.Stdout, cmd.Stderr = e.out, e.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("envoy %s output:\n%s", id, e.out.String())
		}
	})
	return e
}

// get sends a request through the Envoy's outbound listener, as an app
// using it as HTTP_PROXY does; it retries briefly while the listener
// comes up.
func (e *envoyProc) get(t *testing.T, host, path string) (int, string) {
	t.Helper()
	proxyURL := &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", e.outbound)}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 5 * time.Second}
	var lastErr error
	for i := 0; i < 50; i++ {
		resp, err := client.Get("http://" + host + path)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(body)
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s%s through envoy %s: %v", host, path, e.id, lastErr)
	return 0, ""
}

func (e *envoyProc) configDump(t *testing.T, res string) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/config_dump?resource=%s", e.admin, res))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// stats reads Envoy counters whose name matches the regex filter.
func (e *envoyProc) stats(t *testing.T, filter string) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/stats?filter=%s", e.admin, url.QueryEscape(filter)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// echoApp is the reviews workload: it answers with the x-mesh-route header
// it received.
func echoApp(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "route=%s", r.Header.Get("x-mesh-route"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// envoyMesh serves revision rev1 of the test mesh (route "one") and starts
// two frontend-v1 Envoys, SotW and delta, both in sync with it.
func envoyMesh(t *testing.T) (s *Server, p *Pipeline, dir string, appPort int, envoys []*envoyProc) {
	appPort = echoApp(t)
	dir = t.TempDir()
	writeMesh(t, dir, appPort, "one", "")
	s, addr := startServer(t, Options{PerNode: portsHook})
	p = &Pipeline{Server: s}
	if err := p.Reconcile(dir, "rev1"); err != nil {
		t.Fatal(err)
	}
	envoys = []*envoyProc{
		startEnvoy(t, addr, "frontend-sotw", "frontend-v1", false),
		startEnvoy(t, addr, "frontend-delta", "frontend-v1", true),
	}
	for _, e := range envoys {
		waitStatus(t, s, 30*time.Second, e.id+" ACKs rev1", inSync(e.id))
		t.Logf("%s in sync at %s", e.id, time.Now().Format(time.StampMilli))
	}
	return s, p, dir, appPort, envoys
}

// TestEnvoyADS: Envoys over SotW and delta ACK the served version and
// route with it; a new revision (a changed route header) is ACKed by both,
// shows in their config dumps and in the traffic.
func TestEnvoyADS(t *testing.T) {
	s, p, dir, appPort, envoys := envoyMesh(t)
	host := fmt.Sprintf("reviews:%d", appPort)
	st := s.Status()
	for _, e := range envoys {
		pr := proxy(st, e.id)
		if pr.Class != "frontend-v1" || !strings.HasPrefix(pr.AckedVersion, "rev1/") {
			t.Errorf("%s: %+v, want frontend-v1 ACKed at rev1", e.id, pr)
		}
		if code, body := e.get(t, host, "/"); code != 200 || body != "route=one" {
			t.Errorf("%s: GET / = %d %q, want 200 route=one", e.id, code, body)
		}
	}
	if proxy(st, "frontend-delta").Transport != status.TransportDelta || proxy(st, "frontend-sotw").Transport != status.TransportSotW {
		t.Errorf("transports: %s", dumpStatus(st))
	}

	writeMesh(t, dir, appPort, "two", "")
	if err := p.Reconcile(dir, "rev2"); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, s, 30*time.Second, "both Envoys ACK rev2", func(st status.Status) bool {
		return inSync("frontend-sotw")(st) && inSync("frontend-delta")(st)
	})
	for _, e := range envoys {
		pr := proxy(st, e.id)
		if !strings.HasPrefix(pr.AckedVersion, "rev2/") || pr.Acked[resource.RouteType] != pr.AckedVersion {
			t.Errorf("%s: %+v, want routes ACKed at rev2", e.id, pr)
		}
		dump := e.configDump(t, "dynamic_route_configs")
		if !strings.Contains(dump, `"x-mesh-route"`) || !strings.Contains(dump, `"two"`) || strings.Contains(dump, `"one"`) {
			t.Errorf("%s: route config dump does not show x-mesh-route two:\n%s", e.id, dump)
		}
		if code, body := e.get(t, host, "/"); code != 200 || body != "route=two" {
			t.Errorf("%s: GET / = %d %q, want 200 route=two", e.id, code, body)
		}
	}
}

// badRoute returns res with route 0 of frontend-v1's route configuration
// outbound|http changed by f (on a clone) and the class's snapshot version
// set to v: a value that go-control-plane's Consistent() accepts and that
// Envoy rejects.
func badRoute(t *testing.T, res *compiler.Result, v string, f func(*routev3.Route)) *compiler.Result {
	t.Helper()
	bad := withClass(res, "frontend-v1", func(c *compiler.Class) {
		c.SnapshotVersion = v
		var rs []types.Resource
		for _, r := range c.Resources[resource.RouteType] {
			rc := r.(*routev3.RouteConfiguration)
			if rc.Name == "outbound|http" {
				rc = proto.Clone(rc).(*routev3.RouteConfiguration)
				f(rc.VirtualHosts[0].Routes[0])
			}
			rs = append(rs, rc)
		}
		c.Resources[resource.RouteType] = rs
	})
	if _, err := bad.Class("frontend-v1").Snapshot(); err != nil {
		t.Fatalf("the bad class must pass Consistent(): %v", err)
	}
	return bad
}

// unclosedRegex makes a route match a regex that does not compile.
func unclosedRegex(r *routev3.Route) {
	r.Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(unclosed"}}
}

// bigHeader adds a request header whose value is longer than the 16384
// bytes that Envoy's HeaderValue allows.
func bigHeader(r *routev3.Route) {
	r.RequestHeadersToAdd = append(r.RequestHeadersToAdd, &corev3.HeaderValueOption{
		Header: &corev3.HeaderValue{Key: "x-big", Value: strings.Repeat("a", 17000)},
	})
}

// rolledBack: the last attempt is rev failed at rollout and every listed
// proxy is in sync with the served revision again.
func rolledBack(rev string, ids ...string) func(status.Status) bool {
	return func(st status.Status) bool {
		if a := st.LastAttempt; a == nil || a.Revision != rev || a.Step != status.StepRollout {
			return false
		}
		for _, id := range ids {
			if !inSync(id)(st) {
				return false
			}
		}
		return true
	}
}

// TestEnvoyNACK: revisions that Envoy rejects at run time although
// go-control-plane's Consistent() accepts them: a route whose regex does
// not compile (Envoy says why), and a header value over Envoy's 16384-byte
// limit (Envoy's message is 4 KB of the route's dump, cut before the
// reason). Both Envoys (SotW and delta) are served the previous revision
// again; the attempt fails at step rollout with the proxy, the route
// configuration, the reason in a line and its CUE position; Envoy keeps
// routing with the previous config. A rejected revision is never
// published again.
func TestEnvoyNACK(t *testing.T) {
	s, _, dir, appPort, envoys := envoyMesh(t)
	good := compileDir(t, dir, "rev1")
	v1 := good.Class("frontend-v1").SnapshotVersion
	var rejected []*compiler.Result
	for _, tc := range []struct {
		rev, reason string
		mutate      func(*routev3.Route)
	}{
		{"rev2", "missing ): (unclosed", unclosedRegex},
		{"rev3", "value length must be at most 16384 bytes", bigHeader},
	} {
		bad := badRoute(t, good, tc.rev+"/bad", tc.mutate)
		rejected = append(rejected, bad)
		if err := s.Publish(tc.rev, bad); err != nil {
			t.Fatal(err)
		}
		st := waitStatus(t, s, 30*time.Second, tc.rev+" rolled back on both Envoys", rolledBack(tc.rev, "frontend-sotw", "frontend-delta"))
		a := st.LastAttempt
		n := a.NACK
		t.Logf("%s: attempt error: %s", tc.rev, a.Error)
		if n == nil || (n.NodeID != "frontend-sotw" && n.NodeID != "frontend-delta") || n.Version != tc.rev+"/bad" || n.TypeURL != resource.RouteType {
			t.Fatalf("%s: attempt NACK %+v, want a frontend Envoy's NACK of RDS %s/bad", tc.rev, n, tc.rev)
		}
		if !strings.Contains(n.Reason, tc.reason) || len(n.Reason) > 300 || !strings.Contains(a.Error, tc.reason) {
			t.Errorf("%s: reason %q, want a line with %q", tc.rev, n.Reason, tc.reason)
		}
		if n.Resource != "outbound|http" || n.Provenance == nil || n.Provenance.File != "mesh.cue" || n.Provenance.Line == 0 || n.Provenance.Service != "reviews" {
			t.Errorf("%s: NACK attributed to %q %+v, want outbound|http, reviews' route at mesh.cue:<line>", tc.rev, n.Resource, n.Provenance)
		}
		if len(a.Problems) != 1 || a.Problems[0].File != "mesh.cue" || a.Problems[0].Line != n.Provenance.Line || a.RolledBackTo != "rev1" {
			t.Errorf("%s: attempt %+v, want one problem at mesh.cue:%d and rolled back to rev1", tc.rev, a, n.Provenance.Line)
		}
		if st.Revision != "rev1" || st.Classes["frontend-v1"] != v1 || st.LastAppliedRevision != "rev1" || st.Rollout != nil || st.LastAttemptedRevision != tc.rev {
			t.Errorf("%s: status %s, want rev1 served and applied again, %s last attempted", tc.rev, dumpStatus(st), tc.rev)
		}
		for _, e := range envoys {
			if p := proxy(st, e.id); p.AckedVersion != v1 || p.Version != v1 {
				t.Errorf("%s: %s %+v, want served and ACKed %s", tc.rev, e.id, p, v1)
			}
			if code, body := e.get(t, fmt.Sprintf("reviews:%d", appPort), "/"); code != 200 || body != "route=one" {
				t.Errorf("%s: %s: GET / = %d %q, want the previous config's 200 route=one", tc.rev, e.id, code, body)
			}
			if dump := e.configDump(t, "dynamic_route_configs"); strings.Contains(dump, "unclosed") || strings.Contains(dump, "x-big") || !strings.Contains(dump, `"one"`) {
				t.Errorf("%s: %s: config dump shows the rejected route:\n%s", tc.rev, e.id, dump)
			}
		}
	}
	// Envoy cut its message at 4 KB; the status keeps it, bounded.
	if n := s.Status().LastAttempt.NACK; len(n.Message) > 5000 || !strings.HasSuffix(n.Message, "...(truncated)") {
		t.Errorf("16 KB header: message of %d bytes ending %q", len(n.Message), n.Message[max(0, len(n.Message)-20):])
	}
	// A rejected revision is not published again.
	if err := s.Publish("rev2", rejected[0]); err == nil || !strings.Contains(err.Error(), "was rejected by proxy") {
		t.Errorf("publishing rev2 again: %v, want it refused as rejected", err)
	}
	if st := s.Status(); st.Revision != "rev1" {
		t.Errorf("after the refused publish: serving %q, want rev1", st.Revision)
	}
}

// TestEnvoyRollbackTwoClasses: a revision that changes two classes — a
// route of frontend (which Envoy rejects: a header value over 16384
// bytes) and reviews' inbound listener (a local rate limit, which it
// accepts). frontend's Envoy NACKs; both are served the previous revision
// again, so the mesh runs one revision: reviews' Envoy drops the rate
// limit it had taken, frontend's still routes with the previous route.
// The status shows the rollout failed with the proxy, the reason and the
// file:line of the rejected route. A later good revision reaches both.
func TestEnvoyRollbackTwoClasses(t *testing.T) {
	appPort := echoApp(t)
	dir := t.TempDir()
	writeMesh(t, dir, appPort, "one", "")
	s, addr := startServer(t, Options{PerNode: portsHook})
	r1 := compileDir(t, dir, "rev1")
	if err := s.Publish("rev1", r1); err != nil {
		t.Fatal(err)
	}
	fe := startEnvoy(t, addr, "frontend-0", "frontend-v1", false)
	rv := startEnvoy(t, addr, "reviews-0", "reviews-v1", true)
	waitStatus(t, s, 30*time.Second, "both Envoys in sync with rev1", func(st status.Status) bool {
		return inSync("frontend-0")(st) && inSync("reviews-0")(st) && st.LastAppliedRevision == "rev1"
	})
	host := fmt.Sprintf("reviews:%d", appPort)
	const limited = "local_ratelimit"
	if dump := rv.configDump(t, "dynamic_listeners"); strings.Contains(dump, limited) {
		t.Fatalf("rev1's reviews listener already has a rate limit:\n%s", dump)
	}

	writeMesh(t, dir, appPort, "two", "rateLimit: {requestsPerSecond: 1000, burst: 1000}")
	r2 := badRoute(t, compileDir(t, dir, "rev2"), "rev2/bad", bigHeader)
	if r2.Class("reviews-v1").SnapshotVersion == r1.Class("reviews-v1").SnapshotVersion {
		t.Fatal("rev2 does not change reviews-v1")
	}
	if err := s.Publish("rev2", r2); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, s, 30*time.Second, "rev2 rolled back on both Envoys", rolledBack("rev2", "frontend-0", "reviews-0"))
	a := st.LastAttempt
	t.Logf("status: %s", a.Error)
	if a.NACK == nil || a.NACK.NodeID != "frontend-0" || !strings.Contains(a.NACK.Reason, "16384") || a.RolledBackTo != "rev1" {
		t.Errorf("attempt %+v, want frontend-0's NACK with the 16384-byte limit, rolled back to rev1", a)
	}
	if len(a.Problems) != 1 || a.Problems[0].File != "mesh.cue" || a.Problems[0].Line == 0 {
		t.Errorf("problems %+v, want the rejected route's mesh.cue:<line>", a.Problems)
	}
	if p := proxy(st, "reviews-0"); p.AckedVersion != r1.Class("reviews-v1").SnapshotVersion || p.LastNACK != nil {
		t.Errorf("reviews-0 %+v, want rev1 ACKed again and no NACK of its own", p)
	}
	if dump := rv.configDump(t, "dynamic_listeners"); strings.Contains(dump, limited) {
		t.Errorf("reviews' Envoy still has rev2's rate limit after the rollback:\n%s", dump)
	}
	// Whether reviews' Envoy applied rev2 before the rollback reached it
	// depends on timing; log it.
	t.Logf("reviews' Envoy: %s", strings.TrimSpace(rv.stats(t, "listener_manager.listener_modified")))
	if code, body := fe.get(t, host, "/"); code != 200 || body != "route=one" {
		t.Errorf("frontend: GET / = %d %q, want rev1's 200 route=one", code, body)
	}

	writeMesh(t, dir, appPort, "three", "rateLimit: {requestsPerSecond: 1000, burst: 1000}")
	r3 := compileDir(t, dir, "rev3")
	if err := s.Publish("rev3", r3); err != nil {
		t.Fatal(err)
	}
	st = waitStatus(t, s, 30*time.Second, "rev3 applied on both Envoys", func(st status.Status) bool {
		return inSync("frontend-0")(st) && inSync("reviews-0")(st) && st.LastAppliedRevision == "rev3"
	})
	if st.LastAttempt.Error != "" || st.Rollout != nil {
		t.Errorf("after rev3: %s", dumpStatus(st))
	}
	if dump := rv.configDump(t, "dynamic_listeners"); !strings.Contains(dump, limited) {
		t.Errorf("reviews' Envoy lacks rev3's rate limit:\n%s", dump)
	}
	if code, body := fe.get(t, host, "/"); code != 200 || body != "route=three" {
		t.Errorf("frontend: GET / = %d %q, want rev3's 200 route=three", code, body)
	}
}
