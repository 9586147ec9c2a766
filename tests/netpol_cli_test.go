package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestBuildWritesNetworkPolicies: `weft build` writes the mesh's
// NetworkPolicies next to the proxy configuration, the same bytes as the
// compiler's golden file of the example in prod, and `--control-plane-namespace`
// moves the control plane's peer.
func TestBuildWritesNetworkPolicies(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if r := weftRun(t, examplesDir(), "build", ".", "--env", "prod", "-o", out); r.code != 0 {
		t.Fatalf("build: %+v", r)
	}
	got, err := os.ReadFile(filepath.Join(out, "networkpolicies.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(examplesDir(), "..", "compiler", "testdata", "netpol", "shop-prod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("networkpolicies.yaml differs from compiler/testdata/netpol/shop-prod.yaml (-want +got):\n%s", d)
	}
	if n := strings.Count(string(got), "kind: NetworkPolicy"); n != 8 {
		t.Errorf("%d NetworkPolicies, want one per service (8)", n)
	}

	out2 := filepath.Join(t.TempDir(), "out")
	if r := weftRun(t, examplesDir(), "build", ".", "--env", "prod", "-o", out2, "--control-plane-namespace", "mesh-system"); r.code != 0 {
		t.Fatalf("build: %+v", r)
	}
	b, _ := os.ReadFile(filepath.Join(out2, "networkpolicies.yaml"))
	if !strings.Contains(string(b), "kubernetes.io/metadata.name: mesh-system") || strings.Contains(string(b), "weft-system") {
		t.Errorf("--control-plane-namespace mesh-system not applied:\n%s", b)
	}
}
