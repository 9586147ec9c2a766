package tests

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/weft-dev/weft/internal/tooltest"
)

// TestMain removes the weft binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	tooltest.RemoveWeft()
	os.Exit(code)
}

// weft is the CLI, built once per test binary: these tests run the
// command a user runs.
func weft(t testing.TB) string { return tooltest.Weft(t) }

type result struct {
	stdout, stderr string
	code           int
}

func weftRun(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(weft(t), args...)
	cmd.Dir = dir
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

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestHelpHasExamples(t *testing.T) {
	for _, c := range []string{"", "init", "vet", "build", "diff", "up", "status", "demo-app"} {
		r := weftRun(t, ".", strings.Fields(c+" --help")...)
		if r.code != 0 || !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "weft "+c) {
			t.Errorf("weft %s --help: code %d, no example:\n%s", c, r.code, r.stdout)
		}
	}
}

func TestInitThenVetAndBuild(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mesh")
	if r := weftRun(t, ".", "init", dir); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	r := weftRun(t, dir, "vet", ".")
	if r.code != 0 || r.stdout != "ok\tbase\nok\tdev\nok\tprod\n" {
		t.Fatalf("vet: %+v", r)
	}
	if r := weftRun(t, dir, "build", ".", "--env", "dev", "-o", "out"); r.code != 0 || !strings.Contains(r.stdout, "api-v2") {
		t.Fatalf("build: %+v", r)
	}
}

func TestVetReportsEveryErrorWithPositionAndExitsOne(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mesh")
	weftRun(t, ".", "init", dir)
	bad := "package mesh\nmesh: services: api: calls: [\"ghost\"]\nmesh: services: api: routes: split: to: {v1: 70, v2: 20}\n"
	if err := os.MkdirAll(filepath.Join(dir, "environments", "qa"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "environments", "qa", "bad.cue"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	r := weftRun(t, dir, "vet", ".", "--env", "qa")
	if r.code != 1 {
		t.Fatalf("exit code %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"qa: 2 problem(s)",
		"environments/qa/bad.cue:2:30: mesh.services.api.calls[0]: call to unknown service \"ghost\"",
		"environments/qa/bad.cue:3:",
		"mesh.services.api.routes.split.to: split weights sum to 90, want 100",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	// A build of a bad revision writes nothing.
	out := filepath.Join(t.TempDir(), "out")
	if r := weftRun(t, dir, "build", ".", "--env", "qa", "-o", out); r.code != 1 {
		t.Fatalf("build of a bad revision: exit %d", r.code)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("build of a bad revision created %s", out)
	}
}

// TestVetRunsTheAcceptanceGate: values Envoy would reject fail weft vet and
// weft build like schema errors, each with file:line:column, field, what
// is wrong and the fix; build writes nothing.
func TestVetRunsTheAcceptanceGate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mesh")
	weftRun(t, ".", "init", dir)
	bad := "package mesh\n" +
		"mesh: services: api: routes: adv: {match: path: regex: \"^/v4/advisory/[0-9a-z-]{36}/clone$\"}\n" +
		"mesh: services: api: headers: request: set: Host: \"api.internal\"\n"
	if err := os.MkdirAll(filepath.Join(dir, "environments", "qa"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "environments", "qa", "bad.cue"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	wants := []string{
		"qa: 2 problem(s)",
		"environments/qa/bad.cue:2:49: mesh.services.api.routes.adv.match.path.regex: regex \"^/v4/advisory/[0-9a-z-]{36}/clone$\" compiles to an RE2 program of 118 instructions; Envoy rejects more than 100",
		"fix: simplify it",
		"environments/qa/bad.cue:3:45: mesh.services.api.headers.request.set.Host: Envoy does not let a route change the Host header",
		"rewrite: {host:",
	}
	r := weftRun(t, dir, "vet", ".", "--env", "qa")
	if r.code != 1 {
		t.Fatalf("vet: exit code %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	for _, want := range wants {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("vet: stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	r = weftRun(t, dir, "build", ".", "--env", "qa", "-o", out)
	if r.code != 1 {
		t.Fatalf("build: exit code %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	for _, want := range wants[1:] {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("build: stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("build of a rejected revision created %s", out)
	}
}

// TestBuildIsDeterministic builds every example environment twice with the
// CLI and compares every byte.
func TestBuildIsDeterministic(t *testing.T) {
	for _, env := range []string{"", "dev", "staging", "prod"} {
		a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
		for _, out := range []string{a, b} {
			if r := weftRun(t, examplesDir(), "build", ".", "--env", env, "--revision", "r1", "-o", out); r.code != 0 {
				t.Fatalf("build %s: %+v", env, r)
			}
		}
		ta, tb := readTree(t, a), readTree(t, b)
		if len(ta) < 9*5+1 {
			t.Fatalf("env %q: only %d files", env, len(ta))
		}
		for name, body := range ta {
			if tb[name] != body {
				t.Errorf("env %q: %s differs between two builds", env, name)
			}
		}
		if len(ta) != len(tb) {
			t.Errorf("env %q: %d vs %d files", env, len(ta), len(tb))
		}
	}
}

// TestEnvoyAcceptsEveryClass runs the real Envoy's validate mode on the
// bootstrap of every proxy class of every example environment.
func TestEnvoyAcceptsEveryClass(t *testing.T) {
	envoy := tooltest.Envoy(t)
	for _, env := range []string{"", "dev", "staging", "prod"} {
		out := filepath.Join(t.TempDir(), "out")
		if r := weftRun(t, examplesDir(), "build", ".", "--env", env, "-o", out, "--static-bootstrap"); r.code != 0 {
			t.Fatalf("build %q: %+v", env, r)
		}
		boots, _ := filepath.Glob(filepath.Join(out, "*", "bootstrap.yaml"))
		if len(boots) < 9 {
			t.Fatalf("env %q: %d bootstraps, want one per class (9)", env, len(boots))
		}
		for _, b := range boots {
			name := env + "/" + filepath.Base(filepath.Dir(b))
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				cmd := exec.Command(envoy, "--mode", "validate", "-c", b, "--log-level", "error")
				if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "OK") {
					t.Errorf("envoy rejected %s: %v\n%s", name, err, out)
				}
			})
		}
	}
}

// TestBuildRunsThePolicyGate: weft build refuses what weft vet denies, so
// that nothing a policy forbids is ever compiled.
func TestBuildRunsThePolicyGate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mesh")
	weftRun(t, ".", "init", dir)
	fault := "package mesh\nmesh: services: api: routes: split: fault: abort: {percent: 10}\n"
	if err := os.WriteFile(filepath.Join(dir, "environments", "prod", "fault.cue"), []byte(fault), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	r := weftRun(t, dir, "build", ".", "--env", "prod", "-o", out)
	if r.code != 1 || !strings.Contains(r.stderr, "no_fault_injection") || !strings.Contains(r.stderr, "prod/fault.cue") {
		t.Fatalf("build of a denied revision: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("build of a denied revision created %s", out)
	}
	// dev allows fault injection: the same change builds there.
	if err := os.Rename(filepath.Join(dir, "environments", "prod", "fault.cue"), filepath.Join(dir, "environments", "dev", "fault.cue")); err != nil {
		t.Fatal(err)
	}
	if r := weftRun(t, dir, "build", ".", "--env", "dev", "-o", out); r.code != 0 {
		t.Fatalf("build of dev with a fault: %+v", r)
	}
}

// TestBuildOnlyWhatIsAsked: --service writes the classes of the services
// named, nothing else (the summary still lists every class; the mesh-wide
// network policies and monitoring files are written as always); the versions
// of a service share their files.
func TestBuildOnlyWhatIsAsked(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r := weftRun(t, examplesDir(), "build", ".", "--env", "prod", "-o", out, "--service", "reviews")
	if r.code != 0 {
		t.Fatalf("build: %+v", r)
	}
	files := readTree(t, out)
	var dirs []string
	for name := range files {
		if d := filepath.Dir(name); d != "." && !strings.HasPrefix(d, "monitoring") && !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs)
	if strings.Join(dirs, " ") != "reviews-v1 reviews-v2" || !strings.Contains(files["summary.txt"], "frontend-v1") {
		t.Errorf("classes written: %v; summary:\n%s", dirs, files["summary.txt"])
	}
	if _, ok := files[filepath.Join("reviews-v1", "bootstrap.yaml")]; ok {
		t.Error("a static bootstrap without --static-bootstrap")
	}
	a, err1 := os.Stat(filepath.Join(out, "reviews-v1", "routes.yaml"))
	b, err2 := os.Stat(filepath.Join(out, "reviews-v2", "routes.yaml"))
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		t.Errorf("the versions of reviews do not share routes.yaml (%v %v)", err1, err2)
	}
	if r := weftRun(t, examplesDir(), "build", ".", "--env", "prod", "-o", out, "--service", "ghost"); r.code == 0 || !strings.Contains(r.stderr, "--service ghost: no such service") {
		t.Errorf("unknown service: %+v", r)
	}
}
