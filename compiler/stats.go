package compiler

import (
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weft-dev/weft/schema/mesh"
)

// The stats endpoint of a proxy: a static listener that serves Envoy's
// Prometheus stats, and only them, without exposing the admin interface.
const (
	// DefaultStatsPort is the port of the stats listener.
	DefaultStatsPort = 15090
	// StatsPath is the only path the stats listener serves.
	StatsPath = "/stats/prometheus"
	// StatsListenerName is the stats listener.
	StatsListenerName = "stats"
	// AdminClusterName is the static cluster through which the stats
	// listener reaches the admin interface (a TCP or a unix socket).
	AdminClusterName = "admin"
)

// ProxyTags identify one proxy; they are the fixed stats tags of every
// stat it emits (except the per-request stats, which carry their own).
type ProxyTags struct {
	Mesh      string
	Namespace string
	Service   string
	Version   string
}

// Tags returns the proxy tags of a class.
func (c *Class) Tags() ProxyTags {
	return ProxyTags{Mesh: c.Mesh, Namespace: c.Namespace, Service: c.Service, Version: c.Version}
}

// StatsConfig is the bootstrap stats_config of a proxy:
//
//   - fixed tags mesh, namespace, source_service, source_version: the
//     proxy itself (empty values are left out);
//   - destination_service, destination_version and destination_port,
//     extracted from the stat names of outbound clusters, whose
//     alt_stat_name is "outbound_<port>_<version>_<service>_<namespace>"
//     (version empty for the all-versions cluster, which then has no
//     destination_version); Envoy's default tags (envoy_cluster_name,
//     envoy_response_code_class, ...) stay;
//   - the buckets of the per-request duration histogram
//     (mesh.LatencyBucketsMs), so that every latency objective is a bucket
//     bound.
func StatsConfig(t ProxyTags) *metricsv3.StatsConfig {
	sc := &metricsv3.StatsConfig{}
	for _, kv := range [][2]string{
		{LabelMesh, t.Mesh}, {LabelNamespace, t.Namespace},
		{LabelSourceService, t.Service}, {LabelSourceVersion, t.Version},
	} {
		if kv[1] != "" {
			sc.StatsTags = append(sc.StatsTags, &metricsv3.TagSpecifier{
				TagName: kv[0], TagValue: &metricsv3.TagSpecifier_FixedValue{FixedValue: kv[1]},
			})
		}
	}
	// Names hold [-a-z0-9] only (schema #Name), so '_' separates them.
	const name = `[-a-z0-9]+`
	for _, re := range [][2]string{
		{LabelDestPort, `^cluster\.outbound_(([0-9]+))_[-a-z0-9]*_` + name + `_` + name + `\.`},
		{LabelDestVersion, `^cluster\.outbound_[0-9]+_((` + name + `))_` + name + `_` + name + `\.`},
		{LabelDestService, `^cluster\.outbound_[0-9]+_[-a-z0-9]*_((` + name + `))_` + name + `\.`},
	} {
		sc.StatsTags = append(sc.StatsTags, &metricsv3.TagSpecifier{
			TagName: re[0], TagValue: &metricsv3.TagSpecifier_Regex{Regex: re[1]},
		})
	}
	sc.HistogramBucketSettings = []*metricsv3.HistogramBucketSettings{{
		Match:   &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: statScope + "."}},
		Buckets: append([]float64(nil), mesh.LatencyBucketsMs...),
	}}
	return sc
}

// StatsListener is the stats listener on listen and the admin cluster it
// uses to reach the admin interface at admin (a socket address or a
// pipe): GET /stats/prometheus (any query) is proxied to the admin, every
// other request gets a 404. Prometheus scrapes it; nothing else of the
// admin interface is reachable through it.
func StatsListener(listen, admin *corev3.Address) (*listenerv3.Listener, *clusterv3.Cluster, error) {
	if listen == nil || admin == nil {
		return nil, nil, fmt.Errorf("stats listener: no listen or admin address")
	}
	var p packer
	rc := &routev3.RouteConfiguration{
		Name: StatsListenerName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    StatsListenerName,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{
					PathSpecifier: &routev3.RouteMatch_Path{Path: StatsPath},
					Headers:       []*routev3.HeaderMatcher{methodMatcher([]string{"GET"})},
				},
				Action: &routev3.Route_Route{Route: toCluster(AdminClusterName)},
			}, {
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 404}},
			}},
		}},
	}
	h := &hcmv3.HttpConnectionManager{
		StatPrefix:     StatsListenerName,
		CodecType:      hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
		HttpFilters:    []*hcmv3.HttpFilter{p.routerFilter()},
	}
	l := &listenerv3.Listener{
		Name:    StatsListenerName,
		Address: listen,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{p.networkFilter(filterHCM, h)},
		}},
	}
	cl := &clusterv3.Cluster{
		Name:                 AdminClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       duration(ConnectTimeout),
		LoadAssignment:       addressAssignment(AdminClusterName, admin),
	}
	if p.err != nil {
		return nil, nil, p.err
	}
	return l, cl, nil
}

// NodeMetadata is the node metadata the compiled configuration reads:
// weft.version (the per-request stats' version label).
func NodeMetadata(t ProxyTags) map[string]string {
	return map[string]string{NodeMetaVersion: t.Version}
}

// AddStats adds to a bootstrap whose admin address is set the stats
// config of the proxy t, its node metadata (NodeMetadata) and, when listen
// is not nil, the stats listener on listen with its admin cluster.
func AddStats(b *bootstrapv3.Bootstrap, t ProxyTags, listen *corev3.Address) error {
	b.StatsConfig = StatsConfig(t)
	if b.Node != nil {
		if b.Node.Metadata == nil {
			b.Node.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		}
		for k, v := range NodeMetadata(t) {
			b.Node.Metadata.Fields[k] = structpb.NewStringValue(v)
		}
	}
	if listen == nil {
		return nil
	}
	l, cl, err := StatsListener(listen, b.GetAdmin().GetAddress())
	if err != nil {
		return err
	}
	b.StaticResources.Listeners = append(b.StaticResources.Listeners, l)
	b.StaticResources.Clusters = append(b.StaticResources.Clusters, cl)
	return nil
}

// addressAssignment is a load assignment with the single endpoint addr.
func addressAssignment(cluster string, addr *corev3.Address) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: proto.Clone(addr).(*corev3.Address)},
		}}},
	}}}
}
