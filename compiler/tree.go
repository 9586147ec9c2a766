package compiler

import (
	"fmt"
	"path"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// Files of one class in a Tree, by xDS type.
var treeFiles = []struct {
	name string
	typ  resource.Type
}{
	{"listeners.yaml", resource.ListenerType},
	{"routes.yaml", resource.RouteType},
	{"clusters.yaml", resource.ClusterType},
	{"endpoints.yaml", resource.EndpointType},
}

// ProvenanceFile is the name of a class's provenance table in a Tree.
const ProvenanceFile = "provenance.yaml"

// BootstrapFile is the name of a class's static bootstrap in a Tree.
const BootstrapFile = "bootstrap.yaml"

// SummaryFile is the name of the summary at the root of a Tree.
const SummaryFile = "summary.txt"

// Tree lays a compiled mesh out as files, keyed by slash-separated path:
// for each class "<class>/listeners.yaml", "routes.yaml", "clusters.yaml",
// "endpoints.yaml", "provenance.yaml" (where each resource and each of
// its filter chains, virtual hosts and routes was defined) and a complete
// static "bootstrap.yaml" (`envoy -c` runs it), and "summary.txt" at the root. It does no I/O, and the same
// Result always gives the same bytes, so two trees can be diffed.
func Tree(r *Result, b BootstrapOptions) (map[string][]byte, error) {
	files := map[string][]byte{SummaryFile: []byte(Summary(r))}
	for _, c := range r.Classes {
		for _, f := range treeFiles {
			msgs := make([]proto.Message, 0, len(c.Resources[f.typ]))
			for _, res := range c.Resources[f.typ] {
				msgs = append(msgs, res)
			}
			y, err := MarshalYAML(msgs...)
			if err != nil {
				return nil, fmt.Errorf("class %s: %s: %w", c.Name, f.name, err)
			}
			files[path.Join(c.Name, f.name)] = y
		}
		py, err := provenanceYAML(c.Provenance)
		if err != nil {
			return nil, fmt.Errorf("class %s: %s: %w", c.Name, ProvenanceFile, err)
		}
		files[path.Join(c.Name, ProvenanceFile)] = py
		opts := b
		opts.NodeID = "" // each class's own name
		bs, err := Bootstrap(c, opts)
		if err != nil {
			return nil, err
		}
		y, err := MarshalYAMLObject(bs)
		if err != nil {
			return nil, fmt.Errorf("class %s: bootstrap: %w", c.Name, err)
		}
		files[path.Join(c.Name, BootstrapFile)] = y
	}
	return files, nil
}

// Summary is a table of the proxy classes, their resource counts and
// snapshot versions.
func Summary(r *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d proxy classes\n\n", len(r.Classes))
	fmt.Fprintf(&b, "%-28s %9s %6s %8s %9s  %s\n", "CLASS", "LISTENERS", "ROUTES", "CLUSTERS", "ENDPOINTS", "VERSION")
	for _, c := range r.Classes {
		fmt.Fprintf(&b, "%-28s %9d %6d %8d %9d  %s\n", c.Name,
			len(c.Resources[resource.ListenerType]), len(c.Resources[resource.RouteType]),
			len(c.Resources[resource.ClusterType]), endpointCount(c), c.SnapshotVersion)
	}
	return b.String()
}

// endpointCount is the number of endpoint addresses across the class's
// load assignments.
func endpointCount(c *Class) int {
	n := 0
	for _, r := range c.Resources[resource.EndpointType] {
		if cla, ok := r.(*endpointv3.ClusterLoadAssignment); ok {
			for _, l := range cla.GetEndpoints() {
				n += len(l.GetLbEndpoints())
			}
		}
	}
	return n
}

// provenanceEntry is one line of provenance.yaml.
type provenanceEntry struct {
	Type string `json:"type"` // "listener", "route", "cluster", "endpoint"
	Name string `json:"name"`
	Part string `json:"part,omitempty"`
	Provenance
}

// provenanceYAML lists a class's provenance table in type, name and part
// order.
func provenanceYAML(ps Provenances) ([]byte, error) {
	short := map[resource.Type]string{
		resource.ListenerType: "listener", resource.RouteType: "route",
		resource.ClusterType: "cluster", resource.EndpointType: "endpoint",
	}
	entries := make([]provenanceEntry, 0, len(ps))
	for _, ref := range ps.Refs() {
		entries = append(entries, provenanceEntry{Type: short[ref.Type], Name: ref.Name, Part: ref.Part, Provenance: ps[ref]})
	}
	return yaml.Marshal(entries)
}
