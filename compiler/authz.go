package compiler

import (
	"fmt"
	"sort"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/weft-dev/weft/schema/mesh"
)

// RBAC policy names.
const (
	policyCallers = "callers"   // default: the services that call this one
	policyAnyPeer = "plaintext" // default on plaintext chains: anyone
)

// rbacRules returns the DENY rules (nil when there are none) and the ALLOW
// rules of the inbound side of a port.
//
//   - authz.deny always wins: it is a separate RBAC filter that runs first.
//   - authz.allow, when written, is the whole allow list (empty: nobody).
//   - Without authz.allow, callers are exactly the services that list
//     this service in their calls (plus the services whose dependencies
//     mirror requests to it), identified by their SPIFFE ids. On a
//     plaintext chain (mtls permissive or disable, or an edge service) no
//     caller can be identified, so that default admits any peer: choosing
//     plaintext is choosing to accept unauthenticated callers.
//   - On a TCP port, rules are about connections: an allow rule that needs
//     methods or paths never matches (it is left out), a deny rule drops
//     its methods and paths and applies to every connection of its callers.
func (b *classBuilder) rbacRules(tls, http bool) (deny, allow *rbacv3.RBAC, err error) {
	az := b.svc.Authz
	if az != nil && len(az.Deny) > 0 {
		deny = &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{}}
		for i, r := range az.Deny {
			if !http {
				r.Methods, r.Paths = nil, nil
			}
			p, err := b.rulePolicy(r)
			if err != nil {
				return nil, nil, fmt.Errorf("authz.deny[%d]: %w", i, err)
			}
			deny.Policies[fmt.Sprintf("deny[%d]", i)] = p
		}
	}
	allow = &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: map[string]*rbacv3.Policy{}}
	switch {
	case az != nil && (az.AllowSet || len(az.Allow) > 0):
		for i, r := range az.Allow {
			if !http && (len(r.Methods) > 0 || hasPathCondition(r.Paths)) {
				continue
			}
			p, err := b.rulePolicy(r)
			if err != nil {
				return nil, nil, fmt.Errorf("authz.allow[%d]: %w", i, err)
			}
			allow.Policies[fmt.Sprintf("allow[%d]", i)] = p
		}
	case !tls:
		allow.Policies[policyAnyPeer] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{anyPermission()},
			Principals:  []*rbacv3.Principal{anyPrincipal()},
		}
	default:
		var ids []*rbacv3.Principal
		for _, name := range b.defaultCallers() {
			ids = append(ids, b.principal(b.svcs[name]))
		}
		if len(ids) > 0 {
			allow.Policies[policyCallers] = &rbacv3.Policy{
				Permissions: []*rbacv3.Permission{anyPermission()},
				Principals:  []*rbacv3.Principal{orPrincipals(ids)},
			}
		}
	}
	return deny, allow, nil
}

// defaultCallers are the services allowed to call b.svc when its authz
// does not say: those that list it in calls, and those that call a
// service whose routes mirror requests to it (a mirrored request comes
// from the caller's proxy, with the caller's identity).
func (b *classBuilder) defaultCallers() []string {
	set := map[string]bool{}
	for _, name := range b.m.Callers(b.svc) {
		set[name] = true
	}
	for _, name := range mesh.SortedKeys(b.svcs) {
		for _, dep := range b.svcs[name].Calls {
			d := b.svcs[dep]
			if d == nil {
				continue
			}
			for _, r := range d.Routes {
				if r.Mirror != nil && r.Mirror.To == b.svc.Name {
					set[name] = true
				}
			}
		}
	}
	out := mesh.SortedKeys(set)
	sort.Strings(out)
	return out
}

// rulePolicy is one authz rule: (any of from) and (any of methods) and
// (any of paths); an empty field matches anything.
func (b *classBuilder) rulePolicy(r mesh.AuthzRule) (*rbacv3.Policy, error) {
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
		s := b.svcs[from]
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
				}},
			}}})
		}
		and = append(and, orPermissions(ms))
	}
	if hasPathCondition(r.Paths) {
		var ps []*rbacv3.Permission
		for _, path := range r.Paths {
			ps = append(ps, pathPermission(path))
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
// matched without its query string.
func pathPermission(path string) *rbacv3.Permission {
	sm := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: path}}
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
