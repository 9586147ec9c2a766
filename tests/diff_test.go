package tests

import (
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of the tests package (testdata/diff/*/want.*)")

// diffFormats are weft diff's outputs and their golden files.
var diffFormats = []struct{ output, file string }{
	{"text", "want.txt"},
	{"markdown", "want.md"},
	{"json", "want.json"},
}

// TestDiffGolden runs `weft diff base head` on every case of
// testdata/diff (two mesh repositories side by side, README says what
// the change is) in the three formats and compares the output with the
// golden files beside them (go test ./tests -run TestDiffGolden -update
// rewrites them). Every change exits 1; the comment-only change exits 0.
func TestDiffGolden(t *testing.T) {
	cases, err := filepath.Glob(filepath.Join("testdata", "diff", "*"))
	if err != nil || len(cases) < 8 {
		t.Fatalf("diff cases: %v %v", cases, err)
	}
	for _, dir := range cases {
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			wantCode := 1
			if name == "unchanged" {
				wantCode = 0
			}
			for _, f := range diffFormats {
				r := weftRun(t, dir, "diff", "base", "head", "--output", f.output)
				if r.code != wantCode {
					t.Fatalf("--output %s: exit %d, want %d\nstderr: %s\nstdout: %s", f.output, r.code, wantCode, r.stderr, r.stdout)
				}
				if r.stderr != "" {
					t.Errorf("--output %s: stderr: %s", f.output, r.stderr)
				}
				golden(t, filepath.Join(dir, f.file), r.stdout)
				if f.output == "json" {
					var doc struct {
						Changed bool `json:"changed"`
					}
					if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.Changed != (wantCode == 1) {
						t.Errorf("json: changed %v (%v), want %v", doc.Changed, err, wantCode == 1)
					}
				}
			}
		})
	}
}

// golden compares got with the file, or rewrites it with -update.
func golden(t *testing.T, file, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test ./tests -run TestDiffGolden -update writes it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the output:\n--- want\n%s\n--- got\n%s", file, want, got)
	}
}

// TestDiffOneEnvironment: --env compares that environment only; one that
// only the head has is a new environment.
func TestDiffOneEnvironment(t *testing.T) {
	dir := filepath.Join("testdata", "diff", "env-only")
	r := weftRun(t, dir, "diff", "base", "head", "--env", "dev")
	if r.code != 0 || !strings.Contains(r.stdout, "dev: 6 classes unchanged") || strings.Contains(r.stdout, "prod") {
		t.Errorf("--env dev: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = weftRun(t, dir, "diff", "base", "head", "--env", "base")
	if r.code != 0 || r.stdout != "weft diff base → head\n\nbase: 6 classes unchanged\n" {
		t.Errorf("--env base: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = weftRun(t, dir, "diff", "base", "head", "--env", "prod")
	if r.code != 1 || !strings.Contains(r.stdout, `prod: reviews route "split": v1 90 → 60, v2 10 → 40`) || strings.Contains(r.stdout, "dev") {
		t.Errorf("--env prod: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// An environment only the head has.
	head := copyTree(t, filepath.Join(dir, "head"))
	if err := os.MkdirAll(filepath.Join(head, "environments", "qa"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(head, "environments", "qa", "qa.cue"), []byte("package shop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = weftRun(t, ".", "diff", filepath.Join(dir, "base"), head, "--env", "qa")
	if r.code != 1 || !strings.Contains(r.stdout, "qa: new environment (6 classes)") {
		t.Errorf("--env qa (new): exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestDiffErrors: a revision that fails the gate, or bad arguments, exit
// 2 with the reason (for the gate, weft vet's findings with file:line).
func TestDiffErrors(t *testing.T) {
	dir := filepath.Join("testdata", "diff", "split")
	bad := copyTree(t, filepath.Join(dir, "head"))
	src, err := os.ReadFile(filepath.Join(bad, "mesh.cue"))
	if err != nil {
		t.Fatal(err)
	}
	src = []byte(strings.Replace(string(src), `authz: allow: [{from: ["frontend", "cart"]}]`, `authz: allow: [{from: ["frontend"]}]`, 1))
	if err := os.WriteFile(filepath.Join(bad, "mesh.cue"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	r := weftRun(t, ".", "diff", filepath.Join(dir, "base"), bad)
	if r.code != 2 || !strings.Contains(r.stderr, "deny  reachability  cart calls orders, but orders' authz.allow does not admit cart (cart's calls entry for orders: ") ||
		!strings.Contains(r.stderr, "does not pass weft vet") {
		t.Errorf("head failing the gate: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{
		{"diff", filepath.Join(dir, "base")},
		{"diff", filepath.Join(dir, "base"), filepath.Join(dir, "nope")},
		{"diff", "--git", "main", "."},
		{"diff", filepath.Join(dir, "base"), filepath.Join(dir, "head"), "--output", "yaml"},
	} {
		if r := weftRun(t, ".", args...); r.code != 2 || !strings.HasPrefix(r.stderr, "weft diff: ") {
			t.Errorf("weft %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// TestDiffGit compares two commits of a real git repository: the mesh is
// a subdirectory, base..head are exported with git archive.
func TestDiffGit(t *testing.T) {
	repo := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t",
			"GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1", "HOME="+repo)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	dir := filepath.Join("testdata", "diff", "split")
	git("init", "-q", "-b", "main")
	copyInto(t, filepath.Join(dir, "base"), filepath.Join(repo, "mesh"))
	git("add", ".")
	git("commit", "-q", "-m", "base")
	git("checkout", "-q", "-b", "change")
	copyInto(t, filepath.Join(dir, "head"), filepath.Join(repo, "mesh"))
	git("commit", "-q", "-am", "split")
	sha := git("rev-parse", "--short=12", "HEAD")
	r := weftRun(t, filepath.Join(repo, "mesh"), "diff", "--git", "main..HEAD", ".")
	want, err := os.ReadFile(filepath.Join(dir, "want.txt"))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.SplitN(string(want), "\n", 2)[1]
	if r.code != 1 || !strings.HasPrefix(r.stdout, "weft diff main@") || !strings.Contains(r.stdout, "→ HEAD@"+sha+"\n") || !strings.HasSuffix(r.stdout, body) {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s\nwant the body of %s", r.code, r.stdout, r.stderr, filepath.Join(dir, "want.txt"))
	}
	if r := weftRun(t, filepath.Join(repo, "mesh"), "diff", "--git", "main..main", "."); r.code != 0 {
		t.Errorf("main..main: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := weftRun(t, filepath.Join(repo, "mesh"), "diff", "--git", "nope..HEAD", "."); r.code != 2 || !strings.Contains(r.stderr, `no commit "nope"`) {
		t.Errorf("unknown revision: exit %d, stderr %s", r.code, r.stderr)
	}
	// A commit that fails the gate: its positions are the work tree's.
	src, err := os.ReadFile(filepath.Join(repo, "mesh", "mesh.cue"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(src), `timeout: "3s"`, `timeout: "3s"
			authz: deny: [{from: ["cart"]}]`, 1)
	if err := os.WriteFile(filepath.Join(repo, "mesh", "mesh.cue"), []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	git("commit", "-q", "-am", "broken")
	r = weftRun(t, repo, "diff", "--git", "main..HEAD", "mesh")
	if r.code != 2 || !strings.Contains(r.stderr, "mesh/mesh.cue:") || strings.Contains(r.stderr, os.TempDir()) {
		t.Errorf("a head that fails the gate: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	copyInto(t, src, dst)
	return dst
}

// copyInto copies the files of src into dst (replacing what is there).
func copyInto(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
