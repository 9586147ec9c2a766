package compiler

import (
	"fmt"
	"math"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-dev/weft/schema/mesh"
)

// Envoy extension names used by the compiled configuration.
const (
	filterHCM         = "envoy.filters.network.http_connection_manager"
	filterTCPProxy    = "envoy.filters.network.tcp_proxy"
	filterNetworkRBAC = "envoy.filters.network.rbac"
	filterRBAC        = "envoy.filters.http.rbac"
	// The inbound HTTP connection manager runs two RBAC filters; a route's
	// typed_per_filter_config is looked up by filter name, so each has its
	// own (see authz.go).
	filterRBACDeny       = filterRBAC + ".deny"
	filterRBACAllow      = filterRBAC + ".allow"
	filterFault          = "envoy.filters.http.fault"
	filterLocalRateLimit = "envoy.filters.http.local_ratelimit"
	filterRouter         = "envoy.filters.http.router"
	filterOriginalDst    = "envoy.filters.listener.original_dst"
	filterTLSInspector   = "envoy.filters.listener.tls_inspector"
	transportSocketTLS   = "envoy.transport_sockets.tls"
	httpProtocolOptions  = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// marshalAny packs m into an Any with deterministic encoding: Any values
// are opaque bytes to the snapshot hash, so map fields inside them (RBAC
// policies, metadata structs) must be encoded in a stable order.
func marshalAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("packing %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}

// packer packs messages into Anys and remembers the first failure, so that
// builders can stay expression-shaped. Failures only come from invalid
// UTF-8 in user strings. It also remembers the message behind each Any, so
// that the acceptance gate checks it without unmarshaling the bytes.
type packer struct {
	err    error
	packed map[*anypb.Any]proto.Message
}

func (p *packer) any(m proto.Message) *anypb.Any {
	a, err := marshalAny(m)
	if err != nil && p.err == nil {
		p.err = err
	}
	if p.packed == nil {
		p.packed = map[*anypb.Any]proto.Message{}
	}
	p.packed[a] = m
	return a
}

func (p *packer) httpFilter(name string, m proto.Message) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: p.any(m)}}
}

func (p *packer) networkFilter(name string, m proto.Message) *listenerv3.Filter {
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: p.any(m)}}
}

func (p *packer) routerFilter() *hcmv3.HttpFilter {
	return p.httpFilter(filterRouter, &routerv3.Router{})
}

// adsConfigSource is how a proxy fetches dynamic resources: over its ADS
// stream, xDS v3.
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// hcm builds an HTTP connection manager that takes its routes from RDS.
// Every connection manager weft emits, inbound and outbound, normalizes
// the path before any filter or route sees it (Envoy's "Configuring Envoy
// as an edge proxy" recommendations for RBAC and path routing), and the
// normalized path is also the one forwarded, so the app sees the path that
// was authorized:
//
//   - normalize_path: RFC 3986 dot segments resolved, percent-encoded
//     unreserved characters (%61 = "a", %2e = ".") decoded, "\" turned
//     into "/";
//   - merge_slashes: "//admin" is "/admin";
//   - path_with_escaped_slashes_action REJECT_REQUEST: a path holding
//     %2F or %5C (any case) gets a 400, since a backend may or may not
//     decode them into separators (the edge's plaintext chain redirects
//     instead, see inboundHCM);
//   - server_header_transformation PASS_THROUGH: Envoy adds no
//     "server: envoy"; a server header the app sets passes (header rules
//     may remove it).
func hcm(statPrefix, routeName string, filters []*hcmv3.HttpFilter) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: routeName,
		}},
		HttpFilters:                  filters,
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_REJECT_REQUEST,
		ServerHeaderTransformation:   hcmv3.HttpConnectionManager_PASS_THROUGH,
	}
}

// faultFilter is the outbound fault filter: it does nothing by itself and
// is configured per route (typed_per_filter_config). It is always present,
// so adding the first fault to a route never changes the listener (a
// listener change drains its connections).
func (p *packer) faultFilter() *hcmv3.HttpFilter {
	return p.httpFilter(filterFault, &faultv3.HTTPFault{})
}

// faultConfig is a route's fault filter configuration.
func faultConfig(f *mesh.Fault) *faultv3.HTTPFault {
	out := &faultv3.HTTPFault{}
	if f.Delay != nil {
		out.Delay = &faultcommonv3.FaultDelay{
			FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: duration(f.Delay.Duration.Duration)},
			Percentage:         fractionalPercent(f.Delay.Percent),
		}
	}
	if f.Abort != nil {
		status := f.Abort.Status
		if status == 0 {
			status = 503
		}
		out.Abort = &faultv3.FaultAbort{
			ErrorType:  &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(status)},
			Percentage: fractionalPercent(f.Abort.Percent),
		}
	}
	return out
}

// localRateLimit is a local rate limit filter configuration. With rl nil it
// has no bucket of its own and only acts on routes that configure one.
// The bucket holds burst tokens and gets requests back every period
// (requestsPerSecond: every second); Envoy refills it continuously at that
// rate.
func localRateLimit(prefix string, rl *mesh.RateLimit) *localratelimitv3.LocalRateLimit {
	out := &localratelimitv3.LocalRateLimit{StatPrefix: prefix}
	if rl == nil {
		return out
	}
	tokens, every := rl.Refill()
	out.TokenBucket = &typev3.TokenBucket{
		MaxTokens:     uint32(rl.BurstOrDefault()),
		TokensPerFill: wrapperspb.UInt32(uint32(tokens)),
		FillInterval:  durationpb.New(every),
	}
	out.FilterEnabled = runtimePercent(100)
	out.FilterEnforced = runtimePercent(100)
	return out
}

// runtimePercent is a fixed share of requests (no runtime override).
func runtimePercent(pct float64) *corev3.RuntimeFractionalPercent {
	return &corev3.RuntimeFractionalPercent{DefaultValue: fractionalPercent(pct)}
}

// fractionalPercent writes a percentage exactly: whole percents over
// HUNDRED, anything finer over MILLION (4 decimal places).
func fractionalPercent(pct float64) *typev3.FractionalPercent {
	if pct == math.Trunc(pct) {
		return &typev3.FractionalPercent{Numerator: uint32(pct), Denominator: typev3.FractionalPercent_HUNDRED}
	}
	return &typev3.FractionalPercent{
		Numerator:   uint32(math.Round(pct * 10000)),
		Denominator: typev3.FractionalPercent_MILLION,
	}
}

func duration(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// stringMatcher converts a model string match (exact, prefix or regex).
func stringMatcher(sm mesh.StringMatch) *matcherv3.StringMatcher {
	switch {
	case sm.Exact != nil:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: *sm.Exact}}
	case sm.Prefix != nil:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: *sm.Prefix}}
	case sm.Regex != nil:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: regex(*sm.Regex)}}
	}
	return nil
}

func regex(re string) *matcherv3.RegexMatcher { return &matcherv3.RegexMatcher{Regex: re} }

// headerMatcher converts a model header condition.
func headerMatcher(name string, sm mesh.StringMatch) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: strings.ToLower(name)}
	if sm.Present != nil {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: *sm.Present}
		return hm
	}
	hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(sm)}
	return hm
}

// methodMatcher matches the :method pseudo-header against a set of methods.
func methodMatcher(methods []string) *routev3.HeaderMatcher {
	if len(methods) == 1 {
		return &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
			StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: methods[0]}},
		}}
	}
	return &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
			SafeRegex: regex(methodsRegex(methods)),
		}},
	}}
}

// methodsRegex is the :method regex of a route with several methods.
func methodsRegex(methods []string) string { return "^(" + strings.Join(methods, "|") + ")$" }

// securityHeaders is the response preset "security".
var securityHeaders = [][2]string{
	{"strict-transport-security", "max-age=31536000; includeSubDomains"},
	{"x-content-type-options", "nosniff"},
	{"x-frame-options", "DENY"},
	{"referrer-policy", "no-referrer"},
}

// headerOps converts header edits: add appends (APPEND_IF_EXISTS_OR_ADD),
// set and presets overwrite (OVERWRITE_IF_EXISTS_OR_ADD), remove removes.
// Names are lower-cased; output is sorted by name. Values are literal
// text: every % is written %% (Envoy reads %COMMAND% as a substitution).
func headerOps(ops *mesh.HeaderOps) (add []*corev3.HeaderValueOption, remove []string) {
	if ops == nil {
		return nil, nil
	}
	appendOnly := map[string]string{}
	for k, v := range ops.Add {
		appendOnly[strings.ToLower(k)] = v
	}
	for _, k := range mesh.SortedKeys(appendOnly) {
		add = append(add, headerValue(k, appendOnly[k], corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD))
	}
	set := map[string]string{}
	if ops.Preset == "security" {
		for _, h := range securityHeaders {
			set[h[0]] = h[1]
		}
	}
	for k, v := range ops.Set { // explicit values win over the preset
		set[strings.ToLower(k)] = v
	}
	for _, k := range mesh.SortedKeys(set) {
		add = append(add, headerValue(k, set[k], corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
	}
	for _, k := range ops.Remove {
		remove = append(remove, strings.ToLower(k))
	}
	return add, remove
}

func headerValue(k, v string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: strings.ToLower(k), Value: escapeHeaderValue(v)},
		AppendAction: action,
	}
}
