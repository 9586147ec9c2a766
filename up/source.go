package up

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// A revision is one version of the mesh repository to run: its name and
// the directory holding it (the CUE instance directory).
type revision struct {
	Name string
	Dir  string
	// cleanup removes an exported copy (nil for a watched directory).
	cleanup func()
}

// source yields revisions: every new commit of a followed branch, or
// every change of a watched directory.
type source interface {
	// Next blocks until a revision differs from the last one returned
	// (the first call returns the current one), or ctx ends.
	Next(ctx context.Context) (revision, error)
	Describe() string
}

// newSource picks the git follower when dir is the top level of a git
// work tree, or when branch is given explicitly and dir is inside one;
// otherwise the directory watcher.
func newSource(dir, branch string, branchSet bool, poll time.Duration, tmp string) (source, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("up: %s is not a directory", dir)
	}
	top, err := gitOutput(abs, "rev-parse", "--show-toplevel")
	if err == nil {
		top, _ = filepath.EvalSymlinks(top)
		real, _ := filepath.EvalSymlinks(abs)
		if real == top || branchSet {
			sub, _ := filepath.Rel(top, real)
			return &gitSource{repo: top, sub: sub, branch: branch, poll: poll, tmp: tmp}, nil
		}
	}
	return &dirSource{dir: abs, poll: poll}, nil
}

func gitOutput(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

// gitSource follows a branch of a local git repository: it polls
// `git rev-parse <branch>` and exports each new commit with
// `git archive | tar -x` into a fresh directory.
type gitSource struct {
	repo, sub, branch string
	poll              time.Duration
	tmp               string
	last              string
}

func (g *gitSource) Describe() string {
	return fmt.Sprintf("git repository %s, branch %s (polled every %s)", g.repo, g.branch, g.poll)
}

func (g *gitSource) Next(ctx context.Context) (revision, error) {
	for {
		sha, err := gitOutput(g.repo, "rev-parse", "--verify", "--quiet", g.branch+"^{commit}")
		if err == nil && sha != g.last {
			dir, err := os.MkdirTemp(g.tmp, "rev-")
			if err != nil {
				return revision{}, err
			}
			archive := exec.CommandContext(ctx, "git", "-C", g.repo, "archive", "--format=tar", sha)
			untar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
			pipe, err := archive.StdoutPipe()
			if err != nil {
				return revision{}, err
			}
			untar.Stdin = pipe
			var e1, e2 bytes.Buffer
			archive.Stderr, untar.Stderr = &e1, &e2
			if err := untar.Start(); err != nil {
				return revision{}, err
			}
			aerr := archive.Run()
			uerr := untar.Wait()
			if aerr != nil || uerr != nil {
				os.RemoveAll(dir)
				if ctx.Err() != nil {
					return revision{}, ctx.Err()
				}
				return revision{}, fmt.Errorf("export %s: %v %v: %s%s", sha, aerr, uerr, e1.String(), e2.String())
			}
			g.last = sha
			short := sha
			if len(short) > 12 {
				short = short[:12]
			}
			return revision{
				Name:    g.branch + "@sha1:" + short,
				Dir:     filepath.Join(dir, g.sub),
				cleanup: func() { os.RemoveAll(dir) },
			}, nil
		}
		select {
		case <-ctx.Done():
			return revision{}, ctx.Err()
		case <-time.After(g.poll):
		}
	}
}

// dirSource watches a plain directory: it polls the names, sizes and
// modification times of its files (and of the CUE module root's, for an
// environment directory) and yields a revision named "dir@<hash>" of
// their contents when they change.
type dirSource struct {
	dir   string
	poll  time.Duration
	stamp string
	last  string
}

func (d *dirSource) Describe() string {
	return fmt.Sprintf("directory %s (polled every %s)", d.dir, d.poll)
}

func (d *dirSource) root() string {
	// The CUE module root: files of the same package in the ancestors of
	// an environment directory belong to the instance.
	for dir := d.dir; ; {
		if st, err := os.Stat(filepath.Join(dir, "cue.mod")); err == nil && st.IsDir() {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return d.dir
		}
		dir = parent
	}
}

// scan returns a cheap stamp (names, sizes, mtimes) and the files.
func (d *dirSource) scan() (string, []string) {
	var lines, files []string
	_ = filepath.WalkDir(d.root(), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if e.IsDir() && p != d.root() && (strings.HasPrefix(e.Name(), ".") || e.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".cue") {
			return nil
		}
		info, err := os.Stat(p) // follows the schema symlink
		if err != nil {
			return nil
		}
		files = append(files, p)
		lines = append(lines, fmt.Sprintf("%s %d %d", p, info.Size(), info.ModTime().UnixNano()))
		return nil
	})
	sort.Strings(lines)
	sort.Strings(files)
	return strings.Join(lines, "\n"), files
}

func (d *dirSource) Next(ctx context.Context) (revision, error) {
	for {
		stamp, files := d.scan()
		if stamp != d.stamp {
			d.stamp = stamp
			h := sha256.New()
			for _, f := range files {
				b, _ := os.ReadFile(f)
				fmt.Fprintf(h, "%s %d\n", f, len(b))
				h.Write(b)
			}
			name := "dir@" + hex.EncodeToString(h.Sum(nil))[:12]
			if name != d.last {
				d.last = name
				return revision{Name: name, Dir: d.dir}, nil
			}
		}
		select {
		case <-ctx.Done():
			return revision{}, ctx.Err()
		case <-time.After(d.poll):
		}
	}
}
