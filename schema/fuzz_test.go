package schema_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// FuzzLoad feeds arbitrary CUE as an environment overlay of the example
// mesh. Whatever the input, Load must not panic, and it must either return
// a model that honours the loader's guarantees or definition errors that
// each carry a message.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("../environments/*/*.cue")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("package shop\nmesh: services: reviews: routes: split: to: {v1: 1}\n")
	f.Add("package shop\nmesh: services: reviews: routes: [_, {to: {v1: 1}}, _]\n")
	f.Add("package shop\nmesh: services: x: {ports: a: port: 1, versions: v: labels: {}}\n")

	base := f.TempDir()
	if err := os.CopyFS(base, os.DirFS("../environments")); err != nil {
		f.Fatal(err)
	}
	// The symlinked schema copy is replaced by the loader's overlay anyway.
	f.Fuzz(func(t *testing.T, overlay string) {
		dir := filepath.Join(base, "fuzz")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "fuzz.cue"), []byte(overlay), 0o644); err != nil {
			t.Fatal(err)
		}
		type result struct {
			m   *mesh.Model
			err error
		}
		done := make(chan result, 1)
		go func() {
			m, err := schema.Load(base, schema.Options{Env: "fuzz"})
			done <- result{m, err}
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("load did not finish in 10s for input:\n%s", overlay)
		}
		m, err := r.m, r.err
		if err != nil {
			if schema.IsErrors(err) {
				for _, line := range strings.Split(err.Error(), "\n") {
					if strings.TrimSpace(line) == "" {
						t.Fatalf("empty line in error:\n%v", err)
					}
				}
			}
			return
		}
		for _, name := range m.ServiceNames() {
			s := m.Services[name]
			if s.Namespace == "" || s.ServiceAccount == "" || s.MTLS == "" || s.Timeout == nil || s.Retries == nil {
				t.Fatalf("service %s: defaults not resolved", name)
			}
			for i, r := range s.Routes {
				sum := 0
				for v, w := range r.To {
					sum += w
					if s.Versions[v] == nil {
						t.Fatalf("%s route %d: unknown version %s accepted", name, i, v)
					}
				}
				if r.To != nil && sum != 100 {
					t.Fatalf("%s route %d: weights sum %d accepted", name, i, sum)
				}
			}
			for _, c := range s.Calls {
				if m.Services[c] == nil {
					t.Fatalf("%s calls unknown %s", name, c)
				}
			}
		}
	})
}
