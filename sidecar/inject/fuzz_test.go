package inject_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/weft-dev/weft/sidecar/inject"
)

// FuzzStream: whatever bytes `weft inject -f` reads, it does not panic,
// and what it prints injects to itself (twice is once).
func FuzzStream(f *testing.F) {
	inputs, _ := filepath.Glob("testdata/*.yaml")
	for _, in := range inputs {
		b, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("kind: Pod\nmetadata: {annotations: {weft.dev/exclude-inbound-ports: '1,2,3'}, labels: {app: x}}\nspec: {containers: [{name: a}]}\n"))
	bundle, err := os.ReadFile("testdata/trust-bundle.pem")
	if err != nil {
		f.Fatal(err)
	}
	opts := inject.Options{TrustBundle: bundle, Version: "v0.1.0"}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _, err := inject.Stream(in, "fuzz.yaml", opts)
		if err != nil {
			return
		}
		again, _, err := inject.Stream(out, "again.yaml", opts)
		if err != nil {
			t.Fatalf("the output does not inject again: %v\ninput:\n%s\noutput:\n%s", err, in, out)
		}
		if !bytes.Equal(out, again) {
			t.Fatalf("twice differs from once\ninput:\n%s\nonce:\n%s\ntwice:\n%s", in, out, again)
		}
	})
}

// BenchmarkPod: injecting one pod (the webhook's work per admission, the
// JSON patch aside).
func BenchmarkPod(b *testing.B) {
	bundle, err := os.ReadFile("testdata/trust-bundle.pem")
	if err != nil {
		b.Fatal(err)
	}
	opts := inject.Options{TrustBundle: bundle}
	base := testPod()
	b.ReportAllocs()
	for b.Loop() {
		p := base.DeepCopy()
		if _, err := inject.Pod(p, "shop", opts); err != nil {
			b.Fatal(err)
		}
	}
}
