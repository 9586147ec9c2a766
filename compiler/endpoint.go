package compiler

import (
	"fmt"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"net"
	"net/netip"
	"sort"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/weft-dev/weft/schema/mesh"
)

// addresses returns the endpoints of one version of s (every version when
// version is ""), for a cluster of the given service port: see
// mergeAddresses.
func (c *compilation) addresses(s *mesh.Service, version string, port uint32) ([]Address, error) {
	lists := make([][]Address, 0, len(s.Versions))
	for _, v := range clusterVersions(s, version) {
		addrs, err := c.versionAddresses(s, v)
		if err != nil {
			return nil, err
		}
		lists = append(lists, addrs)
	}
	return mergeAddresses(lists, port), nil
}

// clusterVersions are the versions whose endpoints a cluster of s holds:
// version, or every version of s when version is "".
func clusterVersions(s *mesh.Service, version string) []string {
	if version == "" {
		return s.VersionNames()
	}
	return []string{version}
}

// mergeAddresses is the endpoints of a cluster of the given service port
// from the addresses of its versions: sorted, without duplicates, port 0
// replaced by the service port and "localhost" by 127.0.0.1 (so that a
// local-mode endpoint never resolves to ::1).
func mergeAddresses(lists [][]Address, port uint32) []Address {
	seen := map[Address]bool{}
	var out []Address
	for _, addrs := range lists {
		for _, a := range addrs {
			if a.Port == 0 {
				a.Port = port
			}
			if a.Host == "localhost" {
				a.Host = "127.0.0.1"
			}
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Host != out[j].Host {
			return out[i].Host < out[j].Host
		}
		return out[i].Port < out[j].Port
	})
	return out
}

func (c *compilation) versionAddresses(s *mesh.Service, version string) ([]Address, error) {
	if c.eps != nil {
		return c.eps[s.Name][version], nil
	}
	v := s.Versions[version]
	if v == nil {
		return nil, fmt.Errorf("service %s has no version %q", s.Name, version)
	}
	out := make([]Address, 0, len(v.Endpoints))
	for _, e := range v.Endpoints {
		host, p, err := net.SplitHostPort(e)
		if err != nil {
			return nil, fmt.Errorf("service %s version %s: endpoint %q: %w", s.Name, version, e, err)
		}
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("service %s version %s: endpoint %q: invalid port", s.Name, version, e)
		}
		out = append(out, Address{Host: host, Port: uint32(n)})
	}
	return out, nil
}

// allIPs reports whether every address is an IP literal: only then can the
// cluster use EDS (Envoy does not resolve names that come over EDS).
func allIPs(addrs []Address) bool {
	for _, a := range addrs {
		if _, err := netip.ParseAddr(a.Host); err != nil {
			return false
		}
	}
	return true
}

// loadAssignment is the ClusterLoadAssignment of a cluster: one locality
// holding every address, in order.
func loadAssignment(cluster string, addrs []Address) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	if len(addrs) == 0 {
		return cla
	}
	lbs := make([]*endpointv3.LbEndpoint, 0, len(addrs))
	for _, a := range addrs {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: socketAddress(a.Host, a.Port)},
		}})
	}
	// One weighted locality: Envoy ignores the weight unless locality
	// weighted load balancing is on, but gRPC's xDS client drops a
	// locality without one, and with it every endpoint.
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{
		Locality:            &corev3.Locality{},
		LoadBalancingWeight: wrapperspb.UInt32(1),
		LbEndpoints:         lbs,
	}}
	return cla
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func pipeAddress(path string) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: path}}}
}
