package source

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/weft-dev/weft/reconciler/pipeline"
)

// Options say what to follow.
type Options struct {
	// Dir is the mesh repository, or an environment directory in it.
	Dir string
	// Branch is the branch followed when Dir is in a git work tree
	// (default "main"); BranchSet makes Dir followed as git even when it
	// is a subdirectory of the work tree.
	Branch    string
	BranchSet bool
	// Poll is the interval of the poll (default 1s).
	Poll time.Duration
	// ExportDir is where a git source exports commits (a fresh
	// directory per commit, removed by Revision.Done).
	ExportDir string
	// MaxFileBytes is the largest file whose content the directory
	// watcher hashes (larger ones count by size and time; the loader
	// refuses them anyway). 0: schema.DefaultMaxFileBytes.
	MaxFileBytes int64
}

// New picks the source for o.Dir: a GitBranch when it is the top level
// of a git work tree, or when the branch is given explicitly and it is
// inside one; otherwise a Dir watcher. A Dir that is not a directory is
// an error.
func New(o Options) (pipeline.Source, error) {
	if o.Branch == "" {
		o.Branch = "main"
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", o.Dir)
	}
	if top, err := gitOutput(abs, "rev-parse", "--show-toplevel"); err == nil {
		top, _ = filepath.EvalSymlinks(top)
		real, _ := filepath.EvalSymlinks(abs)
		if real == top || o.BranchSet {
			sub, _ := filepath.Rel(top, real)
			return &GitBranch{Repo: top, Sub: sub, Branch: o.Branch, Poll: o.Poll, ExportDir: o.ExportDir}, nil
		}
	}
	return &Dir{Path: abs, Poll: o.Poll, MaxFileBytes: o.MaxFileBytes}, nil
}

// gitOutput runs git in dir and returns its trimmed output; the error
// carries git's stderr.
func gitOutput(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// wait waits d or until ctx ends.
func wait(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}
