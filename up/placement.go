package up

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/weft-dev/weft/compiler"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/xds"
)

// Instance is one replica of a proxy class, as `weft up` runs it.
type Instance struct {
	Class   string // "<service>-<version>"
	Service string
	Version string
	Replica int
	NodeID  string // "<class>-<replica>"
	// Identity is the workload identity its agent's certificate carries
	// (the service's namespace and service account).
	Identity cav1.Identity
	IP       string // the instance's loopback address; all its listeners bind here
	Ports    []uint32
	AppPorts map[uint32]uint32 // service port -> the app's port on IP
	// AdminSocket is the unix socket of Envoy's admin interface
	// (<runtime>/<node id>.admin.sock, mode 0600, in the private runtime
	// directory): reach it with `curl --unix-socket PATH
	// http://envoy/stats`.
	AdminSocket string
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

// placements are the instances `weft up` placed, by node id: the control
// plane's own record of which identity and class each proxy is and where
// it runs. The xDS server asks it who a stream may be (record, through an
// xds.RecordAuthorizer) and where a node runs (perNode) — never the node
// itself. Placements are read by the xDS server while `weft up` publishes
// under Mesh.mu, so they have their own lock (taken last).
type placements struct {
	mu sync.RWMutex
	m  map[string]*Instance
}

func newPlacements() *placements { return &placements{m: map[string]*Instance{}} }

// get is the instance placed as node id, or nil.
func (p *placements) get(id string) *Instance {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.m[id]
}

// set places in (replacing the instance of its node id). An Instance is
// not modified once set: a change is a new Instance.
func (p *placements) set(in *Instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[in.NodeID] = in
}

// record is the xds.RecordAuthorizer lookup: the identity and class of a
// placed node.
func (p *placements) record(nodeID string) (xds.NodeRecord, bool) {
	in := p.get(nodeID)
	if in == nil {
		return xds.NodeRecord{}, false
	}
	return xds.NodeRecord{Identity: in.Identity, Class: in.Class}, true
}

// perNode is the xDS server's per-node hook of local mode: the class
// localized (compiler.Localize) at the placement of the node's instance.
func (p *placements) perNode(nodeID string, c *compiler.Class) (*compiler.Class, error) {
	in := p.get(nodeID)
	if in == nil {
		return nil, fmt.Errorf("node %s: no instance of that id was placed", nodeID)
	}
	if in.Class != c.Name {
		return nil, fmt.Errorf("node %s is an instance of %s, not %s", nodeID, in.Class, c.Name)
	}
	return compiler.Localize(c, in.Placement())
}

// adminSocketPath is the unix socket of Envoy's admin of node nodeID in
// the runtime directory (next to the agent's socket, socketPath), hashed
// like it when the name would be too long for a unix socket.
func adminSocketPath(runtime, nodeID string) string {
	p := filepath.Join(runtime, nodeID+".admin.sock")
	if len(p) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(nodeID))
	return filepath.Join(runtime, hex.EncodeToString(sum[:])[:16]+".admin.sock")
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
