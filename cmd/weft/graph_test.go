package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/ from the current output")

// runWeft runs the weft command line with args and returns its stdout.
func runWeft(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestGraphGolden: weft graph of the example shop (environments/: the
// base and every environment, and each environment alone) and of
// testdata/graphmesh, whose environments add a service, add and remove
// edges, add a mirror and change split weights, in both formats, byte
// for byte (go test ./cmd/weft -run TestGraphGolden -update rewrites
// testdata/graph/ after an intended change: review the diff).
func TestGraphGolden(t *testing.T) {
	for _, tc := range []struct{ name, dir, env string }{
		{"shop", "../../environments", ""},
		{"shop-dev", "../../environments", "dev"},
		{"shop-staging", "../../environments", "staging"},
		{"shop-prod", "../../environments", "prod"},
		{"graphmesh", "testdata/graphmesh", ""},
		{"graphmesh-canary", "testdata/graphmesh", "canary"},
	} {
		for _, format := range []string{"dot", "mermaid"} {
			name := tc.name + "." + map[string]string{"dot": "dot", "mermaid": "mmd"}[format]
			t.Run(name, func(t *testing.T) {
				args := []string{"graph", tc.dir, "--format", format}
				if tc.env != "" {
					args = append(args, "--env", tc.env)
				}
				got, err := runWeft(t, args...)
				if err != nil {
					t.Fatal(err)
				}
				again, err := runWeft(t, args...)
				if err != nil || again != got {
					t.Fatalf("a second run printed different bytes (%v)", err)
				}
				p := filepath.Join("testdata", "graph", name)
				if *update {
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(p)
				if err != nil {
					t.Fatalf("%v (run go test ./cmd/weft -run TestGraphGolden -update)", err)
				}
				if string(want) != got {
					t.Errorf("%s differs from the golden file (run -update and review the diff); got:\n%s", p, got)
				}
			})
		}
	}
}

// TestGraphMarks: what the golden files must show, said in words: the
// canary environment's added service and edges, its removed edge and its
// changed weights are marked in both formats.
func TestGraphMarks(t *testing.T) {
	dot, err := runWeft(t, "graph", "testdata/graphmesh", "--env", "canary")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"recommendations" [label="recommendations\nns web · v1\n(added in canary)", color="#1a7f37"`,
		`"web" -> "recommendations" [label="added", color="#1a7f37"`,
		`"api" -> "recommendations" [label="added: mirror 10% of main", style=dashed, color="#1a7f37"`,
		`"web" -> "search" [label="removed", color="#8c959f", fontcolor="#8c959f", style=dotted]`,
		`main: v1 75% · v2 25%\n(main in the base: v1 100%)", color="#bc4c00"`,
	} {
		if !strings.Contains(dot, want) {
			t.Errorf("DOT lacks %s:\n%s", want, dot)
		}
	}
	mmd, err := runWeft(t, "graph", "testdata/graphmesh", "--env", "canary", "--format", "mermaid")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`g0_web ==>|"added"| g0_recommendations`,
		`g0_web -.->|"removed"| g0_search`,
		"class g0_recommendations added",
		"class g0_api changed",
	} {
		if !strings.Contains(mmd, want) {
			t.Errorf("Mermaid lacks %s:\n%s", want, mmd)
		}
	}
}

// TestGraphErrors: a bad format and a bad environment are clear errors.
func TestGraphErrors(t *testing.T) {
	if _, err := runWeft(t, "graph", "../../environments", "--format", "svg"); err == nil || !strings.Contains(err.Error(), `--format "svg": want dot or mermaid`) {
		t.Errorf("--format svg: %v", err)
	}
	if _, err := runWeft(t, "graph", "../../environments", "--env", "qa"); err == nil || !strings.Contains(err.Error(), "known: dev, prod, staging") {
		t.Errorf("--env qa: %v", err)
	}
}
