package compiler

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"

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

// TreeOptions say what a tree holds besides every class's resources and
// provenance and the summary.
type TreeOptions struct {
	// StaticBootstrap adds each class's complete static bootstrap
	// (BootstrapFile, every resource inlined: `envoy -c` runs it). It
	// repeats all of the class's resources, so it is off unless asked.
	StaticBootstrap bool
	// Bootstrap are the bootstraps' per-proxy parts (NodeID is ignored:
	// each class's own name).
	Bootstrap BootstrapOptions
}

// Tree is TreeFiles with the static bootstraps: TreeFiles(r,
// TreeOptions{StaticBootstrap: true, Bootstrap: b}).
func Tree(r *Result, b BootstrapOptions) (map[string][]byte, error) {
	return TreeFiles(r, TreeOptions{StaticBootstrap: true, Bootstrap: b})
}

// TreeFiles lays a compiled mesh out as files, keyed by slash-separated
// path: for each class "<class>/listeners.yaml", "routes.yaml",
// "clusters.yaml", "endpoints.yaml", "provenance.yaml" (where each
// resource and each of its filter chains, virtual hosts and routes was
// defined), with o.StaticBootstrap a complete static "bootstrap.yaml", and
// "summary.txt" at the root. It does no I/O, and the same Result always
// gives the same bytes, so two trees can be diffed.
//
// Classes that share their resources (the versions of a service) share
// the bytes of their files: each is written once. Classes are written
// concurrently, one worker per core.
func TreeFiles(r *Result, o TreeOptions) (map[string][]byte, error) {
	type job struct {
		class *Class
		files map[string][]byte // name within the class directory
		err   error
	}
	// One job per distinct set of resources; the classes sharing it
	// (the versions of one service) reuse its files.
	var jobs []*job
	owner := make([]*job, len(r.Classes))
	seen := map[uintptr]*job{}
	for i, c := range r.Classes {
		key := reflect.ValueOf(c.Resources).Pointer()
		j := seen[key]
		if j == nil || key == 0 {
			j = &job{class: c}
			seen[key] = j
			jobs = append(jobs, j)
		}
		owner[i] = j
	}
	var next sync.Mutex
	idx := 0
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				if idx == len(jobs) {
					next.Unlock()
					return
				}
				j := jobs[idx]
				idx++
				next.Unlock()
				j.files, j.err = classFiles(j.class)
			}
		}()
	}
	wg.Wait()

	files := map[string][]byte{SummaryFile: []byte(Summary(r))}
	for i, c := range r.Classes {
		j := owner[i]
		if j.err != nil {
			return nil, j.err
		}
		for name, b := range j.files {
			files[path.Join(c.Name, name)] = b
		}
		if o.StaticBootstrap {
			bo := o.Bootstrap
			bo.NodeID = "" // each class's own name
			bs, err := Bootstrap(c, bo)
			if err != nil {
				return nil, err
			}
			y, err := MarshalYAMLObject(bs)
			if err != nil {
				return nil, fmt.Errorf("class %s: bootstrap: %w", c.Name, err)
			}
			files[path.Join(c.Name, BootstrapFile)] = y
		}
	}
	return files, nil
}

// classFiles are the resource and provenance files of one class.
func classFiles(c *Class) (map[string][]byte, error) {
	out := make(map[string][]byte, len(treeFiles)+1)
	for _, f := range treeFiles {
		msgs := make([]proto.Message, 0, len(c.Resources[f.typ]))
		for _, res := range c.Resources[f.typ] {
			msgs = append(msgs, res)
		}
		y, err := MarshalYAML(msgs...)
		if err != nil {
			return nil, fmt.Errorf("class %s: %s: %w", c.Name, f.name, err)
		}
		out[f.name] = y
	}
	py, err := provenanceYAML(c.Provenance)
	if err != nil {
		return nil, fmt.Errorf("class %s: %s: %w", c.Name, ProvenanceFile, err)
	}
	out[ProvenanceFile] = py
	return out, nil
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

var shortType = map[resource.Type]string{
	resource.ListenerType: "listener", resource.RouteType: "route",
	resource.ClusterType: "cluster", resource.EndpointType: "endpoint",
}

// provenanceYAML lists a class's provenance table in type, name and part
// order, as sigs.k8s.io/yaml writes provenanceEntry values (keys sorted:
// file, line, name, part, service, type), written directly.
func provenanceYAML(ps Provenances) ([]byte, error) {
	refs := ps.Refs()
	if len(refs) == 0 {
		return []byte("[]\n"), nil
	}
	buf := make([]byte, 0, 96*len(refs))
	for _, ref := range refs {
		p := ps[ref]
		first := true
		raw := func(k, v string) {
			if first {
				buf = append(buf, "- "...)
				first = false
			} else {
				buf = append(buf, "  "...)
			}
			buf = append(append(append(append(buf, k...), ": "...), v...), '\n')
		}
		kv := func(k, v string) error {
			s, err := scalar(v, 2+len(k)+2)
			if err == nil {
				raw(k, s)
			}
			return err
		}
		var err error
		if p.File != "" {
			err = errors.Join(err, kv("file", p.File))
		}
		if p.Line != 0 {
			raw("line", strconv.Itoa(p.Line))
		}
		err = errors.Join(err, kv("name", ref.Name))
		if ref.Part != "" {
			err = errors.Join(err, kv("part", ref.Part))
		}
		err = errors.Join(err, kv("service", p.Service), kv("type", shortType[ref.Type]))
		if err != nil {
			if errors.Is(err, errSlow) {
				return referenceProvenanceYAML(ps)
			}
			return nil, err
		}
	}
	return buf, nil
}

// referenceProvenanceYAML is provenanceYAML through sigs.k8s.io/yaml.
func referenceProvenanceYAML(ps Provenances) ([]byte, error) {
	entries := make([]provenanceEntry, 0, len(ps))
	for _, ref := range ps.Refs() {
		entries = append(entries, provenanceEntry{Type: shortType[ref.Type], Name: ref.Name, Part: ref.Part, Provenance: ps[ref]})
	}
	return yaml.Marshal(entries)
}
