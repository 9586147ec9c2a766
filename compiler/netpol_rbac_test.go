package compiler

import (
	"slices"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-dev/weft/schema/mesh"
)

// TestNetworkPoliciesMatchRBAC proves "the L3 firewall from the same
// source as the L7 rules": for every service port with an mTLS chain, the
// services a NetworkPolicy admits are exactly the identities that the
// compiled inbound RBAC filters can let through (ALLOW principals, minus
// the principals an unconditional DENY refuses). It reads the RBAC back
// from the compiled listeners, so a change to authz.go that the
// NetworkPolicies do not follow fails here. Edge services (open at L3 by
// design) and ports without mTLS (L3 stricter by design) are skipped.
func TestNetworkPoliciesMatchRBAC(t *testing.T) {
	cases := append(netpolCases(), cases()...)
	for _, env := range []string{"", "dev", "staging", "prod"} {
		cases = append(cases, testCase{"shop-" + env, func() (*mesh.Model, Endpoints) { return loadShop(t, env), nil }})
	}
	checked := 0
	for _, tc := range cases {
		m, eps := tc.build()
		res, err := Compile(m, eps, Options{})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		svcs := resolve(m)
		ids := map[string][]string{} // SPIFFE id -> services
		for _, name := range mesh.SortedKeys(svcs) {
			id := m.SPIFFEID(svcs[name])
			ids[id] = append(ids[id], name)
		}
		for _, name := range m.ServiceNames() {
			s := svcs[name]
			if s.Edge {
				continue
			}
			c := res.Class(ClassName(name, s.VersionNames()[0]))
			for _, fc := range inboundChains(t, c) {
				if fc.GetFilterChainMatch().GetTransportProtocol() != transportTLS {
					continue
				}
				port := fc.GetFilterChainMatch().GetDestinationPort().GetValue()
				l7 := rbacSources(t, m, ids, c, fc)
				http := isHTTP(portByNumber(s, port))
				l3, err := portSources(m, svcs, s, http)
				if err != nil {
					t.Fatal(err)
				}
				if !l3.equal(l7) {
					t.Errorf("%s: %s port %d: NetworkPolicy admits %+v, RBAC admits %+v", tc.name, name, port, l3, l7)
				}
				checked++
			}
		}
	}
	if checked < 50 {
		t.Errorf("compared only %d ports: the test is not looking at the listeners", checked)
	}
	t.Logf("compared %d service ports", checked)
}

func portByNumber(s *mesh.Service, n uint32) mesh.Port {
	for _, p := range s.PortList() {
		if p.Port == n {
			return p
		}
	}
	return mesh.Port{}
}

func inboundChains(t *testing.T, c *Class) []*listenerv3.FilterChain {
	t.Helper()
	for _, r := range c.Resources[resource.ListenerType] {
		if l := r.(*listenerv3.Listener); l.Name == InboundListenerName {
			return l.FilterChains
		}
	}
	t.Fatalf("class %s has no inbound listener", c.Name)
	return nil
}

// rbacSources reads who the RBAC filters of a chain admit: a TCP chain's
// network RBAC filters, or, for an HTTP chain, the RBACPerRoute rules of
// its inbound route configuration's virtual host (the listener's HTTP
// RBAC filters only hold the fail-closed default).
func rbacSources(t *testing.T, m *mesh.Model, ids map[string][]string, c *Class, fc *listenerv3.FilterChain) sources {
	t.Helper()
	var rules []*rbacv3.RBAC
	for _, f := range fc.Filters {
		msg, err := f.GetTypedConfig().UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		switch v := msg.(type) {
		case *rbacnetv3.RBAC:
			rules = append(rules, v.Rules)
		case *hcmv3.HttpConnectionManager:
			rc := routeConfig(t, c, v.GetRds().GetRouteConfigName())
			for _, vh := range rc.VirtualHosts {
				for _, name := range mesh.SortedKeys(vh.TypedPerFilterConfig) {
					pm, err := vh.TypedPerFilterConfig[name].UnmarshalNew()
					if err != nil {
						t.Fatal(err)
					}
					if r, ok := pm.(*rbachttpv3.RBACPerRoute); ok && r.GetRbac().GetRules() != nil {
						rules = append(rules, r.GetRbac().GetRules())
					}
				}
			}
		}
	}
	var src sources
	allowed, denied := map[string]bool{}, map[string]bool{}
	denyAll := false
	meshPrefix := "spiffe://" + m.TrustDomain + "/"
	for _, r := range rules {
		for _, name := range mesh.SortedKeys(r.Policies) {
			p := r.Policies[name]
			exact, any := principals(t, p.Principals)
			switch r.Action {
			case rbacv3.RBAC_ALLOW:
				for _, id := range exact {
					for _, s := range ids[id] {
						allowed[s] = true
					}
				}
				if any != "" {
					src.anyMesh = true
				}
			case rbacv3.RBAC_DENY:
				if !unconditional(p.Permissions) {
					continue
				}
				if any != "" {
					denyAll = true
				}
				for _, id := range exact {
					for _, s := range ids[id] {
						denied[s] = true
					}
				}
			}
			if any != "" && any != meshPrefix && any != "*" {
				t.Fatalf("policy %s: principal prefix %q is not the mesh's", name, any)
			}
		}
	}
	if denyAll {
		return sources{}
	}
	if src.anyMesh {
		src.excluded = mesh.SortedKeys(denied)
		return src
	}
	for s := range denied {
		delete(allowed, s)
	}
	src.services = mesh.SortedKeys(allowed)
	return src
}

// principals flattens or_ids: exact SPIFFE ids, and "*" (any) or the
// prefix when one matches every mesh identity.
func principals(t *testing.T, ps []*rbacv3.Principal) (exact []string, any string) {
	t.Helper()
	for _, p := range ps {
		switch id := p.Identifier.(type) {
		case *rbacv3.Principal_Any:
			any = "*"
		case *rbacv3.Principal_OrIds:
			e, a := principals(t, id.OrIds.Ids)
			exact = append(exact, e...)
			if a != "" {
				any = a
			}
		case *rbacv3.Principal_Authenticated_:
			sm := id.Authenticated.GetPrincipalName()
			switch {
			case sm.GetExact() != "":
				exact = append(exact, sm.GetExact())
			case sm.GetPrefix() != "":
				any = sm.GetPrefix()
			default:
				t.Fatalf("unexpected principal matcher %v", sm)
			}
		case *rbacv3.Principal_NotId:
			// "not authenticated": a plaintext caller, on the plaintext
			// chain of a permissive port (the rules are shared by both
			// chains). NetworkPolicies open nothing for it at L3.
			if _, ok := id.NotId.GetIdentifier().(*rbacv3.Principal_Authenticated_); !ok {
				t.Fatalf("unexpected not_id principal %v", id.NotId)
			}
		default:
			t.Fatalf("unexpected principal %T", p.Identifier)
		}
	}
	slices.Sort(exact)
	return exact, any
}

// unconditional reports whether permissions match every request.
func unconditional(ps []*rbacv3.Permission) bool {
	return len(ps) == 1 && proto.Equal(ps[0], anyPermission())
}
