package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-dev/weft/environments/deploy"
	"github.com/weft-dev/weft/internal/tooltest"
)

// TestInstallExport runs `weft install --export` as a user does: the
// manifests are the committed environments/deploy/install.yaml, the same
// bytes on every run, and the flags move the namespace and the image.
func TestInstallExport(t *testing.T) {
	first := weftRun(t, ".", "install", "--export")
	if first.code != 0 {
		t.Fatalf("install --export: %+v", first)
	}
	committed, err := os.ReadFile(filepath.Join(tooltest.RepoRoot(), "environments", "deploy", deploy.InstallFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimPrefix(string(committed), deploy.InstallHeader); first.stdout != want {
		t.Errorf("weft install --export is not environments/deploy/install.yaml (a development build uses localhost/weft:dev)")
	}
	if again := weftRun(t, ".", "install", "--export"); again.stdout != first.stdout {
		t.Error("two runs of weft install --export differ")
	}

	moved := weftRun(t, ".", "install", "--export", "--namespace", "mesh-system", "--image", "registry.example/weft:v0.1.0")
	if moved.code != 0 {
		t.Fatalf("install --export --namespace --image: %+v", moved)
	}
	for _, want := range []string{"  name: mesh-system\n", "  namespace: mesh-system\n", "image: registry.example/weft:v0.1.0\n"} {
		if !strings.Contains(moved.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(moved.stdout, "weft-system") || strings.Contains(moved.stdout, "localhost/weft") {
		t.Error("the default namespace or image is still in the output")
	}

	bad := weftRun(t, ".", "install", "--export", "--namespace", "Bad_NS")
	if bad.code == 0 || !strings.Contains(bad.stderr, `namespace "Bad_NS"`) {
		t.Errorf("a bad namespace: exit %d, stderr %q", bad.code, bad.stderr)
	}
	noExport := weftRun(t, ".", "install")
	if noExport.code == 0 || !strings.Contains(noExport.stderr, "--export") {
		t.Errorf("install without --export: exit %d, stderr %q", noExport.code, noExport.stderr)
	}
	help := weftRun(t, ".", "install", "--help")
	if help.code != 0 || !strings.Contains(help.stdout, "Examples:") || !strings.Contains(help.stdout, "weft install --export") {
		t.Errorf("weft install --help has no example:\n%s", help.stdout)
	}
}
