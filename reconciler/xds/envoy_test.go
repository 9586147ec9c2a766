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
	"strconv"
	"strings"
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

// portsHook is a PerNodeFunc: the inbound and outbound listeners of a
// node listen on the ports in its metadata ("inbound_port",
// "outbound_port").
func portsHook(node *corev3.Node, c *compiler.Class) (*compiler.Class, error) {
	f := node.GetMetadata().GetFields()
	ports := map[string]string{
		compiler.InboundListenerName:  f["inbound_port"].GetStringValue(),
		compiler.OutboundListenerName: f["outbound_port"].GetStringValue(),
	}
	if ports[compiler.InboundListenerName] == "" && ports[compiler.OutboundListenerName] == "" {
		return c, nil
	}
	cp := *c
	cp.Resources = map[resource.Type][]types.Resource{}
	for t, rs := range c.Resources {
		cp.Resources[t] = rs
	}
	var ls []types.Resource
	for _, r := range c.Resources[resource.ListenerType] {
		l := r.(*listenerv3.Listener)
		if p := ports[l.Name]; p != "" {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("node %s: port %q: %w", node.GetId(), p, err)
			}
			l = proto.Clone(l).(*listenerv3.Listener)
			l.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: uint32(n)}
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
	host, port, _ := net.SplitHostPort(addr)
	api := "GRPC"
	if delta {
		api = "DELTA_GRPC"
	}
	boot := fmt.Sprintf(`node:
  id: %q
  cluster: %q
  metadata: {inbound_port: "%d", outbound_port: "%d"}
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
`, id, class, e.inbound, e.outbound, e.admin, api, host, port)
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

// TestEnvoyNACK: a revision that Envoy rejects at run time although
// go-control-plane's Consistent() accepts it (a route whose regex does
// not compile). Both Envoys NACK it; the status has Envoy's message, the
// route configuration and its CUE position; Envoy keeps routing with the
// previous config.
func TestEnvoyNACK(t *testing.T) {
	s, _, dir, appPort, envoys := envoyMesh(t)
	good := compileDir(t, dir, "rev1")
	bad := withClass(good, "frontend-v1", func(c *compiler.Class) {
		c.SnapshotVersion = "rev2/bad"
		var rs []types.Resource
		for _, r := range c.Resources[resource.RouteType] {
			rc := r.(*routev3.RouteConfiguration)
			if rc.Name == "outbound|http" {
				rc = proto.Clone(rc).(*routev3.RouteConfiguration)
				rc.VirtualHosts[0].Routes[0].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(unclosed"}}
			}
			rs = append(rs, rc)
		}
		c.Resources[resource.RouteType] = rs
	})
	if _, err := bad.Class("frontend-v1").Snapshot(); err != nil {
		t.Fatalf("the bad class must pass Consistent(): %v", err)
	}
	if err := s.Publish("rev2", bad); err != nil {
		t.Fatal(err)
	}
	st := waitStatus(t, s, 30*time.Second, "both Envoys NACK rev2/bad", func(st status.Status) bool {
		for _, e := range envoys {
			if p := proxy(st, e.id); p == nil || p.LastNACK == nil || p.LastNACK.Version != "rev2/bad" {
				return false
			}
		}
		return true
	})
	for _, e := range envoys {
		p := proxy(st, e.id)
		n := p.LastNACK
		t.Logf("%s NACK: %+v provenance %+v", e.id, *n, n.Provenance)
		if n.TypeURL != resource.RouteType || !strings.Contains(n.Message, "unclosed") {
			t.Errorf("%s: NACK %+v, want RDS with Envoy's regex error", e.id, n)
		}
		if n.Resource != "outbound|http" || n.Provenance == nil || n.Provenance.File != "mesh.cue" || n.Provenance.Line == 0 || n.Provenance.Service == "" {
			t.Errorf("%s: NACK attributed to %q %+v, want outbound|http with mesh.cue:<line>", e.id, n.Resource, n.Provenance)
		}
		if p.InSync || !strings.HasPrefix(p.AckedVersion, "rev1/") || p.Version != "rev2/bad" {
			t.Errorf("%s: %+v, want serving rev2/bad, ACKed rev1, not in sync", e.id, p)
		}
		if code, body := e.get(t, fmt.Sprintf("reviews:%d", appPort), "/"); code != 200 || body != "route=one" {
			t.Errorf("%s: GET / = %d %q, want the previous config's 200 route=one", e.id, code, body)
		}
		if dump := e.configDump(t, "dynamic_route_configs"); strings.Contains(dump, "unclosed") || !strings.Contains(dump, `"one"`) {
			t.Errorf("%s: config dump shows the rejected route:\n%s", e.id, dump)
		}
	}
}
