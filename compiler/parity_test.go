package compiler

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/txtar"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/schema"
)

// parityCase is one file of testdata/parity: files added to the base mesh
// (testdata/parity/base), the verdicts expected from weft and from Envoy,
// texts weft's error must contain, and, when weft refuses what Envoy
// accepts, why.
type parityCase struct {
	name     string
	files    []txtar.File
	want     string // weft: accept | reject
	envoy    string // accept | reject | n/a (weft refuses it while loading: nothing to give Envoy)
	errors   []string
	stricter string
}

func readParityCase(t *testing.T, file string) parityCase {
	t.Helper()
	ar, err := txtar.ParseFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c := parityCase{name: strings.TrimSuffix(filepath.Base(file), ".txtar"), files: ar.Files}
	for _, line := range strings.Split(string(ar.Comment), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		switch {
		case !ok:
		case k == "want":
			c.want = v
		case k == "envoy":
			c.envoy = v
		case k == "error":
			c.errors = append(c.errors, v)
		case k == "stricter":
			c.stricter = v
		}
	}
	if c.want != "accept" && c.want != "reject" || (c.envoy != "accept" && c.envoy != "reject" && c.envoy != "n/a") {
		t.Fatalf("%s: want %q envoy %q: each must be given (accept, reject; envoy also n/a)", file, c.want, c.envoy)
	}
	return c
}

// TestParity proves the acceptance gate against the real Envoy, case by
// case (testdata/parity/*.txtar): the mesh is compiled once with the gate
// (weft's verdict) and once without it, and each class of the ungated
// result is given to `envoy --mode validate` as a static bootstrap
// (Envoy's verdict). Every input Envoy rejects must be rejected by weft; an
// input weft rejects and Envoy accepts must say why (stricter:). Both
// verdicts must also be the ones the case states, so the corpus documents
// what each limit is.
func TestParity(t *testing.T) {
	envoy := tooltest.Envoy(t)
	files, _ := filepath.Glob(filepath.Join("testdata", "parity", "*.txtar"))
	if len(files) < 30 {
		t.Fatalf("only %d parity cases", len(files))
	}
	for _, file := range files {
		c := readParityCase(t, file)
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := parityRepo(t, c.files)
			weft, weftMsg := weftVerdict(dir)
			env, envMsg := envoyVerdict(t, envoy, dir)
			verdicts := fmt.Sprintf("weft: %s\n\t%s\nenvoy: %s\n\t%s", weft, weftMsg, env, envMsg)
			t.Log(verdicts)
			switch {
			case env == "reject" && weft == "accept":
				t.Errorf("PARITY BROKEN: Envoy rejects what weft accepts\n%s", verdicts)
			case weft == "reject" && env == "accept" && c.stricter == "":
				t.Errorf("weft rejects what Envoy accepts, and the case gives no stricter: reason\n%s", verdicts)
			case weft == "reject" && env == "n/a" && !strings.Contains(weftMsg, "load:"):
				t.Errorf("envoy: n/a is for inputs the loader refuses\n%s", verdicts)
			}
			if weft != c.want || env != c.envoy {
				t.Errorf("verdicts differ from the case (want weft %s, envoy %s)\n%s", c.want, c.envoy, verdicts)
			}
			for _, want := range c.errors {
				if !strings.Contains(weftMsg, want) {
					t.Errorf("weft's error does not contain %q\n%s", want, verdicts)
				}
			}
		})
	}
}

// parityRepo is the base mesh plus the case's files.
func parityRepo(t *testing.T, files []txtar.File) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "parity", "base"))); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.Name), f.Data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// weftVerdict loads and compiles with the gate; the message is the error,
// prefixed with the step that refused it.
func weftVerdict(dir string) (string, string) {
	m, err := schema.Load(dir, schema.Options{Revision: "parity"})
	if err != nil {
		return "reject", "load: " + err.Error()
	}
	if _, err := Compile(m, nil, Options{}); err != nil {
		return "reject", "compile: " + err.Error()
	}
	return "accept", ""
}

// envoyVerdict compiles without the gate and validates every class with
// Envoy: reject if any class is rejected. n/a when the loader refuses the
// mesh (there is no configuration to give Envoy).
func envoyVerdict(t *testing.T, envoy, dir string) (string, string) {
	t.Helper()
	m, err := schema.Load(dir, schema.Options{Revision: "parity"})
	if err != nil {
		return "n/a", "the loader refuses it"
	}
	res, err := compile(m, nil, Options{}, false)
	if err != nil {
		t.Fatalf("compile without the gate: %v", err)
	}
	for _, c := range res.Classes {
		if ok, out := envoyAccepts(t, envoy, c); !ok {
			return "reject", c.Name + ": " + out
		}
	}
	return "accept", ""
}

// envoyAccepts runs `envoy --mode validate` on the class's static
// bootstrap; out is the last line of Envoy's output.
func envoyAccepts(t *testing.T, envoy string, c *Class) (bool, string) {
	t.Helper()
	b, err := Bootstrap(c, BootstrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	y, err := MarshalYAMLObject(b)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(file, y, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, envoy, "--mode", "validate", "-c", file,
		"--log-level", "critical", "--disable-hot-restart").CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("envoy: %v\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return false, lines[len(lines)-1]
	}
	return true, ""
}
