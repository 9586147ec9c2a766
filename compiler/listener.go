package compiler

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-dev/weft/schema/mesh"
)

// Transport protocols detected by the TLS inspector.
const (
	transportTLS = "tls"
	transportRaw = "raw_buffer"
)

// inboundMode is the mTLS mode of the inbound listener. An edge service
// receives traffic from outside the mesh, from clients without a mesh
// certificate, so "strict" is relaxed to "permissive" for it (mesh callers
// still use mTLS and are still checked by RBAC).
func inboundMode(s *mesh.Service) mesh.MTLSMode {
	if s.Edge && s.MTLS == mesh.MTLSStrict {
		return mesh.MTLSPermissive
	}
	return s.MTLS
}

// inbound adds the inbound listener, with one filter chain per service port
// and mTLS variant, and its route configurations and clusters.
func (b *classBuilder) inbound() error {
	mode := inboundMode(b.svc)
	l := &listenerv3.Listener{
		Name:             InboundListenerName,
		Address:          socketAddress("0.0.0.0", b.opts.InboundPort),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		ListenerFilters: []*listenerv3.ListenerFilter{{
			Name:       filterOriginalDst,
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: b.any(&originaldstv3.OriginalDst{})},
		}},
	}
	if mode != mesh.MTLSDisable {
		l.ListenerFilters = append(l.ListenerFilters, &listenerv3.ListenerFilter{
			Name:       filterTLSInspector,
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: b.any(&tlsinspectorv3.TlsInspector{})},
		})
	}
	for _, port := range b.svc.PortList() {
		cluster := b.inboundCluster(port)
		if isHTTP(port) {
			rc, err := b.inboundRouteConfig(port, cluster)
			if err != nil {
				return fmt.Errorf("port %s: %w", port.Name, err)
			}
			b.routes[rc.Name] = rc
		}
		var variants []string // transport protocols; "" matches any
		switch mode {
		case mesh.MTLSStrict:
			variants = []string{transportTLS}
		case mesh.MTLSPermissive:
			variants = []string{transportTLS, transportRaw}
		case mesh.MTLSDisable:
			variants = []string{""}
		default:
			return fmt.Errorf("unknown mtls mode %q", mode)
		}
		for _, tp := range variants {
			fc, err := b.inboundChain(port, cluster, tp)
			if err != nil {
				return fmt.Errorf("port %s: %w", port.Name, err)
			}
			l.FilterChains = append(l.FilterChains, fc)
		}
	}
	b.listeners[l.Name] = from(b.origin, l, b.servicePos(b.svc.Name))
	return nil
}

// inboundChain is the filter chain of one port and transport protocol.
func (b *classBuilder) inboundChain(port mesh.Port, cluster, transport string) (*listenerv3.FilterChain, error) {
	tls := transport == transportTLS
	name := InboundClusterName(port.Port)
	if transport != "" {
		name += "|" + map[string]string{transportTLS: "tls", transportRaw: "plaintext"}[transport]
	}
	fc := &listenerv3.FilterChain{
		Name: name,
		FilterChainMatch: &listenerv3.FilterChainMatch{
			DestinationPort:   wrapperspb.UInt32(port.Port),
			TransportProtocol: transport,
		},
	}
	b.origin[fc] = b.servicePos(b.svc.Name)
	prefix := statPrefix(name)
	if isHTTP(port) {
		if tls {
			fc.TransportSocket = b.downstreamTLS([]string{"h2", "http/1.1"})
		}
		fc.Filters = []*listenerv3.Filter{b.networkFilter(filterHCM, b.inboundHCM(port, prefix, tls))}
		return fc, nil
	}
	// TCP: network RBAC decides once per connection, so its rules are in
	// the chain (see docs/decisions.md, "Authorization without a listener
	// drain").
	deny, allow, err := b.rbacRules(false)
	if err != nil {
		return nil, err
	}
	if tls {
		fc.TransportSocket = b.downstreamTLS(nil)
	}
	if deny != nil {
		fc.Filters = append(fc.Filters, b.networkFilter(filterNetworkRBAC, &rbacnetv3.RBAC{Rules: deny, StatPrefix: prefix + "_deny"}))
	}
	fc.Filters = append(fc.Filters,
		b.networkFilter(filterNetworkRBAC, &rbacnetv3.RBAC{Rules: allow, StatPrefix: prefix + "_allow"}),
		b.networkFilter(filterTCPProxy, &tcpproxyv3.TcpProxy{
			StatPrefix:       prefix,
			ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
		}),
	)
	return fc, nil
}

// inboundHCM: RBAC deny, RBAC allow, local rate limit, router.
//
// The RBAC filters count their decisions apart:
// http.<chain stat prefix>.rbac.deny.denied counts the requests deny rules
// refused, ...rbac.allow.denied those no allow rule admitted.
//
// The two RBAC filters hold no rules of their own: the rules are the
// typed_per_filter_config of the port's virtual host (inboundAuthz), which
// reaches Envoy over RDS and applies to the next request, also on open
// connections, without a listener change. Without a route (a request no
// virtual host matches), the allow filter admits nobody.
func (b *classBuilder) inboundHCM(port mesh.Port, prefix string, tls bool) *hcmv3.HttpConnectionManager {
	filters := []*hcmv3.HttpFilter{
		b.httpFilter(filterRBACDeny, &rbachttpv3.RBAC{RulesStatPrefix: "deny"}),
		b.httpFilter(filterRBACAllow, &rbachttpv3.RBAC{RulesStatPrefix: "allow", Rules: &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW}}),
	}
	if hasRateLimit(b.svc) {
		// No bucket of its own: the buckets are in "inbound|<port>" (see
		// inboundRouteConfig), shared by the port's chains.
		filters = append(filters, b.httpFilter(filterLocalRateLimit, localRateLimit(prefix+"_ratelimit", nil)))
	}
	outside := b.svc.Edge && !tls // traffic from outside the mesh
	if outside {
		// No x-envoy-* response headers (x-envoy-upstream-service-time)
		// to the outside, as no server header: they only tell what runs.
		filters = append(filters, b.httpFilter(filterRouter, &routerv3.Router{SuppressEnvoyHeaders: true}))
	} else {
		filters = append(filters, b.routerFilter())
	}
	h := hcm(prefix, InboundRouteName(port.Port), filters)
	if outside {
		// A header whose name has an underscore is dropped: a backend
		// that reads "_" as "-" (CGI, WSGI) would take x_shop_user_id for
		// the x-shop-user-id that the header rules remove (Envoy's edge
		// recommendation; nginx drops them too).
		h.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_DROP_HEADER,
		}
		if port.Protocol == mesh.HTTP {
			// Outside callers of an edge service are browsers: a path
			// with %2F or %5C is answered with a redirect to its
			// unescaped form, which every party then reads the same way
			// (Envoy's edge recommendation). gRPC clients cannot follow
			// redirects and mesh callers send normalized paths: they get
			// REJECT_REQUEST.
			h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT
		}
	}
	// The app learns its caller's SPIFFE id from x-forwarded-client-cert;
	// a value sent by the caller itself is never trusted.
	h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE
	if tls {
		h.ForwardClientCertDetails = hcmv3.HttpConnectionManager_SANITIZE_SET
		h.SetCurrentClientCertDetails = &hcmv3.HttpConnectionManager_SetCurrentClientCertDetails{Uri: true}
	}
	b.observe(h, side{direction: inboundDirection, port: &port, tls: tls})
	return h
}

// hasRateLimit reports whether a service limits any of its requests.
func hasRateLimit(s *mesh.Service) bool {
	if s.RateLimit != nil {
		return true
	}
	for _, r := range s.Routes {
		if r.RateLimit != nil {
			return true
		}
	}
	return false
}

// outboundHTTP adds the outbound HTTP listener and "outbound|http". Both
// exist even for a class without HTTP dependencies (requests then get a
// 404), so that a proxy's listeners do not come and go with its calls.
func (b *classBuilder) outboundHTTP(deps []*mesh.Service) error {
	rc, err := b.outboundRouteConfig(deps)
	if err != nil {
		return err
	}
	b.routes[rc.Name] = rc
	h := hcm("outbound_http", rc.Name, []*hcmv3.HttpFilter{b.faultFilter(), b.routerFilter()})
	b.observe(h, side{direction: outboundDirection})
	b.listeners[OutboundListenerName] = from(b.origin, &listenerv3.Listener{
		Name:             OutboundListenerName,
		Address:          socketAddress("127.0.0.1", b.opts.OutboundPort),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{b.networkFilter(filterHCM, h)},
		}},
	}, b.servicePos(b.svc.Name))
	return nil
}

// outboundTCP adds a loopback listener per TCP port of each dependency,
// proxying to all versions of it. Two of them on one port number cannot
// both be bound, nor can one on a port the proxy or the app listens on.
func (b *classBuilder) outboundTCP(deps []*mesh.Service) error {
	taken := map[uint32]string{
		b.opts.InboundPort:  "the inbound listener",
		b.opts.OutboundPort: "the outbound listener",
	}
	for _, p := range b.svc.PortList() {
		taken[p.Port] = fmt.Sprintf("%s's own port %s", b.svc.Name, p.Name)
	}
	for _, dep := range deps {
		for _, port := range dep.PortList() {
			if isHTTP(port) {
				continue
			}
			name := OutboundTCPListenerName(dep, port.Port)
			if other, ok := taken[port.Port]; ok {
				return fmt.Errorf("TCP port %d of %s collides with %s on 127.0.0.1", port.Port, dep.Name, other)
			}
			taken[port.Port] = "TCP port " + port.Name + " of " + dep.Name
			cluster, err := b.outboundCluster(dep, port, "")
			if err != nil {
				return err
			}
			b.listeners[name] = from(b.origin, &listenerv3.Listener{
				Name:             name,
				Address:          socketAddress("127.0.0.1", port.Port),
				TrafficDirection: corev3.TrafficDirection_OUTBOUND,
				FilterChains: []*listenerv3.FilterChain{{
					Filters: []*listenerv3.Filter{b.networkFilter(filterTCPProxy, &tcpproxyv3.TcpProxy{
						StatPrefix:       statPrefix(name),
						ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
					})},
				}},
			}, b.servicePos(dep.Name))
		}
	}
	return nil
}
