package meshgen_test

import (
	"testing"

	"github.com/weft-dev/weft/internal/meshgen"
	"github.com/weft-dev/weft/schema"
)

func TestGeneratedMeshLoads(t *testing.T) {
	dir := t.TempDir()
	if err := meshgen.Write(dir, meshgen.Spec{Services: 20, Endpoints: 10, Calls: 3}); err != nil {
		t.Fatal(err)
	}
	m, err := schema.Load(dir, schema.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Services) != 20 || len(m.Services["svc-00003"].Versions["v2"].Endpoints) != 5 {
		t.Fatalf("unexpected mesh: %d services", len(m.Services))
	}
	if got := m.Callers(m.Services["svc-00003"]); len(got) != 3 {
		t.Fatalf("callers = %v", got)
	}
}
