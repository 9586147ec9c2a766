package policies_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-dev/weft/internal/meshgen"
	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// benchModel loads a generated mesh of n services (internal/meshgen: 10
// endpoints and 3 dependencies per service, 2 versions, a 90/10 split,
// retries, a rate limit and authz each) as the prod environment, with the
// splits of three environments for the canary rule. clean adds a service
// timeout to every service, which makes the mesh pass every rule.
func benchModel(b *testing.B, n int, clean bool) (*mesh.Model, map[string]policies.Splits) {
	b.Helper()
	dir := b.TempDir()
	if err := meshgen.Write(dir, meshgen.Spec{Services: n, Endpoints: 10, Calls: 3}); err != nil {
		b.Fatal(err)
	}
	if clean {
		// A service timeout for the routes that have none.
		src := strings.ReplaceAll(meshgen.Source(meshgen.Spec{Services: n, Endpoints: 10, Calls: 3}),
			"\t\t\tports: http: port: 8080\n", "\t\t\tports: http: port: 8080\n\t\t\ttimeout: \"3s\"\n")
		if err := os.WriteFile(filepath.Join(dir, "mesh.cue"), []byte(src), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	m, err := schema.Load(dir, schema.Options{Revision: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	m.Environment = "prod" // every default rule runs in prod
	s := policies.SplitsOf(m)
	return m, map[string]policies.Splits{"dev": s, "staging": s, "prod": s}
}

// BenchmarkPolicies is the full policy check of one environment with the
// default bundle, the engine compiled once (as in `weft vet` and the
// reconciler): "check" is what one evaluation costs (input conversion,
// every rule, findings with positions); "input" and "eval" are its two
// parts. The generated services leave their first route on the mesh
// default timeout, so route_timeout reports one finding per service; the
// "clean" meshes give every service a timeout and pass every rule.
func BenchmarkPolicies(b *testing.B) {
	e, err := policies.New(ctx, policies.Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, mesh := range []string{"clean", "findings"} {
		for _, n := range []int{1000, 5000} {
			var (
				in  policies.Input
				fs  []policies.Finding
				set bool
			)
			setup := func(b *testing.B) {
				if set {
					return
				}
				set = true
				m, splits := benchModel(b, n, mesh == "clean")
				in = policies.Input{Model: m, Splits: splits}
				if fs, err = e.Eval(ctx, in); err != nil {
					b.Fatal(err)
				}
			}
			b.Run(fmt.Sprintf("check/%s/services=%d", mesh, n), func(b *testing.B) {
				setup(b)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := e.Eval(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(fs)), "findings/op")
			})
			b.Run(fmt.Sprintf("input/%s/services=%d", mesh, n), func(b *testing.B) {
				setup(b)
				b.ReportAllocs()
				for b.Loop() {
					policies.BuildInput(in)
				}
			})
			b.Run(fmt.Sprintf("eval/%s/services=%d", mesh, n), func(b *testing.B) {
				setup(b)
				v := policies.BuildInput(in)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := e.EvalValue(ctx, in.Model, v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkCompile is the one-time cost of New: loading and compiling the
// default bundle and preparing the query.
func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policies.New(ctx, policies.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
