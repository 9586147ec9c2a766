package compiler

import (
	"fmt"
	"strings"

	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weft-dev/weft/schema/mesh"
)

// defaultRetryOn is the schema's default retry condition list.
var defaultRetryOn = []string{"connect-failure", "refused-stream", "reset"}

// outboundRouteConfig is "outbound|http": one virtual host per HTTP or
// gRPC port of every dependency, chosen by Host/:authority.
func (b *classBuilder) outboundRouteConfig(deps []*mesh.Service) (*routev3.RouteConfiguration, error) {
	rc := from(b.origin, &routev3.RouteConfiguration{Name: OutboundHTTPRouteName}, b.servicePos(b.svc.Name))
	for _, dep := range deps {
		bare, _ := barePort(dep)
		for _, port := range dep.PortList() {
			if !isHTTP(port) {
				continue
			}
			vh, err := b.outboundVirtualHost(dep, port, port.Port == bare.Port)
			if err != nil {
				return nil, err
			}
			rc.VirtualHosts = append(rc.VirtualHosts, vh)
		}
	}
	return rc, nil
}

// barePort is the port a request without a port in its Host reaches: port
// 80 if the service has it for HTTP/gRPC, else its first HTTP port, else
// its first gRPC port (gRPC clients always send the port in :authority).
func barePort(s *mesh.Service) (mesh.Port, bool) {
	ports := s.PortList()
	for _, p := range ports {
		if p.Port == 80 && isHTTP(p) {
			return p, true
		}
	}
	for _, proto := range []mesh.Protocol{mesh.HTTP, mesh.GRPC} {
		for _, p := range ports {
			if p.Protocol == proto {
				return p, true
			}
		}
	}
	return mesh.Port{}, false
}

// domains are the names a dependency port is reached by: the short name,
// name.namespace, name.namespace.svc and the FQDN, each with ":<port>";
// the barePort also gets them without a port (Envoy needs every domain to
// be unique in a route configuration).
func domains(s *mesh.Service, port uint32, bare bool) []string {
	names := []string{s.Name, s.Host(), s.Host() + ".svc", s.FQDN()}
	var out []string
	if bare {
		out = append(out, names...)
	}
	for _, n := range names {
		out = append(out, fmt.Sprintf("%s:%d", n, port))
	}
	return out
}

func (b *classBuilder) outboundVirtualHost(dep *mesh.Service, port mesh.Port, bare bool) (*routev3.VirtualHost, error) {
	vh := from(b.origin, &routev3.VirtualHost{
		Name:    VirtualHostName(dep, port.Port),
		Domains: domains(dep, port.Port, bare),
	}, b.servicePos(dep.Name))
	// Every version gets its cluster, whether a route uses it or not, so
	// that editing a route never adds or removes clusters.
	for _, v := range append([]string{""}, dep.VersionNames()...) {
		if _, err := b.outboundCluster(dep, port, v); err != nil {
			return nil, err
		}
	}
	if dep.Headers != nil && !headersAtInbound(dep) {
		vh.RequestHeadersToAdd, vh.RequestHeadersToRemove = headerOps(dep.Headers.Request)
		vh.ResponseHeadersToAdd, vh.ResponseHeadersToRemove = headerOps(dep.Headers.Response)
	}
	for i := range dep.Routes {
		r, err := b.outboundRoute(dep, port, i)
		if err != nil {
			return nil, fmt.Errorf("service %s route %s: %w", dep.Name, routeName(dep.Routes[i], i), err)
		}
		vh.Routes = append(vh.Routes, r)
	}
	if needsDefaultRoute(dep.Routes) {
		all, err := b.outboundCluster(dep, port, "")
		if err != nil {
			return nil, err
		}
		vh.Routes = append(vh.Routes, from(b.origin, &routev3.Route{
			Name:   "default",
			Match:  routeMatch(mesh.Match{}),
			Action: &routev3.Route_Route{Route: b.routeAction(dep, nil, toCluster(all))},
		}, b.servicePos(dep.Name)))
	}
	return vh, nil
}

// needsDefaultRoute reports whether a route table (in precedence order)
// needs the implicit catch-all to every version: unless its last route
// already matches every request.
func needsDefaultRoute(routes []mesh.Route) bool {
	return len(routes) == 0 || !routes[len(routes)-1].Match.IsCatchAll()
}

// routeName is the Envoy name of a route: its name (always set in a loaded
// model; a model built by hand may leave it out).
func routeName(r mesh.Route, i int) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("route-%d", i)
}

func (b *classBuilder) outboundRoute(dep *mesh.Service, port mesh.Port, i int) (*routev3.Route, error) {
	r := dep.Routes[i]
	dest, err := b.destination(dep, port, r.To)
	if err != nil {
		return nil, err
	}
	action := b.routeAction(dep, &r, dest)
	if r.Rewrite != nil && r.Rewrite.Host != "" {
		action.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: r.Rewrite.Host}
	}
	if r.Mirror != nil {
		mp, err := b.mirrorPolicy(port, r.Mirror)
		if err != nil {
			return nil, err
		}
		action.RequestMirrorPolicies = []*routev3.RouteAction_RequestMirrorPolicy{mp}
	}
	out := from(b.origin, &routev3.Route{
		Name:   routeName(r, i),
		Match:  routeMatch(r.Match),
		Action: &routev3.Route_Route{Route: action},
	}, b.routePos(dep.Name, r.Name))
	if r.Headers != nil && !headersAtInbound(dep) {
		out.RequestHeadersToAdd, out.RequestHeadersToRemove = headerOps(r.Headers.Request)
		out.ResponseHeadersToAdd, out.ResponseHeadersToRemove = headerOps(r.Headers.Response)
	}
	if r.Fault != nil {
		out.TypedPerFilterConfig = map[string]*anypb.Any{filterFault: b.any(faultConfig(r.Fault))}
	}
	return out, nil
}

// destination is where a route sends requests: a weighted split between
// versions (zero weights left out), one version's cluster when a single
// version remains, or the all-versions cluster without `to`.
func (b *classBuilder) destination(dep *mesh.Service, port mesh.Port, to map[string]int) (*routev3.RouteAction, error) {
	var versions []string
	for _, v := range mesh.SortedKeys(to) {
		if to[v] > 0 {
			versions = append(versions, v)
		}
	}
	for _, v := range versions {
		if dep.Versions[v] == nil {
			return nil, fmt.Errorf("route to unknown version %q", v)
		}
	}
	if len(versions) == 0 {
		name, err := b.outboundCluster(dep, port, "")
		return toCluster(name), err
	}
	if len(versions) == 1 {
		name, err := b.outboundCluster(dep, port, versions[0])
		return toCluster(name), err
	}
	wc := &routev3.WeightedCluster{}
	for _, v := range versions {
		name, err := b.outboundCluster(dep, port, v)
		if err != nil {
			return nil, err
		}
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name:   name,
			Weight: wrapperspb.UInt32(uint32(to[v])),
		})
	}
	return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}}, nil
}

// toCluster is a route action to one cluster.
func toCluster(name string) *routev3.RouteAction {
	return &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}
}

// routeAction completes a (destination-only) route action with the
// timeout and retry policy of a route (r nil: the implicit default route),
// falling back to the service's.
func (b *classBuilder) routeAction(dep *mesh.Service, r *mesh.Route, a *routev3.RouteAction) *routev3.RouteAction {
	timeout, retries := dep.Timeout, dep.Retries
	if r != nil && r.Timeout != nil {
		timeout = r.Timeout
	}
	if r != nil && r.Retries != nil {
		retries = r.Retries
	}
	if timeout != nil {
		a.Timeout = duration(timeout.Duration)
	}
	a.RetryPolicy = retryPolicy(retries)
	return a
}

func retryPolicy(r *mesh.Retries) *routev3.RetryPolicy {
	if r == nil || r.Attempts <= 0 {
		return nil
	}
	on := r.On
	if len(on) == 0 {
		on = defaultRetryOn
	}
	p := &routev3.RetryPolicy{
		RetryOn:    strings.Join(on, ","),
		NumRetries: wrapperspb.UInt32(uint32(r.Attempts)),
	}
	if r.PerTryTimeout != nil {
		p.PerTryTimeout = duration(r.PerTryTimeout.Duration)
	}
	return p
}

// MirrorHeader marks the copies a mirror sends: the header is set (to
// "true") on the copy only. The copy keeps the primary's Host: Envoy would
// otherwise append "-shadow" to it ("reviews-shadow:9080"), which an app
// that serves virtual hosts does not know.
const MirrorHeader = "x-weft-mirrored"

// mirrorPolicy copies a share of a route's requests to the mirror target
// (one version of it, or all versions; the target may be the route's own
// service).
func (b *classBuilder) mirrorPolicy(from mesh.Port, m *mesh.Mirror) (*routev3.RouteAction_RequestMirrorPolicy, error) {
	target, err := b.service(m.To)
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	if m.Version != "" && target.Versions[m.Version] == nil {
		return nil, fmt.Errorf("mirror: service %s has no version %q", m.To, m.Version)
	}
	port, err := mirrorPort(target, from)
	if err != nil {
		return nil, err
	}
	name, err := b.outboundCluster(target, port, m.Version)
	if err != nil {
		return nil, err
	}
	return &routev3.RouteAction_RequestMirrorPolicy{
		Cluster:                       name,
		RuntimeFraction:               runtimePercent(m.Percent),
		DisableShadowHostSuffixAppend: true,
		RequestHeadersMutations: []*mutationrulesv3.HeaderMutation{{
			Action: &mutationrulesv3.HeaderMutation_Append{
				Append: headerValue(MirrorHeader, "true", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			},
		}},
	}, nil
}

// routeMatch converts a model match: path (prefix "/" when absent),
// headers in name order, methods as a :method header condition.
func routeMatch(m mesh.Match) *routev3.RouteMatch {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if p := m.Path; p != nil {
		switch {
		case p.Exact != nil:
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: *p.Exact}
		case p.Prefix != nil:
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: *p.Prefix}
		case p.Regex != nil:
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: regex(*p.Regex)}
		}
	}
	for _, name := range mesh.SortedKeys(m.Headers) {
		rm.Headers = append(rm.Headers, headerMatcher(name, m.Headers[name]))
	}
	if len(m.Methods) > 0 {
		rm.Headers = append(rm.Headers, methodMatcher(m.Methods))
	}
	return rm
}

// headersAtInbound reports whether a service's header rules (its own and
// its routes') are applied by its own inbound side rather than by its
// callers' outbound virtual hosts: for an edge service, whose traffic
// mostly comes from outside the mesh, through no caller's proxy. Applied
// in one place only, an "add" rule appends its value once.
func headersAtInbound(s *mesh.Service) bool { return s.Edge }

// inboundRouteConfig is "inbound|<port>": everything goes to the app.
//
// Its virtual host holds the port's authorization (inboundAuthz), so that
// a change of authz changes no listener and applies to open connections.
//
// It holds the local rate limit buckets. The service's bucket is the
// virtual host's local_ratelimit config: one bucket per port whatever the
// number of filter chains (a permissive port has two), and changing it
// changes no listener (a listener update drains connections). The
// service's routes are repeated (same matches, same order) up to the last
// one with a rate limit, which carries its own bucket; that bucket replaces
// the service's for the route. The rest is one catch-all. The inbound side
// sets no timeout of its own: the caller's route enforces it.
//
// An edge service's header rules are applied here (headersAtInbound): the
// service's on the virtual host, a route's on its repeated route (routes
// are then repeated up to the last one with a rate limit or header rules).
func (b *classBuilder) inboundRouteConfig(port mesh.Port, cluster string) (*routev3.RouteConfiguration, error) {
	name := InboundRouteName(port.Port)
	vh := from(b.origin, &routev3.VirtualHost{
		Name:    name,
		Domains: []string{"*"},
	}, b.servicePos(b.svc.Name))
	authz, err := b.inboundAuthz()
	if err != nil {
		return nil, err
	}
	vh.TypedPerFilterConfig = authz
	if b.svc.RateLimit != nil {
		vh.TypedPerFilterConfig[filterLocalRateLimit] = b.any(localRateLimit(statPrefix(name)+"_ratelimit", b.svc.RateLimit))
	}
	edgeHeaders := headersAtInbound(b.svc)
	if edgeHeaders && b.svc.Headers != nil {
		vh.RequestHeadersToAdd, vh.RequestHeadersToRemove = headerOps(b.svc.Headers.Request)
		vh.ResponseHeadersToAdd, vh.ResponseHeadersToRemove = headerOps(b.svc.Headers.Response)
	}
	last := -1
	for i, r := range b.svc.Routes {
		if r.RateLimit != nil || (edgeHeaders && r.Headers != nil) {
			last = i
		}
	}
	action := func() *routev3.Route_Route {
		a := toCluster(cluster)
		a.Timeout = durationpb.New(0)
		return &routev3.Route_Route{Route: a}
	}
	routes := b.svc.Routes[:last+1]
	for i, r := range routes {
		rt := from(b.origin, &routev3.Route{
			Name:   routeName(r, i),
			Match:  routeMatch(r.Match),
			Action: action(),
		}, b.routePos(b.svc.Name, r.Name))
		if r.RateLimit != nil {
			rt.TypedPerFilterConfig = map[string]*anypb.Any{
				filterLocalRateLimit: b.any(localRateLimit(statPrefix(name)+"_"+routeName(r, i)+"_ratelimit", r.RateLimit)),
			}
		}
		if edgeHeaders && r.Headers != nil {
			rt.RequestHeadersToAdd, rt.RequestHeadersToRemove = headerOps(r.Headers.Request)
			rt.ResponseHeadersToAdd, rt.ResponseHeadersToRemove = headerOps(r.Headers.Response)
		}
		vh.Routes = append(vh.Routes, rt)
	}
	if needsDefaultRoute(routes) {
		vh.Routes = append(vh.Routes, from(b.origin, &routev3.Route{
			Name:   "default",
			Match:  routeMatch(mesh.Match{}),
			Action: action(),
		}, b.servicePos(b.svc.Name)))
	}
	return from(b.origin, &routev3.RouteConfiguration{
		Name:         name,
		VirtualHosts: []*routev3.VirtualHost{vh},
	}, b.servicePos(b.svc.Name)), nil
}
