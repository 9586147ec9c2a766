package kubetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/weft-dev/weft/internal/tooltest"
)

// controlPlaneBinaries are what envtest runs (kubectl only for its helpers).
var controlPlaneBinaries = []string{"etcd", "kube-apiserver", "kubectl"}

// Assets returns the folder holding etcd, kube-apiserver and kubectl:
// $KUBEBUILDER_ASSETS if set, else tooltest.BinDir() (.tools/bin, where
// `make tools` puts them). If a binary is missing the test is skipped with
// the command that builds them, or failed when CI=true.
func Assets(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = tooltest.BinDir()
	}
	RequireBinaries(t, dir, controlPlaneBinaries...)
	return dir
}

// RequireBinaries checks that every named binary is an executable file in
// dir. If one is not, it skips the test (telling how to build it) or,
// under CI=true, fails it: in CI `make tools` has run, so a missing binary
// is a broken tools build.
func RequireBinaries(t testing.TB, dir string, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if st, err := os.Stat(filepath.Join(dir, n)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "kubetest: " + strings.Join(missing, ", ") + " not found in " + dir +
		": run `make tools` (builds Kubernetes, etcd and Flux from tools/; about 10 minutes the first time)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " — CI=true, so this fails instead of skipping")
	}
	t.Skip(msg)
}
