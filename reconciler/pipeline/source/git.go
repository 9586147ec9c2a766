package source

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/pipeline"
)

// GitBranch follows a branch of a local git repository: it polls
// `git rev-parse <branch>` and exports each new commit with
// `git archive | tar -x` into a fresh directory below ExportDir. A
// revision is named `<branch>@sha1:<12 hex>`; its directory is the
// export's Sub. Uncommitted edits are not seen.
//
// A failure to resolve the branch is a retryable error at step fetch
// (revision: the branch), a failure to export a commit one at step export
// (revision: the commit); the next Next tries again.
type GitBranch struct {
	// Repo is the top level of the work tree; Sub the followed directory
	// below it ("" or "." for the top).
	Repo, Sub string
	Branch    string
	Poll      time.Duration
	ExportDir string

	last string // the commit last returned
}

func (g *GitBranch) String() string {
	return fmt.Sprintf("git repository %s, branch %s (polled every %s)", g.Repo, g.Branch, g.Poll)
}

// Next returns the branch's commit when it differs from the last one
// returned, exported.
func (g *GitBranch) Next(ctx context.Context) (pipeline.Revision, error) {
	for {
		sha, err := gitOutput(g.Repo, "rev-parse", "--verify", "--quiet", g.Branch+"^{commit}")
		if err != nil {
			if ctx.Err() != nil {
				return pipeline.Revision{}, ctx.Err()
			}
			return pipeline.Revision{}, pipeline.Retryable(g.Branch, status.StepFetch,
				fmt.Errorf("branch %s of %s: %w (does it exist? --branch names it)", g.Branch, g.Repo, err))
		}
		if sha != g.last {
			rev, err := g.export(ctx, sha)
			if err != nil {
				return pipeline.Revision{}, err
			}
			g.last = sha
			return rev, nil
		}
		if !wait(ctx.Done(), g.Poll) {
			return pipeline.Revision{}, ctx.Err()
		}
	}
}

func (g *GitBranch) name(sha string) string {
	if len(sha) > 12 {
		sha = sha[:12]
	}
	return g.Branch + "@sha1:" + sha
}

// export writes commit sha into a fresh directory.
func (g *GitBranch) export(ctx context.Context, sha string) (pipeline.Revision, error) {
	name := g.name(sha)
	fail := func(err error) (pipeline.Revision, error) {
		if ctx.Err() != nil {
			return pipeline.Revision{}, ctx.Err()
		}
		return pipeline.Revision{}, pipeline.Retryable(name, status.StepExport, err)
	}
	if err := os.MkdirAll(g.ExportDir, 0o700); err != nil {
		return fail(err)
	}
	dir, err := os.MkdirTemp(g.ExportDir, "rev-")
	if err != nil {
		return fail(err)
	}
	archive := exec.CommandContext(ctx, "git", "-C", g.Repo, "archive", "--format=tar", sha)
	untar := exec.CommandContext(ctx, "tar", "-x", "-C", dir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return fail(err)
	}
	untar.Stdin = pipe
	var e1, e2 bytes.Buffer
	archive.Stderr, untar.Stderr = &e1, &e2
	if err := untar.Start(); err != nil {
		os.RemoveAll(dir)
		return fail(err)
	}
	aerr := archive.Run()
	uerr := untar.Wait()
	if aerr != nil || uerr != nil {
		os.RemoveAll(dir)
		// tar's complaint is noise when git archive failed first.
		msg := fmt.Sprintf("tar -x: %v: %s", uerr, strings.TrimSpace(e2.String()))
		if aerr != nil {
			msg = fmt.Sprintf("git archive: %v: %s", aerr, strings.TrimSpace(e1.String()))
		}
		return fail(fmt.Errorf("commit %s: %s", sha, msg))
	}
	return pipeline.Revision{
		Name:    name,
		Dir:     filepath.Join(dir, g.Sub),
		Cleanup: func() { os.RemoveAll(dir) },
	}, nil
}
