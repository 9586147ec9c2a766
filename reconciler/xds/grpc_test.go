package xds

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/api/status"
)

// TestGRPCXDSClient: gRPC-Go's xDS client is a second xDS peer. It
// resolves xds:///reviews.shop:9080 through the Server (LDS API listener
// -> RDS -> CDS -> EDS over ADS) and calls a real gRPC health service at
// the EDS endpoint. The compiler emits sidecar listeners, not API
// listeners, so the proxyless class is built here by hand.
func TestGRPCXDSClient(t *testing.T) {
	// The workload: a gRPC server with the health service.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	const target = "reviews.shop:9080"
	class := proxylessClass(t, "grpcclient-v1", "r1/proxyless", target, ln.Addr().(*net.TCPAddr))
	s, addr := startServer(t, Options{})
	if err := s.Publish("r1", &compiler.Result{Classes: []*compiler.Class{class}}); err != nil {
		t.Fatal(err)
	}

	boot := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
		"node": {"id": "grpcclient-1", "cluster": "grpcclient-v1"}
	}`, addr)
	rb, err := xds.NewXDSResolverWithConfigForTesting([]byte(boot))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("Check through xds:///%s: %v\nstatus:\n%s", target, err, dumpStatus(s.Status()))
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v", resp.GetStatus())
	}
	st := waitStatus(t, s, 10*time.Second, "the gRPC client ACKs all four types", func(st status.Status) bool {
		p := proxy(st, "grpcclient-1")
		return inSync("grpcclient-1")(st) && len(p.Acked) == 4
	})
	if p := proxy(st, "grpcclient-1"); p.Class != "grpcclient-v1" || p.Transport != status.TransportSotW || p.LastNACK != nil {
		t.Errorf("gRPC client status: %+v", p)
	}
}

// proxylessClass is what a proxyless gRPC client of target needs: an API
// listener named as the target (HTTP connection manager with the router,
// routes over RDS), the route to an EDS cluster, and its endpoint.
func proxylessClass(t *testing.T, name, version, target string, ep *net.TCPAddr) *compiler.Class {
	t.Helper()
	ads := &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3, ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	const routeName, clusterName = "outbound|grpc", "outbound|9080|v1|reviews.shop"
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		t.Fatal(err)
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads, RouteConfigName: routeName}},
		HttpFilters:    []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &compiler.Class{
		Name:            name,
		SnapshotVersion: version,
		Resources: map[resource.Type][]types.Resource{
			resource.ListenerType: {&listenerv3.Listener{Name: target, ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}},
			resource.RouteType: {&routev3.RouteConfiguration{Name: routeName, VirtualHosts: []*routev3.VirtualHost{{
				Name:    target,
				Domains: []string{target, "reviews.shop"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: clusterName}}},
				}},
			}}}},
			resource.ClusterType: {&clusterv3.Cluster{
				Name:                 clusterName,
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
				EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads},
				LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
			}},
			resource.EndpointType: {&endpointv3.ClusterLoadAssignment{
				ClusterName: clusterName,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{
					Locality:            &corev3.Locality{Region: "local"}, // gRPC rejects a locality without one
					LoadBalancingWeight: wrapperspb.UInt32(1),
					LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
							Address: ep.IP.String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ep.Port)},
						}}},
					}}}},
				}},
			}},
		},
	}
}
