package source_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/pipeline/source"
)

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func write(t *testing.T, p, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func nextWithin(t *testing.T, s pipeline.Source) (pipeline.Revision, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return s.Next(ctx)
}

// TestGitBranch: each new commit of the branch is exported into its own
// directory (removed by Done); a branch that does not resolve is a
// retryable fetch error, a commit that cannot be exported (a missing
// object) a retryable export error naming the commit, and the next Next
// tries again.
func TestGitBranch(t *testing.T) {
	repo := t.TempDir()
	git(t, repo, "init", "-q", "-b", "main")
	write(t, filepath.Join(repo, "mesh.cue"), "package mesh\n// one\n")
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "one")
	exports := t.TempDir()
	src, err := source.New(source.Options{Dir: repo, Poll: 10 * time.Millisecond, ExportDir: exports})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(src.String(), "git repository ") {
		t.Fatalf("source %s, want the git follower", src)
	}
	rev, err := nextWithin(t, src)
	if err != nil {
		t.Fatal(err)
	}
	if want := "main@sha1:" + git(t, repo, "rev-parse", "--short=12", "HEAD"); rev.Name != want {
		t.Errorf("revision %q, want %q", rev.Name, want)
	}
	if b, err := os.ReadFile(filepath.Join(rev.Dir, "mesh.cue")); err != nil || !strings.Contains(string(b), "one") {
		t.Errorf("export holds %q, %v", b, err)
	}
	rev.Done()
	if _, err := os.Stat(rev.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("export %s still there after Done", rev.Dir)
	}

	// A commit whose blob is missing from the object store.
	write(t, filepath.Join(repo, "mesh.cue"), "package mesh\n// two\n")
	git(t, repo, "commit", "-q", "-am", "two")
	blob := git(t, repo, "rev-parse", "HEAD:mesh.cue")
	obj := filepath.Join(repo, ".git", "objects", blob[:2], blob[2:])
	if err := os.Rename(obj, obj+".away"); err != nil {
		t.Fatal(err)
	}
	_, err = nextWithin(t, src)
	var re *pipeline.RetryableError
	two := "main@sha1:" + git(t, repo, "rev-parse", "--short=12", "HEAD")
	if !errors.As(err, &re) || re.Step != status.StepExport || re.Revision != two || !strings.Contains(err.Error(), "git archive") {
		t.Fatalf("Next = %v, want a retryable export error of %s from git archive", err, two)
	}
	t.Logf("export error: %v", err)
	if entries, _ := os.ReadDir(exports); len(entries) != 0 {
		t.Errorf("a failed export left %d entries in %s", len(entries), exports)
	}
	if err := os.Rename(obj+".away", obj); err != nil {
		t.Fatal(err)
	}
	if rev, err = nextWithin(t, src); err != nil || rev.Name != two {
		t.Fatalf("Next after the object is back = %v, %v; want %s", rev.Name, err, two)
	}
	rev.Done()

	// A branch that does not exist.
	bad := &source.GitBranch{Repo: repo, Branch: "nope", Poll: 10 * time.Millisecond, ExportDir: exports}
	_, err = nextWithin(t, bad)
	if !errors.As(err, &re) || re.Step != status.StepFetch || re.Revision != "nope" || !strings.Contains(err.Error(), "--branch") {
		t.Errorf("Next on a missing branch = %v, want a retryable fetch error", err)
	}
}

// TestDirWatcher: a FIFO and a link to /dev/zero in the watched directory
// neither block nor exhaust the watcher; an edit is a new revision; a
// directory that disappears is a retryable fetch error, and once it is
// back its revision is returned again.
func TestDirWatcher(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mesh")
	write(t, filepath.Join(dir, "cue.mod", "module.cue"), "module: \"a.b/c\"\n")
	write(t, filepath.Join(dir, "mesh.cue"), "package mesh\n")
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.cue"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.cue")); err != nil {
		t.Fatal(err)
	}
	src, err := source.New(source.Options{Dir: dir, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first, err := nextWithin(t, src)
	if err != nil || !strings.HasPrefix(first.Name, "dir@") || first.Dir != dir {
		t.Fatalf("first = %+v, %v", first, err)
	}
	write(t, filepath.Join(dir, "mesh.cue"), "package mesh\n// edited\n")
	second, err := nextWithin(t, src)
	if err != nil || second.Name == first.Name {
		t.Fatalf("after an edit: %+v, %v; want a new revision", second, err)
	}
	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	_, err = nextWithin(t, src)
	var re *pipeline.RetryableError
	if !errors.As(err, &re) || re.Step != status.StepFetch || !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("Next on a missing directory = %v, want a retryable fetch error", err)
	}
	if err := os.Rename(dir+".away", dir); err != nil {
		t.Fatal(err)
	}
	again, err := nextWithin(t, src)
	if err != nil || again.Name != second.Name {
		t.Errorf("after the directory is back: %+v, %v; want %s again", again, err, second.Name)
	}
}
