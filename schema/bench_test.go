package schema_test

import (
	"fmt"
	"testing"

	"github.com/weft-dev/weft/internal/meshgen"
	"github.com/weft-dev/weft/schema"
)

// BenchmarkLoad measures load + validate + decode + checks of generated
// meshes; the pipeline benchmark in tests/ adds the compiler.
func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			dir := b.TempDir()
			if err := meshgen.Write(dir, meshgen.Spec{Services: n, Endpoints: 10, Calls: 3}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := schema.Load(dir, schema.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
