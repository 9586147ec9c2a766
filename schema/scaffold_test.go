package schema_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/schema"
)

func TestScaffoldLoadsInEveryEnvironment(t *testing.T) {
	dir := t.TempDir()
	if err := schema.Scaffold(dir, "example.com/mesh"); err != nil {
		t.Fatal(err)
	}
	envs := schema.Environments(dir)
	if strings.Join(envs, ",") != "dev,prod" {
		t.Fatalf("environments = %v", envs)
	}
	for _, env := range append([]string{""}, envs...) {
		m, err := schema.Load(dir, schema.Options{Env: env})
		if err != nil {
			t.Fatalf("env %q: %v", env, err)
		}
		routes := m.Services["api"].Routes
		if want := map[string]int{"": 100, "dev": 50, "prod": 90}[env]; routes.Route("split").To["v1"] != want {
			t.Errorf("env %q: api v1 weight = %d, want %d", env, routes.Route("split").To["v1"], want)
		}
		if len(routes) != 2 || routes[0].Name != "canary" || routes.Route("canary").To["v2"] != 100 {
			t.Errorf("env %q: routes = %+v, want canary first, untouched", env, routes)
		}
	}
	if err := schema.Scaffold(dir, "example.com/mesh"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second scaffold: err = %v, want already exists", err)
	}
}

// TestScaffoldPassesRealCUEVet proves the promise of `weft init`: the plain
// cue CLI, with no weft installed, validates the repository.
func TestScaffoldPassesRealCUEVet(t *testing.T) {
	cue := tooltest.CUE(t)
	dir := t.TempDir()
	if err := schema.Scaffold(dir, "example.com/mesh"); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, schema.SchemaFile))
	if err != nil || string(got) != string(schema.Source()) {
		t.Fatalf("schema copy in cue.mod differs from the embedded schema (err %v)", err)
	}
	cmd := exec.Command(cue, "vet", "-c", "./...")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cue vet -c ./...: %v\n%s", err, out)
	}
	// And cue sees the same errors weft does.
	bad := filepath.Join(dir, "environments", "dev", "bad.cue")
	if err := os.WriteFile(bad, []byte("package mesh\nmesh: services: web: rateLimit: requestsPerSecond: -1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(cue, "vet", "-c", "./...")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "requestsPerSecond") {
		t.Fatalf("cue vet accepted a negative rate limit: %v\n%s", err, out)
	}
}

// TestScaffoldGitIgnore: weft init writes a .gitignore keeping weft's
// state and build output out of git, and completes an existing one
// without duplicating lines.
func TestScaffoldGitIgnore(t *testing.T) {
	dir := t.TempDir()
	if err := schema.Scaffold(dir, "example.com/mesh"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ".gitignore"))
	if err != nil || !strings.Contains(string(b), "\n/.weft/\n") || !strings.Contains(string(b), "\n/out/\n") {
		t.Fatalf(".gitignore = %q, %v", b, err)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, ".gitignore"), []byte("node_modules/\n/out/"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := schema.Scaffold(other, "example.com/mesh"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(filepath.Join(other, ".gitignore"))
	if got := string(b); got != "node_modules/\n/out/\n# weft: local state and build output\n/.weft/\n" {
		t.Errorf("completed .gitignore = %q", got)
	}
}
