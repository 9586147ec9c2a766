package v1alpha1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// TestGeneratedFilesAreCurrent regenerates the deepcopy code and the CRD
// with the pinned controller-gen (scripts/generate.sh) into a temporary
// folder and compares them with the committed files. controller-gen is
// built from the module cache (GOPROXY=off: `make tools` fills it), so the
// test needs no network.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	objDir, crdDir := filepath.Join(tmp, "object"), filepath.Join(tmp, "crd")

	cmd := exec.Command("bash", filepath.Join(root, "scripts", "generate.sh"), objDir, crdDir)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOPROXY=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/generate.sh (controller-gen from the module cache; run `make tools` if a module is missing): %v\n%s", err, out)
	}

	compareDir(t, objDir, filepath.Join(root, "reconciler", "api", "mesh", "v1alpha1"), "zz_generated.*")
	compareDir(t, crdDir, filepath.Join(root, "environments", "deploy", "crd"), "*.yaml")
}

// compareDir checks that the files matching pattern in committed are
// exactly the generated ones, byte for byte.
func compareDir(t *testing.T, generated, committed, pattern string) {
	t.Helper()
	gen := glob(t, generated, pattern)
	com := glob(t, committed, pattern)
	if len(gen) == 0 {
		t.Fatalf("controller-gen wrote no %s into %s", pattern, generated)
	}
	if !slices.Equal(gen, com) {
		t.Errorf("generated files %v, committed %v in %s: run `make generate` and commit", gen, com, committed)
	}
	for _, name := range gen {
		want, err := os.ReadFile(filepath.Join(generated, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(committed, name))
		if err != nil {
			continue // reported above
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `make generate` and commit it", filepath.Join(committed, name))
		}
	}
}

func glob(t *testing.T, dir, pattern string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	slices.Sort(names)
	return names
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "..", ".."))
}
