package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// injectTestdata is sidecar/inject's testdata: the inputs and goldens of
// the injection itself.
var injectTestdata = filepath.Join("..", "sidecar", "inject", "testdata")

func weftStdin(t *testing.T, stdin []byte, args ...string) result {
	t.Helper()
	cmd := exec.Command(weft(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	r := result{stdout: o.String(), stderr: e.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("weft %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// TestInjectCLI: `weft inject -f FILE` prints what sidecar/inject's golden
// files hold (the manifests on stdout, one line per object on stderr),
// reads stdin with -f -, gives the same bytes when run on its own output,
// and fails with the fix when the trust bundle is missing or with
// file:line when a manifest has a typo.
func TestInjectCLI(t *testing.T) {
	bundle := filepath.Join(injectTestdata, "trust-bundle.pem")
	flags := []string{"--trust-bundle", bundle, "--version", "v0.1.0", "--trust-domain", "shop.example"}
	for _, name := range []string{"deployment", "pod", "pod-optout", "pod-hostnetwork"} {
		t.Run(name, func(t *testing.T) {
			in := filepath.Join(injectTestdata, name+".yaml")
			r := weftRun(t, ".", append([]string{"inject", "-f", in}, flags...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			golden, err := os.ReadFile(filepath.Join(injectTestdata, name+".golden"))
			if err != nil {
				t.Fatal(err)
			}
			report, manifests, _ := strings.Cut(string(golden), "# ---- output\n")
			if d := cmp.Diff(manifests, r.stdout); d != "" {
				t.Errorf("stdout differs from %s.golden (-golden +stdout):\n%s", name, d)
			}
			// The golden's report names the file without its folder.
			for _, line := range strings.Split(strings.TrimSpace(report), "\n") {
				line = strings.TrimPrefix(line, "# ")
				if strings.HasPrefix(line, "  warning: ") {
					line = "warning: " + strings.TrimPrefix(line, "  warning: ")
				}
				if !strings.Contains(r.stderr, strings.TrimPrefix(line, name+".yaml:")) {
					t.Errorf("stderr lacks %q:\n%s", line, r.stderr)
				}
			}
			again := weftStdin(t, []byte(r.stdout), append([]string{"inject", "-f", "-"}, flags...)...)
			if again.code != 0 || again.stdout != r.stdout {
				t.Errorf("weft inject on its own output (exit %d) changed it:\n%s", again.code, cmp.Diff(r.stdout, again.stdout))
			}
			if !strings.Contains(again.stderr, "weft inject: <stdin>:") {
				t.Errorf("stdin is not named <stdin>: %s", again.stderr)
			}
		})
	}

	t.Run("no trust bundle", func(t *testing.T) {
		r := weftRun(t, ".", "inject", "-f", filepath.Join(injectTestdata, "pod.yaml"))
		if r.code != 1 || !strings.Contains(r.stderr, "--trust-bundle FILE is required: the mesh CA's roots (PEM), e.g. kubectl -n weft-system get secret weft-ca-root") {
			t.Errorf("exit %d: %s", r.code, r.stderr)
		}
	})
	t.Run("typo", func(t *testing.T) {
		src := "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop, labels: {app: web}}\nspec:\n  containers:\n  - {name: web, image: x, imagePullPolicyy: Never}\n"
		r := weftStdin(t, []byte(src), append([]string{"inject", "-f", "-"}, flags...)...)
		if r.code != 1 || !strings.Contains(r.stderr, `<stdin>:1: Pod web: unknown field "spec.containers[0].imagePullPolicyy"`) || r.stdout != "" {
			t.Errorf("exit %d, stdout %q, stderr %s", r.code, r.stdout, r.stderr)
		}
	})
}
