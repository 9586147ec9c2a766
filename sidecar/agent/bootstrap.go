package agent

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weft-dev/weft/compiler"
)

// Bootstrap is the Envoy bootstrap the agent writes:
//
//	node:     {id: NodeID, cluster: Class (else Service), metadata: NodeMetadata + weft.identity, weft.class (with a Class)}
//	admin:    {address: {pipe: {path: AdminSocket, mode: 0600}}}
//	dynamic_resources (only with an XDSAddress):
//	  ads_config: {api_type: GRPC | DELTA_GRPC, envoy_grpc: xds-grpc, set_node_on_first_message_only}
//	  cds_config: {ads: {}}, lds_config: {ads: {}}
//	stats_config: compiler.StatsConfig (fixed tags mesh, namespace, source_service, source_version)
//	static_resources:
//	  clusters: xds-grpc and sds-grpc, both HTTP/2 to the agent's unix socket
//	            + StaticResources (listeners, clusters) of the Config
//	  listeners: with a StatsAddress, the stats listener (GET /stats/prometheus,
//	            proxied to the admin through the static cluster "admin")
//
// Routes and endpoints arrive over ADS as the listeners and clusters ask
// for them; certificates over SDS ("default", "ROOTCA") from sds-grpc.
func Bootstrap(cfg Config) (*bootstrapv3.Bootstrap, error) {
	meta := map[string]any{"weft.identity": cfg.Identity.String()}
	cluster := cfg.Service
	if cfg.Class != "" {
		meta["weft.class"], cluster = cfg.Class, cfg.Class
	}
	keys := make([]string, 0, len(cfg.NodeMetadata))
	for k := range cfg.NodeMetadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		meta[k] = cfg.NodeMetadata[k]
	}
	md, err := structpb.NewStruct(meta)
	if err != nil {
		return nil, err
	}
	h2, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	})
	if err != nil {
		return nil, err
	}
	socketCluster := func(name string) *clusterv3.Cluster {
		return &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(time.Second),
			LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: cfg.Socket}}},
				}}}},
			}}},
			TypedExtensionProtocolOptions: map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": h2},
		}
	}
	sr := &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{socketCluster(compiler.SDSClusterName)}}
	b := &bootstrapv3.Bootstrap{
		Node: &corev3.Node{Id: cfg.NodeID, Cluster: cluster, Metadata: md},
		Admin: &bootstrapv3.Admin{Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{
			Path: cfg.AdminSocket, Mode: 0o600,
		}}}},
		StaticResources: sr,
	}
	if cfg.XDSAddress != "" {
		sr.Clusters = append(sr.Clusters, socketCluster(XDSClusterName))
		apiType := corev3.ApiConfigSource_GRPC
		if cfg.DeltaXDS {
			apiType = corev3.ApiConfigSource_DELTA_GRPC
		}
		ads := &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}
		b.DynamicResources = &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:                   apiType,
				TransportApiVersion:       corev3.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName},
				}}},
			},
			CdsConfig: ads,
			LdsConfig: proto.Clone(ads).(*corev3.ConfigSource),
		}
	}
	if extra := cfg.StaticResources; extra != nil {
		for _, c := range extra.Clusters {
			if c.GetName() == compiler.SDSClusterName || c.GetName() == XDSClusterName {
				return nil, fmt.Errorf("agent: static cluster name %s is reserved", c.GetName())
			}
		}
		extra = proto.Clone(extra).(*bootstrapv3.Bootstrap_StaticResources)
		sr.Listeners = append(sr.Listeners, extra.Listeners...)
		sr.Clusters = append(sr.Clusters, extra.Clusters...)
		sr.Secrets = append(sr.Secrets, extra.Secrets...)
	}
	var listen *corev3.Address
	if cfg.StatsAddress != "" {
		host, port, err := net.SplitHostPort(cfg.StatsAddress)
		n, perr := strconv.ParseUint(port, 10, 16)
		if err != nil || perr != nil {
			return nil, fmt.Errorf("agent: stats address %q: want IP:port", cfg.StatsAddress)
		}
		listen = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(n)},
		}}}
	}
	tags := compiler.ProxyTags{Mesh: cfg.Mesh, Namespace: cfg.Identity.Namespace, Service: cfg.Service, Version: cfg.Version}
	if err := compiler.AddStats(b, tags, listen); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("agent: bootstrap: %w", err)
	}
	return b, nil
}

// writeBootstrap writes the bootstrap as YAML (mode 0644: it holds no
// secret).
func writeBootstrap(path string, b *bootstrapv3.Bootstrap) error {
	y, err := compiler.MarshalYAMLObject(b)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, y, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
