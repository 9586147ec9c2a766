package compiler

import (
	"bytes"
	"context"
	"flag"
	"fmt"

	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/schema/mesh"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current output")

func compileCase(t testing.TB, tc testCase) *Result {
	t.Helper()
	m, eps := tc.build()
	res, err := Compile(m, eps, Options{})
	if err != nil {
		t.Fatalf("%s: Compile: %v", tc.name, err)
	}
	return res
}

// golden is what a class's golden file holds.
func golden(t testing.TB, c *Class) []byte {
	t.Helper()
	y, err := c.YAML()
	if err != nil {
		t.Fatalf("%s: YAML: %v", c.Name, err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# class %s, snapshot version %s\n", c.Name, c.SnapshotVersion)
	b.Write(y)
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	for _, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) {
			res := compileCase(t, tc)
			dir := filepath.Join("testdata", "golden", tc.name)
			if *update {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			want := map[string]bool{}
			for _, c := range res.Classes {
				file := filepath.Join(dir, c.Name+".yaml")
				want[c.Name+".yaml"] = true
				got := golden(t, c)
				if *update {
					if err := os.WriteFile(file, got, 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				exp, err := os.ReadFile(file)
				if err != nil {
					t.Fatalf("%v (run go test ./compiler -run TestGolden -update)", err)
				}
				if d := cmp.Diff(string(exp), string(got)); d != "" {
					t.Errorf("%s differs from %s (-want +got; -update to accept):\n%s", c.Name, file, d)
				}
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if !want[e.Name()] {
					t.Errorf("stale golden file %s (run -update)", filepath.Join(dir, e.Name()))
				}
			}
		})
	}
}

// shuffled rebuilds every map of a model, inserting keys in a random order,
// and shuffles each service's routes: their order is precedence, not the
// order of the list.
func shuffled(m *mesh.Model, r *rand.Rand) *mesh.Model {
	out := *m
	out.Services = map[string]*mesh.Service{}
	for _, name := range perm(mesh.SortedKeys(m.Services), r) {
		s := *m.Services[name]
		s.Ports = map[string]mesh.Port{}
		for _, k := range perm(mesh.SortedKeys(m.Services[name].Ports), r) {
			s.Ports[k] = m.Services[name].Ports[k]
		}
		s.Versions = map[string]*mesh.Version{}
		for _, k := range perm(mesh.SortedKeys(m.Services[name].Versions), r) {
			s.Versions[k] = m.Services[name].Versions[k]
		}
		s.Routes = nil
		routes := append(mesh.Routes(nil), m.Services[name].Routes...)
		r.Shuffle(len(routes), func(i, j int) { routes[i], routes[j] = routes[j], routes[i] })
		for _, rt := range routes {
			to := rt.To
			if to != nil {
				rt.To = map[string]int{}
				for _, k := range perm(mesh.SortedKeys(to), r) {
					rt.To[k] = to[k]
				}
			}
			hs := rt.Match.Headers
			if hs != nil {
				rt.Match.Headers = map[string]mesh.StringMatch{}
				for _, k := range perm(mesh.SortedKeys(hs), r) {
					rt.Match.Headers[k] = hs[k]
				}
			}
			s.Routes = append(s.Routes, rt)
		}
		out.Services[name] = &s
	}
	out.Positions = mesh.Positions{}
	for _, k := range perm(mesh.SortedKeys(m.Positions), r) {
		out.Positions[k] = m.Positions[k]
	}
	return &out
}

func perm(keys []string, r *rand.Rand) []string {
	r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
	return keys
}

func allYAML(t testing.TB, res *Result) string {
	t.Helper()
	var b strings.Builder
	for _, c := range res.Classes {
		b.Write(golden(t, c))
	}
	return b.String()
}

// Compiling the same mesh again, with every map of the model rebuilt in a
// random insertion order, gives the same bytes and versions.
func TestDeterministic(t *testing.T) {
	for i, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewSource(int64(i)))
			m, eps := tc.build()
			first, err := Compile(m, eps, Options{})
			if err != nil {
				t.Fatal(err)
			}
			want := allYAML(t, first)
			for n := 0; n < 6; n++ {
				again, err := Compile(shuffled(m, r), eps, Options{})
				if err != nil {
					t.Fatal(err)
				}
				for j, c := range again.Classes {
					if c.SnapshotVersion != first.Classes[j].SnapshotVersion {
						t.Fatalf("%s: version %s, first time %s", c.Name, c.SnapshotVersion, first.Classes[j].SnapshotVersion)
					}
				}
				if n < 2 {
					if d := cmp.Diff(want, allYAML(t, again)); d != "" {
						t.Fatalf("YAML differs:\n%s", d)
					}
				}
			}
		})
	}
}

func TestSnapshotVersion(t *testing.T) {
	tc := cases()[0]
	m, _ := tc.build()
	a, err := Compile(m, nil, Options{Revision: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(m, nil, Options{Revision: "r2"})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range a.Classes {
		if !strings.HasPrefix(c.SnapshotVersion, "r1/") || len(c.SnapshotVersion) != len("r1/")+12 {
			t.Errorf("%s: version %q, want r1/<12 hex>", c.Name, c.SnapshotVersion)
		}
		// A new revision with the same content changes no resource: Envoy
		// then neither receives nor drains anything.
		if c.SnapshotVersion[3:] != b.Classes[i].SnapshotVersion[3:] {
			t.Errorf("%s: hash changed with the revision alone: %s vs %s", c.Name, c.SnapshotVersion, b.Classes[i].SnapshotVersion)
		}
		for j, r := range c.All() {
			if !proto.Equal(r, b.Classes[i].All()[j]) {
				t.Errorf("%s: resource %d differs between two revisions of the same model", c.Name, j)
			}
		}
	}
	// An endpoint change changes only the classes that see that service.
	eps := Endpoints{"reviews": {"v1": {{Host: "10.9.9.9"}}, "v2": {{Host: "10.9.9.8"}}}}
	c, err := Compile(m, eps, Options{Revision: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Class("frontend-v1").SnapshotVersion == c.Class("frontend-v1").SnapshotVersion {
		t.Error("frontend-v1: endpoints of its dependency changed, version did not")
	}
	if a.Class("reviews-v1").SnapshotVersion != c.Class("reviews-v1").SnapshotVersion {
		t.Error("reviews-v1: nothing it sees changed, version did")
	}
}

func TestSnapshotConsistent(t *testing.T) {
	for _, tc := range cases() {
		res := compileCase(t, tc)
		for _, c := range res.Classes {
			s, err := c.Snapshot()
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
				continue
			}
			// The proto constraints (protoc-gen-validate) Envoy checks too.
			for _, r := range c.All() {
				if err := r.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
					t.Errorf("%s/%s: %s: %v", tc.name, c.Name, cache.GetResourceName(r), err)
				}
			}
			for _, typ := range ResourceTypes {
				if got := s.GetVersion(typ); got != c.SnapshotVersion {
					t.Errorf("%s/%s: %s version %q", tc.name, c.Name, typ, got)
				}
				if len(s.GetResources(typ)) != len(c.Resources[typ]) {
					t.Errorf("%s/%s: %s: duplicate names", tc.name, c.Name, typ)
				}
			}
		}
	}
}

// Every listener, route configuration, virtual host, route and cluster
// says where it came from.
func TestProvenance(t *testing.T) {
	for _, tc := range cases() {
		res := compileCase(t, tc)
		for _, c := range res.Classes {
			check := func(ref ProvenanceRef) {
				t.Helper()
				p, ok := c.Provenance[ref]
				if !ok || p.Service == "" || p.File != "mesh.cue" || p.Line == 0 {
					t.Errorf("%s/%s: %+v: provenance %+v (recorded: %v)", tc.name, c.Name, ref, p, ok)
				}
			}
			for _, typ := range ResourceTypes {
				for _, r := range c.Resources[typ] {
					name := cache.GetResourceName(r)
					check(ProvenanceRef{Type: typ, Name: name})
					switch r := r.(type) {
					case *listenerv3.Listener:
						if r.Name == InboundListenerName {
							for i := range r.FilterChains {
								check(ProvenanceRef{Type: typ, Name: name, Part: fmt.Sprintf("filter_chains[%d]", i)})
							}
						}
					case *routev3.RouteConfiguration:
						for i, vh := range r.VirtualHosts {
							check(ProvenanceRef{Type: typ, Name: name, Part: fmt.Sprintf("virtual_hosts[%d]", i)})
							for j := range vh.Routes {
								check(ProvenanceRef{Type: typ, Name: name, Part: fmt.Sprintf("virtual_hosts[%d].routes[%d]", i, j)})
							}
						}
					}
				}
			}
		}
	}
}

// No resource carries its provenance: a line number moved by a comment
// must not change what Envoy receives.
func TestProvenanceNotInResources(t *testing.T) {
	for _, tc := range cases() {
		res := compileCase(t, tc)
		for _, c := range res.Classes {
			for _, r := range c.All() {
				b, err := protojson.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(b, []byte("provenance")) || bytes.Contains(b, []byte("mesh.cue")) {
					t.Errorf("%s/%s: resource %s carries provenance: %s", tc.name, c.Name, cache.GetResourceName(r), b)
				}
			}
		}
	}
}

func TestScoping(t *testing.T) {
	var tc testCase
	for _, c := range cases() {
		if c.name == "scoping" {
			tc = c
		}
	}
	res := compileCase(t, tc)
	want := map[string][]string{
		"frontend-v1": {"catalog.shop", "reviews.shop"},
		"reviews-v1":  {"ratings.shop"},
		"reviews-v2":  {"ratings.shop"},
		"catalog-v1":  nil,
		"ratings-v1":  nil,
		"admin-v1":    nil,
	}
	for class, hosts := range want {
		c := res.Class(class)
		if c == nil {
			t.Fatalf("no class %s", class)
		}
		seen := map[string]bool{}
		for _, r := range c.Resources[resource.ClusterType] {
			name := cache.GetResourceName(r)
			if strings.HasPrefix(name, "outbound|") {
				parts := strings.Split(name, "|")
				seen[parts[len(parts)-1]] = true
			}
		}
		if d := cmp.Diff(hosts, mesh.SortedKeys(seen)); d != "" && !(len(hosts) == 0 && len(seen) == 0) {
			t.Errorf("%s: outbound hosts (-want +got):\n%s", class, d)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for name, build := range map[string]func() *mesh.Model{
		"tcp port collision": func() *mesh.Model {
			a := withPorts(svc("a", 5432), mesh.Port{Name: "pg", Port: 5432, Protocol: mesh.TCP})
			b := withPorts(svc("b", 5432), mesh.Port{Name: "pg", Port: 5432, Protocol: mesh.TCP})
			return newModel(calls(svc("app", 8080), "a", "b"), a, b)
		},
		"port is the inbound port":  func() *mesh.Model { return newModel(svc("app", 15006)) },
		"port is the outbound port": func() *mesh.Model { return newModel(svc("app", 15001)) },
		"unknown call":              func() *mesh.Model { return newModel(calls(svc("app", 8080), "nope")) },
		"mirror to a tcp service": func() *mesh.Model {
			rv := svc("reviews", 9080)
			rv.Routes = []mesh.Route{{Match: prefix("/"), Mirror: &mesh.Mirror{To: "db", Percent: 1}}}
			db := withPorts(svc("db", 5432), mesh.Port{Name: "pg", Port: 5432, Protocol: mesh.TCP})
			return newModel(calls(svc("app", 8080), "reviews"), rv, db)
		},
		"bad static endpoint": func() *mesh.Model {
			s := svc("reviews", 9080)
			s.Versions["v1"].Endpoints = []string{"10.0.0.1"}
			return newModel(calls(svc("app", 8080), "reviews"), s)
		},
	} {
		if _, err := Compile(build(), nil, Options{}); err == nil {
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// Every class of every case, as a static bootstrap, is accepted by a real
// Envoy (`envoy --mode validate`).
func TestEnvoyValidate(t *testing.T) {
	envoy := tooltest.Envoy(t)
	for _, tc := range cases() {
		for _, c := range compileCase(t, tc).Classes {
			t.Run(tc.name+"/"+c.Name, func(t *testing.T) {
				t.Parallel()
				envoyValidate(t, envoy, c)
			})
		}
	}
}

// envoyValidate runs `envoy --mode validate` on the class's static
// bootstrap and fails the test with Envoy's output if it is rejected.
func envoyValidate(t *testing.T, envoy string, c *Class) {
	t.Helper()
	b, err := Bootstrap(c, BootstrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	y, err := MarshalYAMLObject(b)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(file, y, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, envoy, "--mode", "validate", "-c", file,
		"--log-level", "warn", "--disable-hot-restart").CombinedOutput()
	if err != nil {
		t.Fatalf("envoy rejected %s: %v\n%s\n--- bootstrap ---\n%s", c.Name, err, out, y)
	}
}
