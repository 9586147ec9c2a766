package tests

import (
	"fmt"
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
