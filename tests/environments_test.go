package tests

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/schema"
)

func examplesDir() string { return filepath.Join(tooltest.RepoRoot(), "environments") }

// TestExampleEnvironmentsPassRealCUEVet runs the real cue CLI, as a mesh
// repository's CI would with no weft installed.
func TestExampleEnvironmentsPassRealCUEVet(t *testing.T) {
	cue := tooltest.CUE(t)
	for _, args := range [][]string{{"vet", "-c", "./..."}, {"fmt", "--check", "./..."}} {
		cmd := exec.Command(cue, args...)
		cmd.Dir = examplesDir()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("cue %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestExampleEnvironmentsLoad checks that every environment loads and that
// the environments differ the way environments/README.md says.
func TestExampleEnvironmentsLoad(t *testing.T) {
	envs := schema.Environments(examplesDir())
	if strings.Join(envs, ",") != "dev,prod,staging" {
		t.Fatalf("environments = %v, want dev, prod, staging", envs)
	}
	canary := map[string]int{}
	for _, env := range envs {
		m, err := schema.Load(examplesDir(), schema.Options{Env: env})
		if err != nil {
			t.Fatalf("%s: %v", env, err)
		}
		if n := len(m.Services); n < 7 {
			t.Errorf("%s: %d services, want at least 7", env, n)
		}
		for _, r := range m.Services["reviews"].Routes {
			if r.Name == "split" {
				canary[env] = r.To["v2"]
			}
		}
		faults := 0
		for _, name := range m.ServiceNames() {
			for _, r := range m.Services[name].Routes {
				if r.Fault != nil {
					faults++
				}
			}
		}
		if (env == "dev") != (faults > 0) {
			t.Errorf("%s: %d routes with fault injection; want faults only in dev", env, faults)
		}
	}
	if canary["dev"] != 50 || canary["staging"] != 20 || canary["prod"] != 10 {
		t.Errorf("reviews v2 weight per environment = %v, want dev 50, staging 20, prod 10", canary)
	}
}
