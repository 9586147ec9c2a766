package compiler

import (
	"fmt"
	"sort"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-dev/weft/schema/mesh"
)

// Provenance says where a resource, or a part of one, came from: the
// service whose definition produced it and the file:line of that
// definition (of the route, for a route).
//
// Provenance is kept beside the resources (Class.Provenance), never in
// them: a comment added above a service moves its line numbers, and a
// line number inside a listener would make Envoy drain and replace the
// listener although nothing it does changed. The control plane uses it
// to point a NACK at the definition Envoy rejected; `weft build` writes
// it next to each class's resources (provenance.yaml).
type Provenance struct {
	Service string `json:"service"`        // the service whose definition produced the resource
	File    string `json:"file,omitempty"` // CUE file, relative to the mesh repository ("" if unknown)
	Line    int    `json:"line,omitempty"` // line in File (0 if unknown)
}

// String is "file:line (service S)", or "service S" without a position.
func (p Provenance) String() string {
	if p.File == "" {
		return "service " + p.Service
	}
	return fmt.Sprintf("%s:%d (service %s)", p.File, p.Line, p.Service)
}

// ProvenanceRef names a resource, or a message inside one.
type ProvenanceRef struct {
	Type resource.Type // xDS type URL
	Name string        // resource name
	// Part is the path of a message inside the resource in proto field
	// names with list indexes, as Envoy's validation messages name them
	// (RouteConfigurationValidationError.VirtualHosts[1] is
	// "virtual_hosts[1]"): "" is the resource itself, then
	// "filter_chains[2]" (listeners), "virtual_hosts[1]" and
	// "virtual_hosts[1].routes[0]" (route configurations).
	Part string
}

// Provenances maps resources and their parts to their provenance. Every
// resource of a compiled class has an entry for Part "".
type Provenances map[ProvenanceRef]Provenance

// Lookup returns the provenance of the deepest recorded part at or above
// ref.Part: "virtual_hosts[1].routes[7]" falls back to
// "virtual_hosts[1]", then to the resource.
func (ps Provenances) Lookup(ref ProvenanceRef) (Provenance, bool) {
	for {
		if p, ok := ps[ref]; ok {
			return p, true
		}
		if ref.Part == "" {
			return Provenance{}, false
		}
		i := strings.LastIndex(ref.Part, ".")
		if i < 0 {
			ref.Part = ""
		} else {
			ref.Part = ref.Part[:i]
		}
	}
}

// Refs lists the entries in type (ResourceTypes order), name and part
// order.
func (ps Provenances) Refs() []ProvenanceRef {
	order := map[resource.Type]int{}
	for i, t := range ResourceTypes {
		order[t] = i
	}
	refs := make([]ProvenanceRef, 0, len(ps))
	for r := range ps {
		refs = append(refs, r)
	}
	sort.Slice(refs, func(i, j int) bool {
		a, b := refs[i], refs[j]
		if a.Type != b.Type {
			return order[a.Type] < order[b.Type]
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Part < b.Part
	})
	return refs
}

// provenance finds the position of a CUE path (or its nearest written
// ancestor) for a resource produced by service. The lookup is recorded:
// CompileFrom reuses the class only if a later model answers it alike.
func (b *classBuilder) provenance(service, path string) Provenance {
	pos := b.m.Positions.Lookup(path)
	b.positions[path] = pos
	return Provenance{Service: service, File: pos.File, Line: pos.Line}
}

// servicePos is the provenance of a resource produced by a whole service.
func (b *classBuilder) servicePos(service string) Provenance {
	return b.provenance(service, mesh.ServicePath(service))
}

// routePos is the provenance of a service's route, by route name.
func (b *classBuilder) routePos(service, route string) Provenance {
	return b.provenance(service, mesh.RoutePath(service, route))
}

// origins records, while a class is built, where each message came from;
// provenances turns it into the class's table once the resources are in
// their final order.
type origins map[proto.Message]Provenance

// from records the provenance of msg and returns msg.
func from[M proto.Message](o origins, msg M, p Provenance) M {
	o[msg] = p
	return msg
}

// provenances walks the class's resources and records the provenance of
// every resource and of its filter chains, virtual hosts and routes.
func (o origins) provenances(res map[resource.Type][]types.Resource) Provenances {
	ps := Provenances{}
	put := func(t resource.Type, name, part string, msg proto.Message) {
		if p, ok := o[msg]; ok {
			ps[ProvenanceRef{Type: t, Name: name, Part: part}] = p
		}
	}
	for _, t := range ResourceTypes {
		for _, r := range res[t] {
			name := cache.GetResourceName(r)
			put(t, name, "", r)
			switch r := r.(type) {
			case *listenerv3.Listener:
				for i, fc := range r.GetFilterChains() {
					put(t, name, fmt.Sprintf("filter_chains[%d]", i), fc)
				}
			case *routev3.RouteConfiguration:
				for i, vh := range r.GetVirtualHosts() {
					vp := fmt.Sprintf("virtual_hosts[%d]", i)
					put(t, name, vp, vh)
					for j, rt := range vh.GetRoutes() {
						put(t, name, fmt.Sprintf("%s.routes[%d]", vp, j), rt)
					}
				}
			}
		}
	}
	// A load assignment is its EDS cluster's.
	for _, r := range res[resource.EndpointType] {
		name := cache.GetResourceName(r)
		if p, ok := ps[ProvenanceRef{Type: resource.ClusterType, Name: name}]; ok {
			ps[ProvenanceRef{Type: resource.EndpointType, Name: name}] = p
		}
	}
	return ps
}
