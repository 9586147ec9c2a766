package kubetesting

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
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/tooltest"
)

// Envoy is a real Envoy connected to an xDS server over delta ADS
// (plaintext): what a sidecar's Envoy receives, without the agent.
type Envoy struct {
	ID                       string
	Admin, Inbound, Outbound int
	out                      *tooltest.Output
}

// ListenerPorts maps node ids to the inbound and outbound ports their
// test Envoys listen on: every Envoy of a test needs its own (a cluster
// gives each pod its own network namespace; a test machine has one).
type ListenerPorts struct{ m sync.Map }

// PerNode is an xds.PerNodeFunc that moves the inbound and outbound
// listeners of a node to its recorded ports.
func (lp *ListenerPorts) PerNode(nodeID string, c *compiler.Class) (*compiler.Class, error) {
	v, ok := lp.m.Load(nodeID)
	if !ok {
		return c, nil
	}
	ports := v.([2]int)
	want := map[string]uint32{compiler.InboundListenerName: uint32(ports[0]), compiler.OutboundListenerName: uint32(ports[1])}
	cp := *c
	cp.Resources = map[resource.Type][]types.Resource{}
	for t, rs := range c.Resources {
		cp.Resources[t] = rs
	}
	var ls []types.Resource
	for _, r := range c.Resources[resource.ListenerType] {
		l := r.(*listenerv3.Listener)
		if p := want[l.Name]; p != 0 {
			l = proto.Clone(l).(*listenerv3.Listener)
			l.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: p}
		}
		ls = append(ls, l)
	}
	cp.Resources[resource.ListenerType] = ls
	return &cp, nil
}

// StartEnvoy runs an Envoy as node id of class, whose only static
// resource is the xds cluster at addr (delta ADS, plaintext); its
// listeners get free ports through lp.
func StartEnvoy(t testing.TB, lp *ListenerPorts, addr, id, class string) *Envoy {
	t.Helper()
	bin := tooltest.Envoy(t)
	ports := tooltest.FreePorts(t, 3)
	e := &Envoy{ID: id, Admin: int(ports[0]), Inbound: int(ports[1]), Outbound: int(ports[2]), out: &tooltest.Output{}}
	lp.m.Store(id, [2]int{e.Inbound, e.Outbound})
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	boot := fmt.Sprintf(`node: {id: %q, cluster: %q}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: %d}}
dynamic_resources:
  ads_config:
    api_type: DELTA_GRPC
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
`, id, class, e.Admin, host, port)
	file := filepath.Join(t.TempDir(), "envoy.yaml")
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
		_ = cmd.Wait()
		lp.m.Delete(id)
		if t.Failed() {
			t.Logf("envoy %s output:\n%s", id, e.out.String())
		}
	})
	return e
}

// Get reads a page of the Envoy's admin interface.
func (e *Envoy) Get(t testing.TB, path string) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", e.Admin, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Counter is the value of one Envoy counter or gauge (0 when absent).
func (e *Envoy) Counter(t testing.TB, name string) int {
	t.Helper()
	out := e.Get(t, "/stats?filter="+url.QueryEscape("^"+regexp.QuoteMeta(name)+"$"))
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && k == name {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// Hosts are the "ip:port" hosts Envoy has for a cluster (its /clusters
// page), sorted.
func (e *Envoy) Hosts(t testing.TB, cluster string) []string {
	t.Helper()
	seen := map[string]bool{}
	for _, line := range strings.Split(e.Get(t, "/clusters"), "\n") {
		rest, ok := strings.CutPrefix(line, cluster+"::")
		if !ok {
			continue
		}
		host, _, ok := strings.Cut(rest, "::")
		if ok && strings.Contains(host, ":") {
			seen[host] = true
		}
	}
	out := make([]string, 0, len(seen))
	for h := range seen {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}
