package compiler

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/meshgen"
	"github.com/weft-dev/weft/schema"
)

// BenchmarkGate is what the acceptance gate adds to a revision: a run is
// the pipeline of tests.BenchmarkPipeline (load + validate + compile of
// every class, generated mesh with 10 endpoints and 3 dependencies per
// service), and gate-ms is the part of it spent in the gate (model checks
// and the checks of every emitted resource); gate-% is its share. The
// compile runs on one core here (GOMAXPROCS 1): classes are compiled
// concurrently otherwise, and the gate's time summed over workers would
// not be a share of the wall time.
func BenchmarkGate(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			if err := meshgen.Write(dir, meshgen.Spec{Services: n, Endpoints: 10, Calls: 3}); err != nil {
				b.Fatal(err)
			}
			var gate, total time.Duration
			gateTimer = func() func() {
				start := time.Now()
				return func() { gate += time.Since(start) }
			}
			defer func() { gateTimer = nil }()
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				m, err := schema.Load(dir, schema.Options{Revision: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Compile(m, nil, Options{}); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
			}
			b.ReportMetric(float64(gate.Milliseconds())/float64(b.N), "gate-ms/op")
			b.ReportMetric(100*gate.Seconds()/total.Seconds(), "gate-%")
		})
	}
}
