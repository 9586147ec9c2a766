package compiler

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	xdscorev3 "github.com/cncf/xds/go/xds/core/v3"
	xdsmatcherv3 "github.com/cncf/xds/go/xds/type/matcher/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	filelogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"
	statslogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stats/v3"
	streamlogv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	transformstatv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/matching/actions/transform_stat/v3"
	statsinputv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/matching/common_inputs/stats/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-dev/weft/schema/mesh"
)

// Observability names: the stats every HTTP connection manager emits per
// request, their labels, the metadata they read, the tracing cluster.
// docs/observability.md documents them; dashboards and alerts are written
// against them (package compiler/monitoring).
const (
	// StatRequests counts requests: Prometheus envoy_weft_requests_total.
	StatRequests = "weft.requests_total"
	// StatDuration is the request duration histogram in milliseconds:
	// Prometheus envoy_weft_request_duration_milliseconds.
	StatDuration = "weft.request_duration_milliseconds"
	// MetadataNamespace is the filter metadata namespace of the outbound
	// clusters (service, namespace, port, version) and of the endpoints of
	// all-versions clusters (version).
	MetadataNamespace = "weft"
	// NodeMetaVersion is the node metadata field holding the proxy's
	// version: one compiled class serves every version of a service, so
	// the stats read it from the node (CEL xds.node.metadata).
	NodeMetaVersion = "weft.version"
	// TracingClusterName is the cluster of the OpenTelemetry collector.
	TracingClusterName = "tracing|otlp"
	// ReporterSource and ReporterDestination are the values of the
	// reporter label: the caller's outbound side, the callee's inbound side.
	ReporterSource      = "source"
	ReporterDestination = "destination"
	// SourceOutside is source_service on the inbound side for a request
	// that presented no mesh certificate (traffic from outside the mesh).
	SourceOutside = "outside"
)

// Labels of the per-request stats, in the order they are emitted.
const (
	LabelReporter           = "reporter"
	LabelMesh               = "mesh"
	LabelNamespace          = "namespace"
	LabelSourceService      = "source_service"
	LabelSourceVersion      = "source_version"
	LabelSourcePrincipal    = "source_principal"
	LabelDestService        = "destination_service"
	LabelDestVersion        = "destination_version"
	LabelDestPort           = "destination_port"
	LabelResponseCode       = "response_code"
	LabelResponseCodeClass  = "response_code_class"
	LabelGRPCStatus         = "grpc_status"
	statScope               = "weft"
	nodeVersionFormat       = "%CEL(xds.node.metadata['" + NodeMetaVersion + "'])%"
	accessLoggerStats       = "envoy.access_loggers.stats"
	accessLoggerFile        = "envoy.access_loggers.file"
	accessLoggerStdout      = "envoy.access_loggers.stdout"
	accessLoggerStderr      = "envoy.access_loggers.stderr"
	tracerOpenTelemetry     = "envoy.tracers.opentelemetry"
	statTagValueInput       = "envoy.matching.inputs.stat_tag_value"
	transformStatAction     = "envoy.matching.actions.transform_stat"
	outboundDirection       = "outbound"
	inboundDirection        = "inbound"
	clusterMetadataVersion  = "%CLUSTER_METADATA(" + MetadataNamespace + ":version)%"
	upstreamMetadataVersion = "%UPSTREAM_METADATA(" + MetadataNamespace + ":version)%"
)

// side is what one HTTP connection manager knows about the requests it
// sees, for its stats, access log and spans.
type side struct {
	direction string     // outboundDirection or inboundDirection
	port      *mesh.Port // inbound: the service port
	tls       bool       // inbound: the chain requires a mesh certificate
}

// observe adds the class's observability to an HTTP connection manager:
// the per-request stats (unless metrics are off), the JSON access log and
// OpenTelemetry tracing, as configured for the service
// (mesh.Model.TelemetryOf). Outbound (reporter "source") the destination
// comes from the cluster's metadata and, for an all-versions cluster, the
// chosen endpoint's; inbound (reporter "destination") the proxy is the
// destination and the caller is known by its certificate.
func (b *classBuilder) observe(h *hcmv3.HttpConnectionManager, sd side) {
	t := b.m.TelemetryOf(b.svc)
	if t.Metrics {
		h.AccessLog = append(h.AccessLog, b.statsLogger(sd))
	}
	if t.AccessLog != nil {
		h.AccessLog = append(h.AccessLog, b.jsonLogger(t.AccessLog, sd))
	}
	if t.Tracing != nil {
		h.Tracing = &hcmv3.HttpConnectionManager_Tracing{
			RandomSampling: &typev3.Percent{Value: t.Tracing.SamplingPercent},
			Provider: &tracev3.Tracing_Http{
				Name: tracerOpenTelemetry,
				ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: b.any(&tracev3.OpenTelemetryConfig{
					GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
						EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: TracingClusterName},
					}},
					ServiceName: b.svc.Name,
				})},
			},
		}
	}
}

// statTags are the labels of the per-request stats of one side.
func (b *classBuilder) statTags(sd side, withCode bool) []*statslogv3.Config_Tag {
	tag := func(name, format string) *statslogv3.Config_Tag {
		return &statslogv3.Config_Tag{Name: name, ValueFormat: format}
	}
	var tags []*statslogv3.Config_Tag
	if sd.direction == outboundDirection {
		tags = []*statslogv3.Config_Tag{
			tag(LabelReporter, ReporterSource),
			tag(LabelMesh, b.m.Name),
			tag(LabelNamespace, b.svc.Namespace),
			tag(LabelSourceService, b.svc.Name),
			tag(LabelSourceVersion, nodeVersionFormat),
			tag(LabelSourcePrincipal, b.m.SPIFFEID(b.svc)),
			tag(LabelDestService, "%CLUSTER_METADATA("+MetadataNamespace+":service)%"),
			// Exactly one of the two is set: a version cluster's own
			// version, or the version of the endpoint an all-versions
			// cluster picked.
			tag(LabelDestVersion, clusterMetadataVersion+upstreamMetadataVersion),
			tag(LabelDestPort, "%CLUSTER_METADATA("+MetadataNamespace+":port)%"),
		}
	} else {
		source := ""
		if !sd.tls {
			source = SourceOutside
		}
		tags = []*statslogv3.Config_Tag{
			tag(LabelReporter, ReporterDestination),
			tag(LabelMesh, b.m.Name),
			tag(LabelNamespace, b.svc.Namespace),
			tag(LabelSourceService, source),
			tag(LabelSourcePrincipal, "%DOWNSTREAM_PEER_URI_SAN%"),
			tag(LabelDestService, b.svc.Name),
			tag(LabelDestVersion, nodeVersionFormat),
			tag(LabelDestPort, strconv.Itoa(int(sd.port.Port))),
		}
	}
	// An empty label is an absent one to Prometheus, and Envoy wants a
	// non-empty format: leave it out.
	kept := tags[:0]
	for _, t := range tags {
		if t.ValueFormat != "" {
			kept = append(kept, t)
		}
	}
	tags = kept
	if withCode {
		tags = append(tags, tag(LabelResponseCode, "%RESPONSE_CODE%"))
	}
	tags = append(tags, responseClass)
	if withCode {
		tags = append(tags, tag(LabelGRPCStatus, "%GRPC_STATUS_NUMBER%"))
	}
	return tags
}

// responseClass is response_code_class, built once: every connection
// manager's stats share it (resources are never modified once built).
var responseClass = responseClassTag()

// responseClassTag is response_code_class: the response code's first
// digit followed by "xx" ("5xx"; "0xx" when no response was sent), mapped
// by a matcher on the tag's value.
func responseClassTag() *statslogv3.Config_Tag {
	m := map[string]*xdsmatcherv3.Matcher_OnMatch{}
	for d := '0'; d <= '5'; d++ {
		a, _ := marshalAny(&transformstatv3.TransformStat{UpdateTag: &transformstatv3.TransformStat_UpdateTag{NewTagValue: string(d) + "xx"}})
		m[string(d)] = &xdsmatcherv3.Matcher_OnMatch{OnMatch: &xdsmatcherv3.Matcher_OnMatch_Action{
			Action: &xdscorev3.TypedExtensionConfig{Name: transformStatAction, TypedConfig: a},
		}}
	}
	in, _ := marshalAny(&statsinputv3.StatTagValueInput{})
	return &statslogv3.Config_Tag{
		Name:        LabelResponseCodeClass,
		ValueFormat: "%RESPONSE_CODE%",
		Rules: &xdsmatcherv3.Matcher{MatcherType: &xdsmatcherv3.Matcher_MatcherTree_{MatcherTree: &xdsmatcherv3.Matcher_MatcherTree{
			Input:    &xdscorev3.TypedExtensionConfig{Name: statTagValueInput, TypedConfig: in},
			TreeType: &xdsmatcherv3.Matcher_MatcherTree_PrefixMatchMap{PrefixMatchMap: &xdsmatcherv3.Matcher_MatcherTree_MatchMap{Map: m}},
		}}},
	}
}

// statsLogger is the access logger that turns every request into the
// golden-signal stats: weft.requests_total (+1, labelled with the
// response code, its class and the gRPC status) and
// weft.request_duration_milliseconds (%DURATION%, labelled with the
// class).
func (b *classBuilder) statsLogger(sd side) *accesslogv3.AccessLog {
	cfg := &statslogv3.Config{
		StatsScope: &typev3.Scope{Prefix: statScope},
		Counters: []*statslogv3.Config_Counter{{
			Stat:       &statslogv3.Config_Stat{Name: strings.TrimPrefix(StatRequests, statScope+"."), Tags: b.statTags(sd, true)},
			ValueFixed: wrapperspb.UInt64(1),
		}},
		Histograms: []*statslogv3.Config_Histogram{{
			Stat:        &statslogv3.Config_Stat{Name: strings.TrimPrefix(StatDuration, statScope+"."), Tags: b.statTags(sd, false)},
			Unit:        statslogv3.Config_Histogram_Milliseconds,
			ValueFormat: "%DURATION%",
		}},
	}
	return &accesslogv3.AccessLog{Name: accessLoggerStats, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: b.any(cfg)}}
}

// accessLogFormat is the command operator (or literal) of each access log
// field on one side.
func (b *classBuilder) accessLogFormat(sd side) map[string]string {
	self := b.m.SPIFFEID(b.svc)
	f := map[string]string{
		"start_time":       "%START_TIME%",
		"method":           "%REQ(:METHOD)%",
		"path":             "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"authority":        "%REQ(:AUTHORITY)%",
		"protocol":         "%PROTOCOL%",
		"response_code":    "%RESPONSE_CODE%",
		"response_flags":   "%RESPONSE_FLAGS%",
		"grpc_status":      "%GRPC_STATUS_NUMBER%",
		"duration_ms":      "%DURATION%",
		"bytes_received":   "%BYTES_RECEIVED%",
		"bytes_sent":       "%BYTES_SENT%",
		"upstream_cluster": "%UPSTREAM_CLUSTER_RAW%",
		"upstream_host":    "%UPSTREAM_HOST%",
		"request_id":       "%REQ(X-REQUEST-ID)%",
		"trace_id":         "%TRACE_ID%",
		"user_agent":       "%REQ(USER-AGENT)%",
		"direction":        sd.direction,
	}
	if sd.direction == outboundDirection {
		f["source_identity"] = self
		f["destination_identity"] = "%UPSTREAM_PEER_URI_SAN%"
		f["source_service"] = b.svc.Name
		f["destination_service"] = "%CLUSTER_METADATA(" + MetadataNamespace + ":service)%"
	} else {
		f["source_identity"] = "%DOWNSTREAM_PEER_URI_SAN%"
		f["destination_identity"] = self
		f["source_service"] = ""
		if !sd.tls {
			f["source_service"] = SourceOutside
		}
		f["destination_service"] = b.svc.Name
	}
	return f
}

// jsonLogger writes one JSON line per request with the configured fields
// to stdout, stderr or a file.
func (b *classBuilder) jsonLogger(al *mesh.AccessLog, sd side) *accesslogv3.AccessLog {
	fields := al.Fields
	if len(fields) == 0 {
		fields = mesh.AccessLogFields
	}
	formats := b.accessLogFormat(sd)
	js := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for _, f := range fields {
		if v, ok := formats[f]; ok {
			js.Fields[f] = structpb.NewStringValue(v)
		}
	}
	format := &corev3.SubstitutionFormatString{
		Format: &corev3.SubstitutionFormatString_JsonFormat{JsonFormat: js},
	}
	var name string
	var cfg proto.Message
	switch al.Output {
	case "stdout":
		name = accessLoggerStdout
		cfg = &streamlogv3.StdoutAccessLog{AccessLogFormat: &streamlogv3.StdoutAccessLog_LogFormat{LogFormat: format}}
	case "stderr":
		name = accessLoggerStderr
		cfg = &streamlogv3.StderrAccessLog{AccessLogFormat: &streamlogv3.StderrAccessLog_LogFormat{LogFormat: format}}
	default:
		name = accessLoggerFile
		cfg = &filelogv3.FileAccessLog{Path: al.Output, AccessLogFormat: &filelogv3.FileAccessLog_LogFormat{LogFormat: format}}
	}
	return &accesslogv3.AccessLog{Name: name, ConfigType: &accesslogv3.AccessLog_TypedConfig{TypedConfig: b.any(cfg)}}
}

// tracingCluster adds the cluster of the OpenTelemetry collector when the
// service traces: HTTP/2 (OTLP/gRPC), plaintext, STATIC for an IP and
// STRICT_DNS for a name.
func (b *classBuilder) tracingCluster() error {
	t := b.m.TelemetryOf(b.svc).Tracing
	if t == nil {
		return nil
	}
	host, port, err := net.SplitHostPort(t.Collector)
	if err != nil {
		return fmt.Errorf("tracing collector %q: %w", t.Collector, err)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return fmt.Errorf("tracing collector %q: invalid port", t.Collector)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	cl := &clusterv3.Cluster{
		Name:                          TracingClusterName,
		AltStatName:                   statName(TracingClusterName),
		ConnectTimeout:                duration(ConnectTimeout),
		LoadAssignment:                loadAssignment(TracingClusterName, []Address{{Host: host, Port: uint32(n)}}),
		TypedExtensionProtocolOptions: b.http2Options(),
	}
	if _, err := netip.ParseAddr(host); err == nil {
		cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	} else {
		cl.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		cl.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	}
	b.origin[cl] = b.servicePos(b.svc.Name)
	b.clusters[cl.Name] = cl
	return nil
}

// clusterMetadata is the weft filter metadata of an outbound cluster: the
// destination's service, namespace, port and (for a version cluster)
// version, which the per-request stats and the access log read.
func clusterMetadata(target *mesh.Service, port uint32, version string) *corev3.Metadata {
	f := map[string]*structpb.Value{
		"service":   structpb.NewStringValue(target.Name),
		"namespace": structpb.NewStringValue(target.Namespace),
		"port":      structpb.NewStringValue(strconv.Itoa(int(port))),
	}
	if version != "" {
		f["version"] = structpb.NewStringValue(version)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{MetadataNamespace: {Fields: f}}}
}

// labelVersions sets, on the endpoints of an all-versions cluster, the
// version each address belongs to (the first version, in order, that has
// it), so that a request's stats name the version that served it.
func (b *classBuilder) labelVersions(cla *endpointv3.ClusterLoadAssignment, target *mesh.Service, port uint32) error {
	byVersion := map[string][]Address{}
	for _, v := range target.VersionNames() {
		addrs, err := b.addresses(target, v, port)
		if err != nil {
			return err
		}
		byVersion[v] = addrs
	}
	setEndpointVersions(cla, target.VersionNames(), byVersion)
	return nil
}

// setEndpointVersions writes into the metadata of each endpoint of cla
// (an all-versions cluster's) the version whose addresses hold it: the
// first of versions, in that order, for an address two versions share.
func setEndpointVersions(cla *endpointv3.ClusterLoadAssignment, versions []string, byVersion map[string][]Address) {
	versionOf := map[Address]string{}
	for _, v := range versions {
		for _, a := range byVersion[v] {
			if _, ok := versionOf[a]; !ok {
				versionOf[a] = v
			}
		}
	}
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			v, ok := versionOf[Address{Host: sa.GetAddress(), Port: sa.GetPortValue()}]
			if !ok {
				continue
			}
			e.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{MetadataNamespace: {Fields: map[string]*structpb.Value{
				"version": structpb.NewStringValue(v),
			}}}}
		}
	}
}

// ClusterStatName is the alt_stat_name of cluster name: the name with '|',
// ':' and '.' replaced by '_', a single token of a stat name, from which
// the bootstrap's stats tags extract the destination (service and version
// names hold no '_'). Envoy's stats of the cluster are named
// "cluster.<ClusterStatName>.<stat>" ("cluster.outbound_9080_v1_reviews_shop.upstream_rq_200").
func ClusterStatName(name string) string { return statName(name) }

func statName(name string) string {
	return strings.NewReplacer("|", "_", ":", "_", ".", "_").Replace(name)
}
