package tooltest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var weftBuild struct {
	once     sync.Once
	dir, bin string
	err      error
}

// Weft builds cmd/weft once per test binary (into a temporary folder that
// RemoveWeft deletes) and returns its path: for tests that run the
// command as a user or a pod does.
func Weft(t testing.TB) string {
	t.Helper()
	w := &weftBuild
	w.once.Do(func() {
		if w.dir, w.err = os.MkdirTemp("", "weft-bin-"); w.err != nil {
			return
		}
		w.bin = filepath.Join(w.dir, "weft")
		cmd := exec.Command("go", "build", "-o", w.bin, "./cmd/weft")
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			w.err = fmt.Errorf("%w\n%s", err, out)
		}
	})
	if w.err != nil {
		t.Fatalf("go build ./cmd/weft: %v", w.err)
	}
	return w.bin
}

// RemoveWeft deletes what Weft built; call it from TestMain after m.Run.
func RemoveWeft() {
	if weftBuild.dir != "" {
		os.RemoveAll(weftBuild.dir)
	}
}
