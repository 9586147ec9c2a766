package compiler

import (
	"fmt"
	"math"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-dev/weft/schema/mesh"
)

// ConnectTimeout is the connect timeout of every cluster.
const ConnectTimeout = 5 * time.Second

// outboundCluster adds (once) the cluster of one version of a dependency's
// port, or of all its versions when version is "", with its load
// assignment, and returns its name. The cluster depends on the target
// alone, so the classes of one compilation share its messages (built by
// the first class that needs it).
func (b *classBuilder) outboundCluster(target *mesh.Service, port mesh.Port, version string) (string, error) {
	name := VersionClusterName(target, port.Port, version)
	if _, ok := b.clusters[name]; ok {
		return name, nil
	}
	pos := b.servicePos(target.Name)
	v, _ := b.shared.LoadOrStore(name, &sharedCluster{})
	sc := v.(*sharedCluster)
	sc.once.Do(func() { sc.cl, sc.cla, sc.packed, sc.err = b.buildOutboundCluster(name, target, port, version) })
	if sc.err != nil {
		return "", sc.err
	}
	b.origin[sc.cl] = pos
	b.clusters[name] = sc.cl
	if sc.cl.GetType() == clusterv3.Cluster_EDS {
		b.loads[name] = sc.cla
		b.eds[name] = edsCluster{name: name, service: target.Name, versions: clusterVersions(target, version), all: version == "", port: port.Port}
	}
	if b.packed == nil {
		b.packed = map[*anypb.Any]proto.Message{}
	}
	if b.sharedAnys == nil {
		b.sharedAnys = map[*anypb.Any]bool{}
	}
	for a, m := range sc.packed {
		b.packed[a] = m
		b.sharedAnys[a] = true
	}
	return name, nil
}

// sharedCluster is an outbound cluster and its load assignment, built once
// per compilation.
type sharedCluster struct {
	once sync.Once
	cl   *clusterv3.Cluster
	cla  *endpointv3.ClusterLoadAssignment
	// packed maps the Anys in cl to their messages (for the gate).
	packed map[*anypb.Any]proto.Message
	err    error
}

// buildOutboundCluster builds an outbound cluster: EDS with its load
// assignment, or STRICT_DNS with it inline for DNS names.
func (b *classBuilder) buildOutboundCluster(name string, target *mesh.Service, port mesh.Port, version string) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment, map[*anypb.Any]proto.Message, error) {
	addrs, err := b.addresses(target, version, port.Port)
	if err != nil {
		return nil, nil, nil, err
	}
	cl := &clusterv3.Cluster{
		Name:           name,
		AltStatName:    statName(name),
		ConnectTimeout: duration(ConnectTimeout),
		Metadata:       clusterMetadata(target, port.Port, version),
	}
	cla := loadAssignment(name, addrs)
	if version == "" {
		if err := b.labelVersions(cla, target, port.Port); err != nil {
			return nil, nil, nil, err
		}
	}
	if allIPs(addrs) {
		// The normal case: endpoints come over ADS and can change without
		// touching the cluster.
		cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		cl.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource()}
	} else {
		// Static endpoints written as DNS names (VMs): Envoy resolves them.
		cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		cl.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
		cl.LoadAssignment = cla
	}
	var p packer
	cl.TypedExtensionProtocolOptions = p.upstreamHTTPOptions(port, target.CircuitBreaker)
	if target.MTLS != mesh.MTLSDisable {
		cl.TransportSocket = p.upstreamTLS(name, b.m.SPIFFEID(target), port.Protocol == mesh.GRPC)
	}
	if p.err != nil {
		return nil, nil, nil, p.err
	}
	cl.CircuitBreakers = circuitBreakers(target.CircuitBreaker)
	cl.OutlierDetection = outlierDetection(target.OutlierDetection)
	return cl, cla, p.packed, nil
}

// inboundCluster adds the cluster to the app on loopback.
func (b *classBuilder) inboundCluster(port mesh.Port) string {
	name := InboundClusterName(port.Port)
	cl := &clusterv3.Cluster{
		Name:                 name,
		AltStatName:          statName(name),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       duration(ConnectTimeout),
		LoadAssignment:       loadAssignment(name, []Address{{Host: "127.0.0.1", Port: port.Port}}),
	}
	b.origin[cl] = b.servicePos(b.svc.Name)
	if port.Protocol == mesh.GRPC {
		cl.TypedExtensionProtocolOptions = b.http2Options()
	}
	b.clusters[name] = cl
	return name
}

// http2Options makes a cluster speak HTTP/2 (prior knowledge or ALPN h2).
func (p *packer) http2Options() map[string]*anypb.Any {
	return map[string]*anypb.Any{httpProtocolOptions: p.any(http2ProtocolOptions())}
}

// upstreamHTTPOptions are an outbound cluster's HTTP protocol options:
// HTTP/2 for a gRPC port, and the circuit breaker's
// maxRequestsPerConnection (HTTP/1.1 for an HTTP port, then). Nil for an
// HTTP port without a request cap: Envoy's default, HTTP/1.1.
func (p *packer) upstreamHTTPOptions(port mesh.Port, cb *mesh.CircuitBreaker) map[string]*anypb.Any {
	var perConn *uint32
	if cb != nil {
		perConn = cb.MaxRequestsPerConnection
	}
	var opts *upstreamhttpv3.HttpProtocolOptions
	switch {
	case port.Protocol == mesh.GRPC:
		opts = http2ProtocolOptions()
	case port.Protocol == mesh.HTTP && perConn != nil:
		opts = http1ProtocolOptions()
	default:
		return nil
	}
	if perConn != nil {
		opts.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(*perConn)}
	}
	return map[string]*anypb.Any{httpProtocolOptions: p.any(opts)}
}

func http2ProtocolOptions() *upstreamhttpv3.HttpProtocolOptions {
	return &upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	}
}

func http1ProtocolOptions() *upstreamhttpv3.HttpProtocolOptions {
	return &upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{
					HttpProtocolOptions: &corev3.Http1ProtocolOptions{},
				},
			},
		},
	}
}

// sdsConfigSource is where certificates come from: the agent's SDS server,
// reached through the bootstrap's sds-grpc cluster.
func sdsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
			ApiType:             corev3.ApiConfigSource_GRPC,
			TransportApiVersion: corev3.ApiVersion_V3,
			GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
				EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: SDSClusterName},
			}}},
		}},
	}
}

func sdsSecret(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: sdsConfigSource()}
}

// upstreamTLS is mTLS to a mesh peer: present the workload certificate,
// trust the mesh roots and accept only the peer's SPIFFE id.
func (p *packer) upstreamTLS(sni, peerID string, h2 bool) *corev3.TransportSocket {
	common := &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(CertSecretName)},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{
					MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
						SanType: tlsv3.SubjectAltNameMatcher_URI,
						Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: peerID}},
					}},
				},
				ValidationContextSdsSecretConfig: sdsSecret(RootCASecretName),
			},
		},
	}
	if h2 {
		common.AlpnProtocols = []string{"h2"}
	}
	return p.transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: sni})
}

// downstreamTLS is the inbound side of mesh mTLS: a client certificate
// signed by the mesh roots is required; who may call is RBAC's business.
func (p *packer) downstreamTLS(alpn []string) *corev3.TransportSocket {
	return p.transportSocket(&tlsv3.DownstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{
			TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sdsSecret(CertSecretName)},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
				ValidationContextSdsSecretConfig: sdsSecret(RootCASecretName),
			},
			AlpnProtocols: alpn,
		},
		RequireClientCertificate: wrapperspb.Bool(true),
	})
}

func (p *packer) transportSocket(m proto.Message) *corev3.TransportSocket {
	return &corev3.TransportSocket{
		Name:       transportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: p.any(m)},
	}
}

// circuitBreakers are a cluster's thresholds; nil when the circuit
// breaker sets none (maxRequestsPerConnection is a protocol option).
func circuitBreakers(cb *mesh.CircuitBreaker) *clusterv3.CircuitBreakers {
	if cb == nil || (cb.MaxConnections == nil && cb.MaxPendingRequests == nil && cb.MaxRequests == nil && cb.MaxRetries == nil) {
		return nil
	}
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     u32(cb.MaxConnections),
		MaxPendingRequests: u32(cb.MaxPendingRequests),
		MaxRequests:        u32(cb.MaxRequests),
		MaxRetries:         u32(cb.MaxRetries),
	}}}
}

// outlierDetection is a cluster's outlier detection. max_ejection_percent
// is always written: Envoy's own default (10%) ejects nothing from a
// cluster of fewer than 10 endpoints, because an endpoint is only ejected
// when the ejected share, itself included, stays within it; weft's default
// is mesh.DefaultMaxEjectionPercent (50: one of two).
func outlierDetection(od *mesh.OutlierDetection) *clusterv3.OutlierDetection {
	if od == nil {
		return nil
	}
	out := &clusterv3.OutlierDetection{
		Consecutive_5Xx:           u32(od.Consecutive5xx),
		ConsecutiveGatewayFailure: u32(od.ConsecutiveGatewayErrors),
	}
	if od.ConsecutiveGatewayErrors != nil {
		// Envoy counts gateway errors but does not eject for them unless
		// told to.
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(100)
	}
	if od.Interval != nil {
		out.Interval = duration(od.Interval.Duration)
	}
	if od.BaseEjectionTime != nil {
		out.BaseEjectionTime = duration(od.BaseEjectionTime.Duration)
	}
	// Envoy takes a whole percentage.
	out.MaxEjectionPercent = wrapperspb.UInt32(uint32(math.Round(od.MaxEjectionPercentOrDefault())))
	return out
}

func u32(v *uint32) *wrapperspb.UInt32Value {
	if v == nil {
		return nil
	}
	return wrapperspb.UInt32(*v)
}

// mirrorPort picks the port of a mirror target that receives the copies of
// requests sent to port from: the same port number if it carries HTTP,
// else the target's first port of the same protocol, else its first HTTP
// or gRPC port. The model does not name the port of a mirror.
func mirrorPort(target *mesh.Service, from mesh.Port) (mesh.Port, error) {
	ports := target.PortList()
	for _, p := range ports {
		if p.Port == from.Port && isHTTP(p) {
			return p, nil
		}
	}
	for _, p := range ports {
		if p.Protocol == from.Protocol {
			return p, nil
		}
	}
	for _, p := range ports {
		if isHTTP(p) {
			return p, nil
		}
	}
	return mesh.Port{}, fmt.Errorf("mirror target %s has no HTTP or gRPC port", target.Name)
}
