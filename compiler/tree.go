package compiler

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

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
	// Services, when not empty, limits the classes written to those of
	// these services (summary.txt still lists every class).
	Services []string
	// Link, when set, is called by WriteTree instead of write for a file
	// whose bytes are those of a file already written (target: the same
	// file of the first class of the same resources); when it fails, write
	// is called. weft build makes hard links with it, so that a file's
	// bytes need not stay in memory until the last class sharing them.
	Link func(name, target string) error
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
func TreeFiles(r *Result, o TreeOptions) (map[string][]byte, error) {
	files := map[string][]byte{}
	var mu sync.Mutex
	err := WriteTree(r, o, func(name string, b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		files[name] = b
		return nil
	})
	return files, err
}

// WriteTree hands the files of TreeFiles to write, one call per file, as
// they are made: classes are serialized concurrently (one worker per
// core), so write is called from several goroutines at once and must be
// safe for that. Classes that share their resources (the versions of a
// service) share the bytes of their files, made once. Nothing but the
// files being written is held in memory. The first error of write or of
// serialization stops it and is returned.
func WriteTree(r *Result, o TreeOptions, write func(name string, b []byte) error) error {
	if err := write(SummaryFile, []byte(Summary(r))); err != nil {
		return err
	}
	// The classes of one set of resources, in order.
	var groups [][]*Class
	seen := map[uintptr]int{}
	for _, c := range r.Classes {
		if len(o.Services) > 0 && !slices.Contains(o.Services, c.Service) {
			continue
		}
		key := reflect.ValueOf(c.Resources).Pointer()
		if i, ok := seen[key]; ok && key != 0 {
			groups[i] = append(groups[i], c)
			continue
		}
		seen[key] = len(groups)
		groups = append(groups, []*Class{c})
	}
	errs := make([]error, len(groups))
	var failed atomic.Bool
	var shared sync.Map // clusters and load assignments the classes share
	var anys sync.Map   // Any values (filter configurations) the classes repeat
	parallel(len(groups), func(i int) {
		if failed.Load() {
			return
		}
		if errs[i] = writeGroup(groups[i], o, &shared, &anys, write); errs[i] != nil {
			failed.Store(true)
		}
	})
	return errors.Join(errs...)
}

// writeGroup writes the files of classes that share their resources.
func writeGroup(cs []*Class, o TreeOptions, shared, anys *sync.Map, write func(string, []byte) error) error {
	files, err := classFiles(cs[0], shared, anys)
	if err != nil {
		return err
	}
	for i, c := range cs {
		for _, f := range classFileNames {
			name := path.Join(c.Name, f)
			if i > 0 && o.Link != nil && o.Link(name, path.Join(cs[0].Name, f)) == nil {
				continue
			}
			if err := write(name, files[f]); err != nil {
				return err
			}
		}
		if !o.StaticBootstrap {
			continue
		}
		bo := o.Bootstrap
		bo.NodeID = "" // each class's own name
		bs, err := Bootstrap(c, bo)
		if err != nil {
			return err
		}
		y, err := MarshalYAMLObject(bs)
		if err != nil {
			return fmt.Errorf("class %s: bootstrap: %w", c.Name, err)
		}
		if err := write(path.Join(c.Name, BootstrapFile), y); err != nil {
			return err
		}
	}
	return nil
}

// classFileNames are the files every class has, in order.
var classFileNames = []string{"listeners.yaml", "routes.yaml", "clusters.yaml", "endpoints.yaml", ProvenanceFile}

// classFiles are the resource and provenance files of one class; the
// bytes of shared resources and repeated Any values come from cache.
func classFiles(c *Class, cache, anys *sync.Map) (map[string][]byte, error) {
	out := make(map[string][]byte, len(treeFiles)+1)
	for _, f := range treeFiles {
		msgs := make([]proto.Message, 0, len(c.Resources[f.typ]))
		for _, res := range c.Resources[f.typ] {
			msgs = append(msgs, res)
		}
		var elems *sync.Map
		if f.typ == resource.ClusterType || f.typ == resource.EndpointType {
			elems = cache // shared by the classes that call the same service
		}
		y, err := cachedYAMLList(msgs, elems, anys)
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
