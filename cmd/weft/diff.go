package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	"github.com/spf13/cobra"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/compiler/diff"
	"github.com/weft-dev/weft/internal/gitrev"
	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/schema"
)

func newDiffCmd() *cobra.Command {
	var (
		env, output, gitRange string
		gate                  pipeline.Gate
	)
	cmd := &cobra.Command{
		Use:   "diff BASE HEAD | diff --git BASE..HEAD DIR",
		Short: "Show what a change does to every proxy's configuration",
		Long: `diff compiles two revisions of a mesh — two directories, or with --git two
commits of the git repository DIR is in (exported with git archive) — through
the same gate as weft build (schema, cross references, policies: a revision
that fails is an error) and compares, per environment and proxy class, the
effective Envoy configuration, resource by resource and field by field.

It prints a summary in the mesh's terms first (split weights, timeouts,
retries, routes, versions and services added or removed, calls, the
authorization edges opened and closed, any other field by its path, per
environment), then every changed class: each resource added, removed or
changed with its fields (old → new). Classes with the same changes are shown
together.

Without --env the base and every environment of either revision are
compared. --output text (default), markdown (a pull-request comment:
collapsible sections, cut under GitHub's 65,536-character limit) or json.
The exit code is that of diff(1): 0 no difference, 1 differences, 2 an error
(a revision that does not load, vet or compile included).`,
		Example: `  weft diff ../mesh-main . --env prod
  weft diff --git main..HEAD .
  weft diff --git origin/main..HEAD environments --output markdown > weft-diff.md`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := runDiff(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args, diffOptions{
				env: env, output: output, git: gitRange, gate: &gate,
			})
			var ex exitError
			if err != nil && !errors.As(err, &ex) {
				fmt.Fprintln(cmd.ErrOrStderr(), "weft diff:", err)
				return exitError{2}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&env, "env", "", "compare one environment (default: the base and every environment)")
	f.StringVar(&output, "output", "text", "output format: text, markdown or json")
	f.StringVar(&gitRange, "git", "", "compare two commits, BASE..HEAD, of the git repository DIR is in")
	f.StringArrayVar(&gate.PolicyDirs, "policy", nil, "folder of Rego and data files compiled with the default policies (repeatable), as in weft vet")
	gate.Limits.BindFlags(f)
	return cmd
}

type diffOptions struct {
	env, output, git string
	gate             *pipeline.Gate
}

// revisionDir is one side of a diff: where it is, what it is called, and
// the base its positions are shown with (an exported commit's as the work
// tree's, so that file:line opens the file the user has).
type revisionDir struct {
	dir, label, revision, display string
}

func runDiff(ctx context.Context, stdout, stderr io.Writer, args []string, o diffOptions) error {
	format, err := diff.ParseFormat(o.output)
	if err != nil {
		return err
	}
	sides, cleanup, err := diffSides(ctx, args, o.git)
	defer cleanup()
	if err != nil {
		return err
	}
	// Both revisions go through weft build's gate, concurrently.
	var results [2]map[string]*diff.Side
	var errs [2]error
	var wg sync.WaitGroup
	for i, s := range sides {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = gateAll(ctx, stderr, s, o.env, &pipeline.Gate{PolicyDirs: o.gate.PolicyDirs, Limits: o.gate.Limits}) // one gate per side: they run concurrently
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("%s (%s): %w", []string{"base", "head"}[i], sides[i].label, err)
		}
	}
	base, head := results[0], results[1]
	rep := &diff.Report{Base: sides[0].label, Head: sides[1].label}
	for _, name := range envOrder(base, head) {
		b, h := base[name], head[name]
		if b != nil {
			if b.Result, err = compiler.Compile(b.Model, nil, compiler.Options{}); err != nil {
				return fmt.Errorf("base %s: compile: %w", name, err)
			}
		}
		if h != nil {
			var prev *compiler.Result
			if b != nil {
				prev = b.Result // reuse every class whose inputs did not change
			}
			if h.Result, err = compiler.CompileFrom(prev, h.Model, nil, compiler.Options{}); err != nil {
				return fmt.Errorf("head %s: compile: %w", name, err)
			}
		}
		rep.Envs = append(rep.Envs, diff.Compare(name, b, h))
	}
	if err := rep.Write(stdout, format); err != nil {
		return err
	}
	if rep.Changed() {
		return exitError{1}
	}
	return nil
}

// diffSides are the two revisions: two directories, or two commits of a
// repository exported into temporary directories (removed by cleanup).
func diffSides(ctx context.Context, args []string, spec string) ([2]revisionDir, func(), error) {
	var sides [2]revisionDir
	nothing := func() {}
	if spec == "" {
		if len(args) != 2 {
			return sides, nothing, fmt.Errorf("want two directories, BASE HEAD (or --git BASE..HEAD DIR); got %d arguments", len(args))
		}
		for i, dir := range args {
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return sides, nothing, fmt.Errorf("%s is not a directory", dir)
			}
			sides[i] = revisionDir{dir: dir, label: dir, revision: gitRevision(dir), display: displayBase(dir)}
		}
		return sides, nothing, nil
	}
	if len(args) != 1 {
		return sides, nothing, fmt.Errorf("--git %s takes one directory (the mesh in the repository); got %d arguments", spec, len(args))
	}
	revs := [2]string{}
	var err error
	if revs[0], revs[1], err = gitrev.Range(spec); err != nil {
		return sides, nothing, err
	}
	repo, err := gitrev.Open(ctx, args[0])
	if err != nil {
		return sides, nothing, err
	}
	tmp, err := os.MkdirTemp("", "weft-diff-")
	if err != nil {
		return sides, nothing, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	for i, rev := range revs {
		sha, err := repo.Resolve(ctx, rev)
		if err != nil {
			return sides, cleanup, err
		}
		dst, err := os.MkdirTemp(tmp, "rev-")
		if err != nil {
			return sides, cleanup, err
		}
		dir, err := repo.Export(ctx, sha, dst)
		if err != nil {
			return sides, cleanup, err
		}
		sides[i] = revisionDir{dir: dir, label: rev + "@" + gitrev.Short(sha), revision: rev + "@sha1:" + gitrev.Short(sha), display: displayBase(args[0])}
	}
	return sides, cleanup, nil
}

// gateAll runs weft build's gate on one revision: the environment env, or
// the base and every environment. Each environment's model is returned
// only if all of them pass; otherwise their problems are written (text, as
// weft vet writes them, to w) and the error says so.
func gateAll(ctx context.Context, w io.Writer, s revisionDir, env string, g *pipeline.Gate) (map[string]*diff.Side, error) {
	if env != "" && env != policies.BaseEnv && !slices.Contains(schema.Environments(s.dir), env) {
		return map[string]*diff.Side{}, nil // the revision has no such environment
	}
	vetEnv := env
	if env == policies.BaseEnv {
		vetEnv = "" // the base alone: vet judges it with the others
	}
	rep, err := g.Vet(ctx, s.dir, pipeline.VetOptions{Env: vetEnv, Revision: s.revision})
	if err != nil {
		return nil, err
	}
	if env == policies.BaseEnv && len(rep.Policy) == 0 {
		rep.Envs = builtEnv(rep.Envs, policies.BaseEnv)
	}
	if rep.Failed() {
		werr := rep.Write(policies.Text, policies.WriteOptions{Stdout: io.Discard, Stderr: &prefixed{w: w, prefix: s.label + ": "}, Base: s.display})
		return nil, errors.Join(errors.New("the revision does not pass weft vet (the same gate as weft build): see above"), werr)
	}
	out := map[string]*diff.Side{}
	for _, e := range rep.Envs {
		out[e.Name] = &diff.Side{Model: e.Model}
	}
	return out, nil
}

// envOrder: the base first, then the environments of either side in
// order.
func envOrder(a, b map[string]*diff.Side) []string {
	var names []string
	for n := range a {
		names = append(names, n)
	}
	for n := range b {
		if a[n] == nil {
			names = append(names, n)
		}
	}
	slices.SortFunc(names, func(x, y string) int {
		switch {
		case x == y:
			return 0
		case x == policies.BaseEnv:
			return -1
		case y == policies.BaseEnv:
			return 1
		case x < y:
			return -1
		}
		return 1
	})
	return names
}

// prefixed writes every line with a prefix (the side of the diff whose
// gate failed), and serializes writers.
type prefixed struct {
	w      io.Writer
	prefix string
	mid    bool
}

var stderrMu sync.Mutex

func (p *prefixed) Write(b []byte) (int, error) {
	stderrMu.Lock()
	defer stderrMu.Unlock()
	var out []byte
	for _, c := range b {
		if !p.mid {
			out = append(out, p.prefix...)
		}
		out = append(out, c)
		p.mid = c != '\n'
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}

// builtEnv is the report of one environment among envs (none if absent).
func builtEnv(envs []policies.EnvReport, name string) []policies.EnvReport {
	for _, e := range envs {
		if e.Name == name {
			return []policies.EnvReport{e}
		}
	}
	return nil
}
