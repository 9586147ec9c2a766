// Package gitrev exports revisions of a local git repository into plain
// directories with the real git CLI (git archive), for commands that
// compare revisions (weft diff --git). It runs no network operation.
package gitrev

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Range splits "A..B" into its two revisions. "A.." is A..HEAD, as in
// git; "A...B" (git's merge-base form) is refused: name the base.
func Range(spec string) (base, head string, err error) {
	if strings.Contains(spec, "...") {
		return "", "", fmt.Errorf("revision range %q: use BASE..HEAD (git's A...B merge-base form is not supported; name the base commit)", spec)
	}
	base, head, ok := strings.Cut(spec, "..")
	if !ok || base == "" {
		return "", "", fmt.Errorf("revision range %q: want BASE..HEAD, e.g. main..HEAD", spec)
	}
	if head == "" {
		head = "HEAD"
	}
	return base, head, nil
}

// Repo is a git work tree and a directory inside it.
type Repo struct {
	Top string // the work tree's top level
	Sub string // the directory below Top ("." for Top itself), slash-separated
}

// Open finds the repository dir belongs to.
func Open(ctx context.Context, dir string) (Repo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Repo{}, err
	}
	top, err := git(ctx, abs, "rev-parse", "--show-toplevel")
	if err != nil {
		return Repo{}, fmt.Errorf("%s is not in a git repository: %w", dir, err)
	}
	realTop, err := filepath.EvalSymlinks(top)
	if err != nil {
		return Repo{}, err
	}
	realDir, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return Repo{}, err
	}
	sub, err := filepath.Rel(realTop, realDir)
	if err != nil {
		return Repo{}, err
	}
	return Repo{Top: realTop, Sub: filepath.ToSlash(sub)}, nil
}

// Resolve is the full commit id of rev.
func (r Repo) Resolve(ctx context.Context, rev string) (string, error) {
	sha, err := git(ctx, r.Top, "rev-parse", "--verify", "--quiet", "--end-of-options", rev+"^{commit}")
	if err != nil {
		return "", fmt.Errorf("no commit %q in %s", rev, r.Top)
	}
	return sha, nil
}

// Export writes the tree of commit sha into dst (an existing, empty
// directory) with `git archive | tar -x` and returns the directory of
// r.Sub inside it.
func (r Repo) Export(ctx context.Context, sha, dst string) (string, error) {
	archive := exec.CommandContext(ctx, "git", "-C", r.Top, "archive", "--format=tar", sha)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dst)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	untar.Stdin = pipe
	var e1, e2 bytes.Buffer
	archive.Stderr, untar.Stderr = &e1, &e2
	if err := untar.Start(); err != nil {
		return "", err
	}
	aerr := archive.Run()
	uerr := untar.Wait()
	if aerr != nil || uerr != nil {
		return "", fmt.Errorf("export %s: git archive: %v %s; tar: %v %s", Short(sha), aerr, strings.TrimSpace(e1.String()), uerr, strings.TrimSpace(e2.String()))
	}
	out := filepath.Join(dst, filepath.FromSlash(r.Sub))
	if st, err := os.Stat(out); err != nil || !st.IsDir() {
		return "", fmt.Errorf("commit %s has no directory %s", Short(sha), r.Sub)
	}
	return out, nil
}

// Short is the first 12 hex digits of a commit id.
func Short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}
