package compiler

import (
	"fmt"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weft-dev/weft/schema/mesh"
)

// RBAC policy names.
const (
	policyCallers   = "callers"        // default: the services that call this one
	policyAnyPeer   = "plaintext"      // default on plaintext chains: anyone
	policyAmbiguous = "ambiguous-path" // deny: paths a backend may read as another path
)

// rbacRules returns the DENY rules (nil when there are none) and the ALLOW
// rules of the inbound side of a port. They are the same for every filter
// chain of the port (TLS and plaintext), so that an HTTP port's rules can
// live in its route configuration, which its chains share (see
// inboundAuthz).
//
//   - authz.deny always wins: it is a separate RBAC filter that runs first.
//     Its paths and methods match whatever their case ("/ADMIN" is
//     "/admin" to a case-insensitive backend); allow rules match the case
//     written. Both sides fail closed.
//   - On an HTTP port whose rules name paths, requests whose path a backend
//     may read as another path are denied (policy "ambiguous-path", see
//     ambiguousPath).
//   - authz.allow, when written, is the whole allow list (empty: nobody).
//   - Without authz.allow, callers are exactly the services that list
//     this service in their calls (plus the services whose dependencies
//     mirror requests to it), identified by their SPIFFE ids. On a
//     plaintext chain (mtls permissive or disable, or an edge service) no
//     caller can be identified, so that default admits any peer that did
//     not authenticate (policy "plaintext": not an mTLS peer; choosing
//     plaintext is choosing to accept unauthenticated callers).
//   - On a TCP port, rules are about connections: an allow rule that needs
//     methods or paths never matches (it is left out), a deny rule drops
//     its methods and paths and applies to every connection of its callers.
func (b *classBuilder) rbacRules(http bool) (deny, allow *rbacv3.RBAC, err error) {
	az := b.svc.Authz
	if az != nil && len(az.Deny) > 0 {
		deny = &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{}}
		for i, r := range az.Deny {
			if !http {
				r.Methods, r.Paths = nil, nil
			}
			p, err := b.rulePolicy(r, true)
			if err != nil {
				return nil, nil, fmt.Errorf("authz.deny[%d]: %w", i, err)
			}
			deny.Policies[fmt.Sprintf("deny[%d]", i)] = p
		}
	}
	if http && namesPaths(az) {
		if deny == nil {
			deny = &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{}}
		}
		deny.Policies[policyAmbiguous] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{ambiguousPath()},
			Principals:  []*rbacv3.Principal{anyPrincipal()},
		}
	}
	allow = &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
	if az != nil && (az.AllowSet || len(az.Allow) > 0) {
		for i, r := range az.Allow {
			if !http && (len(r.Methods) > 0 || hasPathCondition(r.Paths)) {
				continue
			}
			p, err := b.rulePolicy(r, false)
			if err != nil {
				return nil, nil, fmt.Errorf("authz.allow[%d]: %w", i, err)
			}
			allow.Policies[fmt.Sprintf("allow[%d]", i)] = p
		}
		return deny, allow, nil
	}
	var ids []*rbacv3.Principal
	for _, name := range b.defaultCallers() {
		ids = append(ids, b.principal(b.identity(name)))
	}
	if len(ids) > 0 {
		allow.Policies[policyCallers] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{anyPermission()},
			Principals:  []*rbacv3.Principal{orPrincipals(ids)},
		}
	}
	if inboundMode(b.svc) != mesh.MTLSStrict {
		allow.Policies[policyAnyPeer] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{anyPermission()},
			Principals:  []*rbacv3.Principal{unauthenticated()},
		}
	}
	return deny, allow, nil
}

// namesPaths reports whether any authz rule restricts paths.
func namesPaths(az *mesh.Authz) bool {
	if az == nil {
		return false
	}
	for _, rules := range [][]mesh.AuthzRule{az.Allow, az.Deny} {
		for _, r := range rules {
			if hasPathCondition(r.Paths) {
				return true
			}
		}
	}
	return false
}

// ambiguousPath matches the paths (after Envoy's normalization, without
// the query) that a backend may read as another path than the one the
// rules see, so that no spelling can hide a path from a rule:
//
//   - ";": path parameters, which servlet containers (Tomcat, Jetty) strip
//     from every segment: "/admin;jsessionid=1" is "/admin" to them and
//     "/public/..;/admin" is "/admin";
//   - "%3B" (any case): the same, for a backend that decodes first;
//   - "%25": an encoded percent, i.e. double encoding, which a backend
//     that decodes twice turns into anything ("/admin%252Fx" ->
//     "/admin/x").
//
// Envoy leaves all three as they are (normalize_path decodes only
// unreserved characters). Source: Istio's "Security Best Practices"
// (understand path normalization in authorization policy; the
// normalization it lacks is the operator's to add), Spring Security's
// StrictHttpFirewall, which rejects the same characters by default.
func ambiguousPath() *rbacv3.Permission {
	contains := func(s string) *rbacv3.Permission {
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
			Rule: &matcherv3.PathMatcher_Path{Path: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Contains{Contains: s},
				IgnoreCase:   true,
			}},
		}}}
	}
	return orPermissions([]*rbacv3.Permission{contains(";"), contains("%3b"), contains("%25")})
}

// inboundAuthz is the authorization of an HTTP port: RBACPerRoute
// configurations of the inbound connection manager's two RBAC filters
// (filterRBACDeny, filterRBACAllow), for the typed_per_filter_config of
// the port's virtual host. A route configuration reaches Envoy over RDS
// and is applied to the next request, also on connections already open;
// a listener change would leave open connections on the old filter chain
// while it drains. The deny filter gets an empty DENY list (denies
// nothing) when there are no deny rules, so that the first deny rule
// changes nothing but this configuration.
func (b *classBuilder) inboundAuthz() (map[string]*anypb.Any, error) {
	deny, allow, err := b.rbacRules(true)
	if err != nil {
		return nil, err
	}
	if deny == nil {
		deny = &rbacv3.RBAC{Action: rbacv3.RBAC_DENY}
	}
	return map[string]*anypb.Any{
		filterRBACDeny:  b.any(&rbachttpv3.RBACPerRoute{Rbac: &rbachttpv3.RBAC{Rules: deny}}),
		filterRBACAllow: b.any(&rbachttpv3.RBACPerRoute{Rbac: &rbachttpv3.RBAC{Rules: allow}}),
	}, nil
}

// defaultCallers are the services allowed to call b.svc when its authz
// does not say: those that list it in calls, and those that call a
// service whose routes mirror requests to it (a mirrored request comes
// from the caller's proxy, with the caller's identity).
func (b *classBuilder) defaultCallers() []string { return b.callers[b.svc.Name] }

// defaultCallerIndex computes defaultCallers for every service at once:
// service -> sorted caller names.
func defaultCallerIndex(svcs map[string]*mesh.Service) map[string][]string {
	set := map[string]map[string]bool{}
	add := func(callee, caller string) {
		if set[callee] == nil {
			set[callee] = map[string]bool{}
		}
		set[callee][caller] = true
	}
	for _, name := range mesh.SortedKeys(svcs) {
		for _, dep := range svcs[name].Calls {
			add(dep, name)
			d := svcs[dep]
			if d == nil {
				continue
			}
			for _, r := range d.Routes {
				if r.Mirror != nil {
					add(r.Mirror.To, name)
				}
			}
		}
	}
	out := make(map[string][]string, len(set))
	for callee, callers := range set {
		out[callee] = mesh.SortedKeys(callers)
	}
	return out
}

// rulePolicy is one authz rule: (any of from) and (any of methods) and
// (any of paths); an empty field matches anything. A deny rule matches
// methods and paths whatever their case.
func (b *classBuilder) rulePolicy(r mesh.AuthzRule, deny bool) (*rbacv3.Policy, error) {
	p := &rbacv3.Policy{}
	var principals []*rbacv3.Principal
	for _, from := range r.From {
		if from == "*" {
			principals = append(principals, &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
				Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: &matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://" + b.m.TrustDomain + "/"},
				}},
			}})
			continue
		}
		s := b.identity(from)
		if s == nil {
			return nil, fmt.Errorf("from: unknown service %q", from)
		}
		principals = append(principals, b.principal(s))
	}
	if len(principals) == 0 {
		p.Principals = []*rbacv3.Principal{anyPrincipal()}
	} else {
		p.Principals = []*rbacv3.Principal{orPrincipals(principals)}
	}

	var and []*rbacv3.Permission
	if len(r.Methods) > 0 {
		var ms []*rbacv3.Permission
		for _, m := range r.Methods {
			ms = append(ms, &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
				Name: ":method",
				HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
					MatchPattern: &matcherv3.StringMatcher_Exact{Exact: m},
					IgnoreCase:   deny,
				}},
			}}})
		}
		and = append(and, orPermissions(ms))
	}
	if hasPathCondition(r.Paths) {
		var ps []*rbacv3.Permission
		for _, path := range r.Paths {
			ps = append(ps, pathPermission(path, deny))
		}
		and = append(and, orPermissions(ps))
	}
	switch len(and) {
	case 0:
		p.Permissions = []*rbacv3.Permission{anyPermission()}
	case 1:
		p.Permissions = and
	default:
		p.Permissions = []*rbacv3.Permission{{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: and}}}}
	}
	return p, nil
}

// hasPathCondition reports whether paths restrict anything ("*" does not).
func hasPathCondition(paths []string) bool {
	if len(paths) == 0 {
		return false
	}
	for _, p := range paths {
		if p == "*" {
			return false
		}
	}
	return true
}

// pathPermission: "/a" is exact, "/a/*" is the prefix "/a/". The path is
// matched, normalized (see hcm), without its query string; ignoreCase for
// deny rules.
func pathPermission(path string, ignoreCase bool) *rbacv3.Permission {
	sm := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: path}, IgnoreCase: ignoreCase}
	if strings.HasSuffix(path, "/*") {
		sm.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: strings.TrimSuffix(path, "*")}
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
		Rule: &matcherv3.PathMatcher_Path{Path: sm},
	}}}
}

// principal is a service's mTLS identity.
func (b *classBuilder) principal(s *mesh.Service) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{
		Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: b.m.SPIFFEID(s)},
		}},
	}}
}

// unauthenticated matches a connection without a verified peer
// certificate: a plaintext chain's (a TLS chain requires one).
func unauthenticated() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: &rbacv3.Principal{
		Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{}},
	}}}
}

func anyPrincipal() *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
}

func anyPermission() *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
}

func orPrincipals(ps []*rbacv3.Principal) *rbacv3.Principal {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func orPermissions(ps []*rbacv3.Permission) *rbacv3.Permission {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}
