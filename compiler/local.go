package compiler

import (
	"fmt"
	"net"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Placement is where one instance of a proxy class runs in local mode
// (`weft up`): every instance owns a loopback address, and all of its
// listeners, and its app, bind there.
type Placement struct {
	// IP is the instance's address (e.g. 127.0.0.7). The inbound
	// listener binds IP:<service port> for every service port, the
	// outbound HTTP listener IP:<outbound port>, the TCP dependency
	// listeners IP:<dependency port>.
	IP string
	// AppPorts maps each service port to the port the app listens on at
	// AppIP. Every service port of the class must have one, different
	// from the service port when AppIP is IP (Envoy holds IP:<port>).
	AppPorts map[uint32]uint32
	// AppIP is where the app listens (default IP).
	AppIP string
}

// Localize returns the variant of class c for one local instance: the
// Kubernetes-shaped listeners (inbound 0.0.0.0:<inbound port> behind an
// iptables redirect, with original_dst; outbound on 127.0.0.1) are
// rebound to p.IP, and the inbound clusters point at the app on
// p.AppIP:p.AppPorts[port]:
//
//   - the inbound listener listens on IP:P1 with additional_addresses
//     IP:P2..., one per service port (sorted), and has no original_dst
//     listener filter: the destination_port of each filter chain then
//     matches the real local port a connection arrived on;
//   - the outbound HTTP listener and the TCP dependency listeners keep
//     their ports on IP instead of 127.0.0.1;
//   - cluster "inbound|<port>" (STATIC) has the single endpoint
//     AppIP:AppPorts[port].
//
// Routes and endpoints are unchanged (callers reach an instance at
// Address{Host: IP, Port: 0}, i.e. IP:<service port>). c is not modified:
// the resources that change are cloned, the others shared. The result has
// the same Name, Service, Version and SnapshotVersion as c: the variant is
// a pure function of the class and the placement, so the version still
// identifies what the instance runs.
func Localize(c *Class, p Placement) (*Class, error) {
	if net.ParseIP(p.IP) == nil {
		return nil, fmt.Errorf("localize %s: invalid IP %q", c.Name, p.IP)
	}
	appIP := p.AppIP
	if appIP == "" {
		appIP = p.IP
	}
	if net.ParseIP(appIP) == nil {
		return nil, fmt.Errorf("localize %s: invalid app IP %q", c.Name, appIP)
	}
	out := &Class{
		Name:            c.Name,
		Service:         c.Service,
		Version:         c.Version,
		Mesh:            c.Mesh,
		Namespace:       c.Namespace,
		SnapshotVersion: c.SnapshotVersion,
		Provenance:      c.Provenance,
		Resources:       make(map[resource.Type][]types.Resource, len(c.Resources)),
	}
	for typ, rs := range c.Resources {
		out.Resources[typ] = rs
	}

	// Listeners.
	ls := make([]types.Resource, 0, len(c.Resources[resource.ListenerType]))
	var ports []uint32
	for _, r := range c.Resources[resource.ListenerType] {
		l, ok := r.(*listenerv3.Listener)
		if !ok {
			return nil, fmt.Errorf("localize %s: listener resource is a %T", c.Name, r)
		}
		l = proto.Clone(l).(*listenerv3.Listener)
		if l.GetName() == InboundListenerName {
			var err error
			if ports, err = localizeInbound(l, p.IP); err != nil {
				return nil, fmt.Errorf("localize %s: %w", c.Name, err)
			}
		} else {
			sa := l.GetAddress().GetSocketAddress()
			if sa == nil {
				return nil, fmt.Errorf("localize %s: listener %s has no socket address", c.Name, l.GetName())
			}
			sa.Address = p.IP
		}
		ls = append(ls, l)
	}
	out.Resources[resource.ListenerType] = ls

	// Inbound clusters.
	want := map[uint32]bool{}
	for _, port := range ports {
		want[port] = true
	}
	cs := make([]types.Resource, 0, len(c.Resources[resource.ClusterType]))
	for _, r := range c.Resources[resource.ClusterType] {
		cl, ok := r.(*clusterv3.Cluster)
		if !ok {
			return nil, fmt.Errorf("localize %s: cluster resource is a %T", c.Name, r)
		}
		if !strings.HasPrefix(cl.GetName(), "inbound|") {
			cs = append(cs, r)
			continue
		}
		var port uint32
		if _, err := fmt.Sscanf(cl.GetName(), "inbound|%d", &port); err != nil {
			return nil, fmt.Errorf("localize %s: cluster %s: %v", c.Name, cl.GetName(), err)
		}
		app, ok := p.AppPorts[port]
		if !ok || app == 0 {
			return nil, fmt.Errorf("localize %s: no app port for service port %d", c.Name, port)
		}
		if appIP == p.IP && want[app] {
			return nil, fmt.Errorf("localize %s: app port %d for service port %d is a port of the inbound listener on %s", c.Name, app, port, p.IP)
		}
		cl = proto.Clone(cl).(*clusterv3.Cluster)
		cl.LoadAssignment = loadAssignment(cl.GetName(), []Address{{Host: appIP, Port: app}})
		cs = append(cs, cl)
	}
	out.Resources[resource.ClusterType] = cs
	return out, nil
}

// localizeInbound rebinds the inbound listener to ip on the ports its
// filter chains match, and drops original_dst. It returns the ports.
func localizeInbound(l *listenerv3.Listener, ip string) ([]uint32, error) {
	seen := map[uint32]bool{}
	var ports []uint32
	for _, fc := range l.GetFilterChains() {
		dp := fc.GetFilterChainMatch().GetDestinationPort()
		if dp == nil {
			return nil, fmt.Errorf("inbound filter chain %q matches no destination port", fc.GetName())
		}
		if !seen[dp.GetValue()] {
			seen[dp.GetValue()] = true
			ports = append(ports, dp.GetValue())
		}
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("inbound listener has no filter chain")
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	l.Address = socketAddress(ip, ports[0])
	l.AdditionalAddresses = nil
	for _, port := range ports[1:] {
		l.AdditionalAddresses = append(l.AdditionalAddresses, &listenerv3.AdditionalAddress{Address: socketAddress(ip, port)})
	}
	filters := l.ListenerFilters[:0]
	for _, f := range l.GetListenerFilters() {
		if f.GetName() != filterOriginalDst {
			filters = append(filters, f)
		}
	}
	if len(filters) == 0 {
		filters = nil
	}
	l.ListenerFilters = filters
	l.UseOriginalDst = nil
	return ports, nil
}

// LocalAddress is the Address a caller's EDS gives for an instance placed
// at ip: every service port on that IP.
func LocalAddress(ip string) Address { return Address{Host: ip, Port: 0} }
