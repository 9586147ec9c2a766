package compiler_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/meshgen"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

func genModel(tb testing.TB, spec meshgen.Spec) *mesh.Model {
	tb.Helper()
	dir := tb.TempDir()
	if err := meshgen.Write(dir, spec); err != nil {
		tb.Fatal(err)
	}
	m, err := schema.Load(dir, schema.Options{Revision: "main@sha1:0123456789ab"})
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// podEndpoints gives every version of every service n pod IPs (port 0:
// the service port), the i-th set of addresses for seed i.
func podEndpoints(m *mesh.Model, n, seed int) compiler.Endpoints {
	eps := compiler.Endpoints{}
	k := 0
	for _, name := range m.ServiceNames() {
		eps[name] = map[string][]compiler.Address{}
		for _, v := range m.Services[name].VersionNames() {
			for range n {
				eps[name][v] = append(eps[name][v], compiler.Address{Host: fmt.Sprintf("10.%d.%d.%d", seed, k>>8&255, k&255)})
				k++
			}
		}
	}
	return eps
}

// sameResult fails unless a and b have the same classes, versions and
// resources (compared as protos, in order).
func sameResult(t *testing.T, a, b *compiler.Result) {
	t.Helper()
	if len(a.Classes) != len(b.Classes) {
		t.Fatalf("%d classes, want %d", len(a.Classes), len(b.Classes))
	}
	for i, ca := range a.Classes {
		cb := b.Classes[i]
		if ca.Name != cb.Name || ca.SnapshotVersion != cb.SnapshotVersion {
			t.Fatalf("class %d: %s %s, want %s %s", i, ca.Name, ca.SnapshotVersion, cb.Name, cb.SnapshotVersion)
		}
		for _, typ := range compiler.ResourceTypes {
			ra, rb := ca.Resources[typ], cb.Resources[typ]
			if len(ra) != len(rb) {
				t.Fatalf("class %s: %d %s, want %d", ca.Name, len(ra), typ, len(rb))
			}
			for j := range ra {
				if !proto.Equal(ra[j], rb[j]) {
					t.Fatalf("class %s: %s %q differs from Compile's", ca.Name, typ, cache.GetResourceName(ra[j]))
				}
			}
		}
	}
}

// TestWithEndpointsIsCompile: rebuilding the load assignments of a
// compiled result for new endpoints gives exactly what compiling with
// those endpoints gives (resources and snapshot versions), and shares
// everything else with the old result.
func TestWithEndpointsIsCompile(t *testing.T) {
	m := genModel(t, meshgen.Spec{Services: 12, Endpoints: 4, Calls: 3})
	e0, e1 := podEndpoints(m, 2, 1), podEndpoints(m, 3, 2)
	r0, err := compiler.Compile(m, e0, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r1, err := compiler.Compile(m, e1, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := compiler.WithEndpoints(r0, e1)
	if err != nil {
		t.Fatal(err)
	}
	sameResult(t, got, r1)
	for i, c := range got.Classes {
		old := r0.Classes[i]
		if c.SnapshotVersion == old.SnapshotVersion {
			t.Errorf("class %s: version unchanged although its endpoints changed", c.Name)
		}
		if !strings.HasPrefix(c.SnapshotVersion, "main@sha1:0123456789ab/") {
			t.Errorf("class %s: version %q lost the revision", c.Name, c.SnapshotVersion)
		}
		for _, typ := range compiler.ResourceTypes[:3] {
			for j, r := range c.Resources[typ] {
				if r != old.Resources[typ][j] {
					t.Errorf("class %s: %s %q was copied; want it shared", c.Name, typ, cache.GetResourceName(r))
				}
			}
		}
	}
	// And back: the rebuilt result can be rebuilt again.
	back, err := compiler.WithEndpoints(got, e0)
	if err != nil {
		t.Fatal(err)
	}
	sameResult(t, back, r0)
}

// TestWithEndpointsOnlyWhatChanged: moving one endpoint of one service
// changes the classes that call it and nothing else; the others are
// returned as they were (the same *Class).
func TestWithEndpointsOnlyWhatChanged(t *testing.T) {
	m := genModel(t, meshgen.Spec{Services: 12, Endpoints: 4, Calls: 3})
	e0 := podEndpoints(m, 2, 1)
	r0, err := compiler.Compile(m, e0, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e1 := podEndpoints(m, 2, 1)
	e1["svc-00005"]["v2"][0] = compiler.Address{Host: "fd00::7"}
	got, err := compiler.WithEndpoints(r0, e1)
	if err != nil {
		t.Fatal(err)
	}
	callers := map[string]bool{}
	for _, s := range []string{"svc-00002", "svc-00003", "svc-00004"} { // calls: the next 3
		callers[compiler.ClassName(s, "v1")], callers[compiler.ClassName(s, "v2")] = true, true
	}
	for i, c := range got.Classes {
		old := r0.Classes[i]
		if !callers[c.Name] {
			if c != old {
				t.Errorf("class %s does not call svc-00005 but was rebuilt", c.Name)
			}
			continue
		}
		var changed []string
		for j, r := range c.Resources[resource.EndpointType] {
			if r != old.Resources[resource.EndpointType][j] {
				changed = append(changed, cache.GetResourceName(r))
			}
		}
		want := "outbound|8080|v2|svc-00005.gen outbound|8080||svc-00005.gen"
		if strings.Join(changed, " ") != want {
			t.Errorf("class %s: changed load assignments %v, want [%s]", c.Name, changed, want)
		}
	}
	sameNow, err := compiler.WithEndpoints(got, e1)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range sameNow.Classes {
		if c != got.Classes[i] {
			t.Errorf("class %s rebuilt for the same endpoints", c.Name)
		}
	}
}

func TestWithEndpointsErrors(t *testing.T) {
	m := genModel(t, meshgen.Spec{Services: 3, Endpoints: 2, Calls: 1})
	r0, err := compiler.Compile(m, podEndpoints(m, 1, 1), compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dns := podEndpoints(m, 1, 1)
	dns["svc-00001"]["v1"] = []compiler.Address{{Host: "vm-1.example.com", Port: 8080}}
	hand := *r0.Classes[0]
	hand.Resources = r0.Classes[0].Resources
	for _, tc := range []struct {
		name string
		res  *compiler.Result
		eps  compiler.Endpoints
		want string
	}{
		{"nil endpoints", r0, nil, "WithEndpoints needs endpoints"},
		{"a DNS name", r0, dns, `cluster outbound|8080|v1|svc-00001.gen: endpoint "vm-1.example.com" of service svc-00001 is not an IP address`},
		{"a class not from Compile", &compiler.Result{Classes: []*compiler.Class{{Name: "x-v1", SnapshotVersion: "1"}}}, compiler.Endpoints{}, "class x-v1 was not made by Compile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compiler.WithEndpoints(tc.res, tc.eps)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// BenchmarkWithEndpoints: a 1,000-service mesh (2,000 classes, 10 pod
// IPs per version); one endpoint of one service moves.
func BenchmarkWithEndpoints(b *testing.B) {
	m := genModel(b, meshgen.Spec{Services: 1000, Endpoints: 2, Calls: 3})
	e0 := podEndpoints(m, 5, 1)
	r0, err := compiler.Compile(m, e0, compiler.Options{})
	if err != nil {
		b.Fatal(err)
	}
	e1 := podEndpoints(m, 5, 1)
	e1["svc-00500"]["v1"][0] = compiler.Address{Host: "10.200.0.1"}
	in := []compiler.Endpoints{e1, e0}
	res := r0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if res, err = compiler.WithEndpoints(res, in[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
