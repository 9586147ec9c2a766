package compiler

import (
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// Bootstrap defaults.
const (
	DefaultAdminPort = 15000
	DefaultSDSSocket = "/var/run/weft/sds.sock"
)

// BootstrapOptions are the per-proxy parts of a static bootstrap.
type BootstrapOptions struct {
	NodeID    string // node.id; default: the class name
	AdminPort uint32 // admin interface on 127.0.0.1; default 15000
	SDSSocket string // unix socket of the agent's SDS server; default /var/run/weft/sds.sock
	// StatsPort is the port of the stats listener on 0.0.0.0 (default
	// 15090; see StatsListener).
	StatsPort uint32
}

// Bootstrap is a static Envoy bootstrap that holds all of a class's
// resources: route configurations are inlined into their connection
// managers, EDS clusters become STATIC clusters with their load assignment
// inline, and the sds-grpc cluster (HTTP/2 over the SDS unix socket) is
// added. Certificates still come from SDS. It serves `envoy --mode
// validate`, `weft build` and running a proxy without a control plane.
// The class is not modified.
func Bootstrap(c *Class, o BootstrapOptions) (*bootstrapv3.Bootstrap, error) {
	if o.NodeID == "" {
		o.NodeID = c.Name
	}
	if o.AdminPort == 0 {
		o.AdminPort = DefaultAdminPort
	}
	if o.SDSSocket == "" {
		o.SDSSocket = DefaultSDSSocket
	}
	routes := map[string]*routev3.RouteConfiguration{}
	for _, r := range c.Resources[resource.RouteType] {
		rc, ok := r.(*routev3.RouteConfiguration)
		if !ok {
			return nil, fmt.Errorf("class %s: route resource is a %T", c.Name, r)
		}
		routes[rc.Name] = rc
	}
	loads := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, r := range c.Resources[resource.EndpointType] {
		cla, ok := r.(*endpointv3.ClusterLoadAssignment)
		if !ok {
			return nil, fmt.Errorf("class %s: endpoint resource is a %T", c.Name, r)
		}
		loads[cla.ClusterName] = cla
	}
	sr := &bootstrapv3.Bootstrap_StaticResources{}
	for _, r := range c.Resources[resource.ListenerType] {
		l, ok := r.(*listenerv3.Listener)
		if !ok {
			return nil, fmt.Errorf("class %s: listener resource is a %T", c.Name, r)
		}
		l, err := inlineRoutes(l, routes)
		if err != nil {
			return nil, fmt.Errorf("class %s: listener %s: %w", c.Name, l.GetName(), err)
		}
		sr.Listeners = append(sr.Listeners, l)
	}
	var p packer
	sr.Clusters = append(sr.Clusters, &clusterv3.Cluster{
		Name:                          SDSClusterName,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:                duration(ConnectTimeout),
		LoadAssignment:                &endpointv3.ClusterLoadAssignment{ClusterName: SDSClusterName, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: pipeAddress(o.SDSSocket)}}}}}}},
		TypedExtensionProtocolOptions: p.http2Options(),
	})
	if p.err != nil {
		return nil, p.err
	}
	for _, r := range c.Resources[resource.ClusterType] {
		cl, ok := r.(*clusterv3.Cluster)
		if !ok {
			return nil, fmt.Errorf("class %s: cluster resource is a %T", c.Name, r)
		}
		if cl.Name == SDSClusterName {
			return nil, fmt.Errorf("class %s: cluster name %s is reserved", c.Name, SDSClusterName)
		}
		cl = proto.Clone(cl).(*clusterv3.Cluster)
		if cl.GetType() == clusterv3.Cluster_EDS {
			cla := loads[cl.Name]
			if cla == nil {
				return nil, fmt.Errorf("class %s: EDS cluster %s has no load assignment", c.Name, cl.Name)
			}
			cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			cl.EdsClusterConfig = nil
			cl.LoadAssignment = proto.Clone(cla).(*endpointv3.ClusterLoadAssignment)
		}
		sr.Clusters = append(sr.Clusters, cl)
	}
	if o.StatsPort == 0 {
		o.StatsPort = DefaultStatsPort
	}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: o.NodeID, Cluster: c.Name},
		Admin: &bootstrapv3.Admin{
			Address: socketAddress("127.0.0.1", o.AdminPort),
		},
		StaticResources: sr,
	}
	if err := AddStats(b, c.Tags(), socketAddress("0.0.0.0", o.StatsPort)); err != nil {
		return nil, fmt.Errorf("class %s: %w", c.Name, err)
	}
	return b, nil
}

// inlineRoutes returns a copy of l whose connection managers carry their
// route configuration instead of an RDS reference.
func inlineRoutes(l *listenerv3.Listener, routes map[string]*routev3.RouteConfiguration) (*listenerv3.Listener, error) {
	l = proto.Clone(l).(*listenerv3.Listener)
	for _, fc := range l.FilterChains {
		for _, f := range fc.Filters {
			if f.Name != filterHCM {
				continue
			}
			h := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
				return nil, err
			}
			rds := h.GetRds()
			if rds == nil {
				continue
			}
			rc := routes[rds.RouteConfigName]
			if rc == nil {
				return nil, fmt.Errorf("no route configuration %q", rds.RouteConfigName)
			}
			h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
			a, err := marshalAny(h)
			if err != nil {
				return nil, err
			}
			f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: a}
		}
	}
	return l, nil
}
