package xds

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/meshgen"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// Benchmarks of serving. The clients are in-process ADS clients (client
// in client_test.go) over real loopback gRPC connections, not Envoys;
// each ACKs every response at once. "ACKed" is measured at the server:
// the time until its status has every proxy in sync.

const benchClients = 100

func loadGen(b *testing.B, spec meshgen.Spec) *mesh.Model {
	b.Helper()
	dir := b.TempDir()
	if err := meshgen.Write(dir, spec); err != nil {
		b.Fatal(err)
	}
	m, err := schema.Load(dir, schema.Options{Revision: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func reportPercentiles(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(p float64) float64 {
		i := int(p * float64(len(ds)-1))
		return float64(ds[i].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkDeltaEndpointPush: one endpoint of one service changes; 100
// delta clients (proxies of the two classes that call the service) are
// connected. Time from Publish until all 100 have received the new load
// assignment and the server has their ACKs. p50/p99 over iterations.
func BenchmarkDeltaEndpointPush(b *testing.B) {
	m := loadGen(b, meshgen.Spec{Services: 10, Endpoints: 4, Calls: 3})
	a, err := compiler.Compile(m, nil, compiler.Options{})
	if err != nil {
		b.Fatal(err)
	}
	// svc-00000 calls svc-00001..3; move one endpoint of svc-00001 v1.
	m.Services["svc-00001"].Versions["v1"].Endpoints[0] = "10.99.0.1:8080"
	c, err := compiler.Compile(m, nil, compiler.Options{})
	if err != nil {
		b.Fatal(err)
	}
	results := []*compiler.Result{a, c}
	if d := changedTypes(a.Class("svc-00000-v1"), c.Class("svc-00000-v1")); len(d) != 1 || !d[resource.EndpointType] {
		b.Fatalf("the change touches %v, want only endpoints", d)
	}

	s, addr := startServer(b, Options{})
	if err := s.Publish("bench-0", a); err != nil {
		b.Fatal(err)
	}
	clients := make([]*client, benchClients)
	for i := range clients {
		clients[i] = dial(b, addr, fmt.Sprintf("proxy-%03d", i), fmt.Sprintf("svc-00000-v%d", i%2+1), true)
	}
	// Every client registered and served before the first iteration
	// (WaitSynced alone does not wait for a proxy not yet connected).
	for _, cl := range clients {
		cl.waitVersion(b, time.Minute, a.Class(cl.class).SnapshotVersion, allTypes...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := s.WaitSynced(ctx); err != nil {
		b.Fatal(err)
	}

	var ds []time.Duration
	i := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		i++
		res := results[i%2]
		t0 := time.Now()
		if err := s.Publish(fmt.Sprintf("bench-%d", i), res); err != nil {
			b.Fatal(err)
		}
		if err := s.WaitSynced(ctx); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
	}
	b.StopTimer()
	reportPercentiles(b, ds)
	last := results[i%2]
	for _, cl := range clients {
		cl.waitVersion(b, 10*time.Second, last.Class(cl.class).SnapshotVersion, resource.EndpointType)
	}
}

// BenchmarkSotWFullSync: a 1,000-service mesh (2,000 proxy classes,
// compiled once) is served; 100 state-of-the-world clients of 100
// different classes.
//
//   - connect: 100 new clients connect; time until every one holds all
//     its resources (all four types at its class's version) and the
//     server has their ACKs.
//   - republish: 100 clients connected; a new revision of the whole mesh
//     (every class's snapshot built and checked) is published; time until
//     all 100 have ACKed it.
func BenchmarkSotWFullSync(b *testing.B) {
	m := loadGen(b, meshgen.Spec{Services: 1000, Endpoints: 10, Calls: 3})
	r1, err := compiler.Compile(m, nil, compiler.Options{Revision: "r1"})
	if err != nil {
		b.Fatal(err)
	}

	b.Run("connect", func(b *testing.B) {
		s, addr := startServer(b, Options{})
		if err := s.Publish("r1", r1); err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		iter := 0
		b.ReportAllocs()
		for b.Loop() {
			iter++
			clients := make([]*client, benchClients)
			for i := range clients {
				clients[i] = dial(b, addr, fmt.Sprintf("proxy-%d-%03d", iter, i), r1.Classes[i].Name, false)
			}
			for i, cl := range clients {
				cl.waitVersion(b, time.Minute, r1.Classes[i].SnapshotVersion, allTypes...)
			}
			if err := s.WaitSynced(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			for i, cl := range clients {
				for _, t := range allTypes {
					if got, want := cl.count(t), len(r1.Classes[i].Resources[t]); got != want {
						b.Fatalf("%s: %d resources of %s, want %d", cl.id, got, t, want)
					}
				}
				cl.close()
			}
			b.StartTimer()
		}
	})

	b.Run("republish", func(b *testing.B) {
		r2, err := compiler.Compile(m, nil, compiler.Options{Revision: "r2"})
		if err != nil {
			b.Fatal(err)
		}
		results := []*compiler.Result{r1, r2}
		s, addr := startServer(b, Options{})
		if err := s.Publish("r1", r1); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < benchClients; i++ {
			dial(b, addr, fmt.Sprintf("proxy-%03d", i), r1.Classes[i].Name, false)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := s.WaitSynced(ctx); err != nil {
			b.Fatal(err)
		}
		var ds []time.Duration
		i := 0
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			i++
			t0 := time.Now()
			if err := s.Publish(fmt.Sprintf("r%d", i), results[i%2]); err != nil {
				b.Fatal(err)
			}
			if err := s.WaitSynced(ctx); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, time.Since(t0))
		}
		b.StopTimer()
		reportPercentiles(b, ds)
	})
}
