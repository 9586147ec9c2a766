package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/internal/meshgen"
	"github.com/weft-dev/weft/schema"
)

var sizes = []int{100, 1000}

func genMesh(b *testing.B, n int) string {
	b.Helper()
	dir := b.TempDir()
	if err := meshgen.Write(dir, meshgen.Spec{Services: n, Endpoints: 10, Calls: 3}); err != nil {
		b.Fatal(err)
	}
	return dir
}

// BenchmarkPipeline is what a new revision costs before it can be served:
// load + validate + cross-reference checks + compile of every proxy class,
// for generated meshes with 10 endpoints per service and 3 dependencies.
func BenchmarkPipeline(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			dir := genMesh(b, n)
			b.ReportAllocs()
			for b.Loop() {
				m, err := schema.Load(dir, schema.Options{Revision: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := compiler.Compile(m, nil, compiler.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompile is the compiler alone on an already loaded model.
func BenchmarkCompile(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			m, err := schema.Load(genMesh(b, n), schema.Options{Revision: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := compiler.Compile(m, nil, compiler.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCompileOneServiceChanged is the compile step of a revision
// that changes one service (the split of svc-00050, which three services
// call) when the previous revision's result is at hand: compiler.CompileFrom
// fingerprints every service's inputs and recompiles only the changed
// service and the services whose configuration depends on it (its three
// callers route to it). Both models come from schema.Load, as in the
// pipeline; "compiled" is the number of services compiled again.
func BenchmarkCompileOneServiceChanged(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			dir := genMesh(b, n)
			m1, err := schema.Load(dir, schema.Options{Revision: "r1"})
			if err != nil {
				b.Fatal(err)
			}
			edited := meshgen.Source(meshgen.Spec{Services: n, Endpoints: 10, Calls: 3})
			at := strings.Index(edited, "\t\t\"svc-00050\": {")
			edited = edited[:at] + strings.Replace(edited[at:], "to: {v1: 90, v2: 10}", "to: {v1: 50, v2: 50}", 1)
			if err := os.WriteFile(filepath.Join(dir, "mesh.cue"), []byte(edited), 0o644); err != nil {
				b.Fatal(err)
			}
			m2, err := schema.Load(dir, schema.Options{Revision: "r2"})
			if err != nil {
				b.Fatal(err)
			}
			prev, err := compiler.Compile(m1, nil, compiler.Options{})
			if err != nil {
				b.Fatal(err)
			}
			var res *compiler.Result
			b.ReportAllocs()
			for b.Loop() {
				if res, err = compiler.CompileFrom(prev, m2, nil, compiler.Options{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(res.Stats.Compiled), "compiled")
		})
	}
}
