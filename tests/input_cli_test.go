package tests

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestVetBoundedInput: weft vet refuses, with the file's name and the
// rule, a .cue link to /dev/zero and a FIFO (which used to exhaust its
// memory or hang it), a file over --max-file-size, and a vet over
// --revision-timeout; the flags raise the limits.
func TestVetBoundedInput(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mesh")
	if r := weftRun(t, ".", "init", dir); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	dev := filepath.Join(dir, "environments", "dev")
	if err := os.Symlink("/dev/zero", filepath.Join(dev, "zero.cue")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dev, "pipe.cue"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := weftRun(t, dir, "vet", ".", "--env", "dev")
	for _, want := range []string{
		"environments/dev/pipe.cue: is a named pipe (FIFO), not a regular file",
		"environments/dev/zero.cue: is a symbolic link to /dev/zero, outside the CUE module",
	} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Errorf("vet with a FIFO and a link to /dev/zero: exit %d, stderr lacks %q:\n%s", r.code, want, r.stderr)
		}
	}
	for _, f := range []string{"zero.cue", "pipe.cue"} {
		if err := os.Remove(filepath.Join(dev, f)); err != nil {
			t.Fatal(err)
		}
	}

	r = weftRun(t, dir, "vet", ".", "--env", "dev", "--max-file-size", "1KiB")
	if r.code != 1 || !strings.Contains(r.stderr, "mesh.cue: is 1.") || !strings.Contains(r.stderr, "over the limit of 1 KiB per file") || !strings.Contains(r.stderr, "--max-file-size") {
		t.Errorf("vet --max-file-size 1KiB: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if r := weftRun(t, dir, "vet", ".", "--env", "dev", "--max-file-size", "2KiB", "--max-source-size", "1MiB"); r.code != 0 {
		t.Errorf("vet with raised limits: %+v", r)
	}
	r = weftRun(t, dir, "vet", ".", "--revision-timeout", "1ns")
	if r.code != 1 || !strings.Contains(r.stderr, "did not finish within the revision time limit of 1ns (--revision-timeout)") {
		t.Errorf("vet --revision-timeout 1ns: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if r := weftRun(t, dir, "vet", ".", "--max-file-size", "lots"); r.code == 0 || !strings.Contains(r.stderr, `size "lots"`) {
		t.Errorf("vet --max-file-size lots: %+v", r)
	}
}

// TestInitWritesGitIgnore: the repository weft init writes ignores weft's
// state and build output.
func TestInitWritesGitIgnore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mesh")
	if r := weftRun(t, ".", "init", dir); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	b, err := os.ReadFile(filepath.Join(dir, ".gitignore"))
	if err != nil || !strings.Contains(string(b), "/.weft/") || !strings.Contains(string(b), "/out/") {
		t.Errorf(".gitignore: %q, %v", b, err)
	}
}
