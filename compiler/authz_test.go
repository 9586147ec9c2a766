package compiler

import (
	"fmt"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-dev/weft/schema/mesh"
)

// An authorization change of an HTTP service changes its route
// configuration and nothing else: no listener (a changed listener is
// drained, and its open connections keep the old rules meanwhile) and no
// cluster. On a TCP port, network RBAC decides per connection and is in
// the filter chain: there the listener does change.
func TestAuthzChangeChangesNoListener(t *testing.T) {
	base := func() *mesh.Model {
		rv := svc("reviews", 9080)
		rv.MTLS = mesh.MTLSPermissive
		return newModel(calls(svc("frontend", 8080), "reviews"), svc("batch", 8001), rv)
	}
	edits := map[string]func(m *mesh.Model){
		"allow nobody": func(m *mesh.Model) { m.Services["reviews"].Authz = &mesh.Authz{AllowSet: true} },
		"allow another caller": func(m *mesh.Model) {
			m.Services["reviews"].Authz = &mesh.Authz{AllowSet: true, Allow: []mesh.AuthzRule{{From: []string{"batch"}}}}
		},
		"allow methods and paths": func(m *mesh.Model) {
			m.Services["reviews"].Authz = &mesh.Authz{Allow: []mesh.AuthzRule{{From: []string{"frontend"}, Methods: []string{"GET"}, Paths: []string{"/reviews/*"}}}}
		},
		"first deny rule": func(m *mesh.Model) {
			m.Services["reviews"].Authz = &mesh.Authz{Deny: []mesh.AuthzRule{{Paths: []string{"/admin/*"}}}}
		},
		"a new caller": func(m *mesh.Model) { m.Services["batch"].Calls = []string{"reviews"} },
	}
	before := compileClass(t, base(), "reviews-v1")
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			m := base()
			edit(m)
			after := compileClass(t, m, "reviews-v1")
			if !sameResources(before, after, resource.ListenerType) {
				t.Error("the listeners changed")
			}
			if !sameResources(before, after, resource.ClusterType) {
				t.Error("the clusters changed")
			}
			if sameResources(before, after, resource.RouteType) {
				t.Error("the route configurations did not change")
			}
		})
	}

	t.Run("tcp port", func(t *testing.T) {
		db := func(allow ...string) *mesh.Model {
			s := withPorts(svc("db", 5432), mesh.Port{Name: "pg", Port: 5432, Protocol: mesh.TCP})
			s.Authz = &mesh.Authz{AllowSet: true}
			for _, from := range allow {
				s.Authz.Allow = append(s.Authz.Allow, mesh.AuthzRule{From: []string{from}})
			}
			return newModel(calls(svc("frontend", 8080), "db"), s)
		}
		if sameResources(compileClass(t, db("frontend"), "db-v1"), compileClass(t, db(), "db-v1"), resource.ListenerType) {
			t.Error("removing the allow of a TCP port left its listener as it was")
		}
	})
}

func compileClass(t *testing.T, m *mesh.Model, class string) *Class {
	t.Helper()
	res, err := Compile(m, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Class(class)
	if c == nil {
		t.Fatalf("no class %s", class)
	}
	return c
}

func sameResources(a, b *Class, typ resource.Type) bool {
	ra, rb := a.Resources[typ], b.Resources[typ]
	if len(ra) != len(rb) {
		return false
	}
	for i := range ra {
		if !proto.Equal(ra[i].(proto.Message), rb[i].(proto.Message)) {
			return false
		}
	}
	return true
}

// Every HTTP connection manager of every case normalizes paths, refuses
// (or redirects) escaped slashes and adds no server header: a connection
// manager added later without them fails here.
func TestEveryHCMNormalizesPaths(t *testing.T) {
	n := 0
	for _, tc := range cases() {
		for _, c := range compileCase(t, tc).Classes {
			for _, r := range c.Resources[resource.ListenerType] {
				l := r.(*listenerv3.Listener)
				for _, fc := range l.GetFilterChains() {
					for _, f := range fc.GetFilters() {
						if f.GetName() != filterHCM {
							continue
						}
						h := &hcmv3.HttpConnectionManager{}
						if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
							t.Fatal(err)
						}
						n++
						where := fmt.Sprintf("%s/%s: listener %s chain %q", tc.name, c.Name, l.GetName(), fc.GetName())
						if !h.GetNormalizePath().GetValue() || !h.GetMergeSlashes() {
							t.Errorf("%s: normalize_path %v, merge_slashes %v", where, h.GetNormalizePath(), h.GetMergeSlashes())
						}
						switch a := h.GetPathWithEscapedSlashesAction(); a {
						case hcmv3.HttpConnectionManager_REJECT_REQUEST, hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
						default:
							t.Errorf("%s: path_with_escaped_slashes_action %v", where, a)
						}
						if h.GetServerHeaderTransformation() != hcmv3.HttpConnectionManager_PASS_THROUGH {
							t.Errorf("%s: server_header_transformation %v", where, h.GetServerHeaderTransformation())
						}
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no HTTP connection manager found")
	}
}
