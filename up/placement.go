package up

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/weft-dev/weft/compiler"
)

// Node metadata fields through which an instance's agent tells the xDS
// server where the instance runs; PerNode localizes the class with them.
const (
	MetaIP       = "weft.local.ip"
	MetaAppPorts = "weft.local.appPorts" // "9080=41234,9081=41235"
)

// Instance is one replica of a proxy class, as `weft up` runs it.
type Instance struct {
	Class    string // "<service>-<version>"
	Service  string
	Version  string
	Replica  int
	NodeID   string // "<class>-<replica>"
	IP       string // the instance's loopback address; all its listeners bind here
	Ports    []uint32
	AppPorts map[uint32]uint32 // service port -> the app's port on IP
	// AdminAddr is Envoy's admin interface.
	AdminAddr string
	// StatsAddr is Envoy's stats listener (GET /stats/prometheus only).
	StatsAddr string
	// Command is the app's command line (empty: the built-in demo app).
	Command []string
	Edge    bool
}

// Placement is the compiler's placement of the instance.
func (in *Instance) Placement() compiler.Placement {
	return compiler.Placement{IP: in.IP, AppPorts: in.AppPorts}
}

// AppAddr is the app's address for its first service port.
func (in *Instance) AppAddr() string {
	if len(in.Ports) == 0 {
		return ""
	}
	return net.JoinHostPort(in.IP, strconv.Itoa(int(in.AppPorts[in.Ports[0]])))
}

// Addr is the instance's inbound address on service port p.
func (in *Instance) Addr(p uint32) string {
	return net.JoinHostPort(in.IP, strconv.Itoa(int(p)))
}

// OutboundProxy is the app's HTTP_PROXY.
func (in *Instance) OutboundProxy() string {
	return fmt.Sprintf("http://%s:%d", in.IP, compiler.DefaultOutboundPort)
}

func formatAppPorts(m map[uint32]uint32) string {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, int(k))
	}
	sort.Ints(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d=%d", k, m[uint32(k)])
	}
	return strings.Join(parts, ",")
}

func parseAppPorts(s string) (map[uint32]uint32, error) {
	out := map[uint32]uint32{}
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		a, err1 := strconv.ParseUint(k, 10, 16)
		b, err2 := strconv.ParseUint(v, 10, 16)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad %s entry %q", MetaAppPorts, part)
		}
		out[uint32(a)] = uint32(b)
	}
	return out, nil
}

// PerNode is the xDS server's per-node hook of local mode: a node whose
// metadata carries weft.local.ip gets its class localized there
// (compiler.Localize); other nodes get the class unchanged.
func PerNode(node *corev3.Node, c *compiler.Class) (*compiler.Class, error) {
	fields := node.GetMetadata().GetFields()
	ip := fields[MetaIP].GetStringValue()
	if ip == "" {
		return c, nil
	}
	ports, err := parseAppPorts(fields[MetaAppPorts].GetStringValue())
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node.GetId(), err)
	}
	return compiler.Localize(c, compiler.Placement{IP: ip, AppPorts: ports})
}

// freePort asks the kernel for a free TCP port on ip.
func freePort(ip string) (uint32, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return uint32(ln.Addr().(*net.TCPAddr).Port), nil
}

// ipAllocator hands out loopback addresses 127.A.B.C from a base, skipping
// addresses where the outbound port is already taken (another `weft up`).
type ipAllocator struct {
	next net.IP
}

func newIPAllocator(base string) (*ipAllocator, error) {
	ip := net.ParseIP(base).To4()
	if ip == nil || ip[0] != 127 {
		return nil, fmt.Errorf("up: instance IP base %q is not a 127/8 address", base)
	}
	return &ipAllocator{next: append(net.IP(nil), ip...)}, nil
}

func (a *ipAllocator) take() (string, error) {
	for tries := 0; tries < 1000; tries++ {
		ip := a.next.String()
		inc(a.next)
		if a.next[0] != 127 {
			return "", fmt.Errorf("up: out of loopback addresses")
		}
		if a.next[3] == 0 || a.next[3] == 255 {
			inc(a.next)
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(compiler.DefaultOutboundPort)))
		if err != nil {
			continue
		}
		ln.Close()
		return ip, nil
	}
	return "", fmt.Errorf("up: no free loopback address")
}

func inc(ip net.IP) {
	for i := len(ip) - 1; i >= 0; i-- {
		ip[i]++
		if ip[i] != 0 {
			return
		}
	}
}
