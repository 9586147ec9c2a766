package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/schema"
)

// AcceptFunc checks what a revision compiled into — the compiler's
// acceptance checks (Envoy proto validation, RE2 limits, header rules):
// whatever passes, Envoy accepts. It returns the problems found, each
// with the position of the field that produced the refused value; none
// means accepted. It must be a pure function of res.
type AcceptFunc func(res *compiler.Result) schema.Errors

// Gate is the one gate of weft: `weft vet`, `weft build`, `weft up` and
// the Kubernetes controller run a revision through it with the same code.
// It loads the environment (schema.LoadContext within Limits, the CUE
// evaluation abandoned at the time limit), evaluates the policies (the
// default bundle, the revision's own policies/ folder and PolicyDirs; a
// deny stops it) and, with Accept, checks what the revision compiles
// into. The zero Gate is ready to use; a Gate must not be copied after
// first use.
type Gate struct {
	// PolicyDirs are extra policy folders (`--policy DIR`).
	PolicyDirs []string
	// NoPolicies skips the policies: schema and cross references only
	// (`weft up --no-policies`).
	NoPolicies bool
	// Accept is the acceptance step (nil: none).
	Accept AcceptFunc
	// Limits bound what the loader reads and how long one revision may
	// take (zero fields: the defaults). Set it before the first use;
	// SetLimits changes it later.
	Limits Limits

	mu   sync.Mutex // guards Limits after the first use
	eval evaluator
}

// SetLimits changes the limits of the revisions that start from now on
// (a controller's Mesh spec; tests).
func (g *Gate) SetLimits(l Limits) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.Limits = l
}

// VetOptions select what the gate judges.
type VetOptions struct {
	// Env is the environment ("" with Vet: the base and every
	// environment; with Build: the base). An environment directory given
	// as the repository is resolved by schema.ResolveEnv.
	Env string
	// Revision is recorded in the models, given to the policies and put
	// into the snapshot versions.
	Revision string
	// PolicyDirs are policy folders of this revision, evaluated with
	// Gate.PolicyDirs (pipeline.Revision.PolicyDirs).
	PolicyDirs []string
}

// Vet is `weft vet`: the gate on the base and every environment (or
// opts.Env), each reported with its schema errors (the compiler's
// acceptance gate's among them: every environment is compiled with its
// static endpoints), policy findings and, with Accept, further acceptance
// problems (policies.RuleAcceptance). The
// revision time limit covers the whole vet. The error is for what is
// nobody's definition's fault (and the time limit: *TimeoutError).
func (g *Gate) Vet(ctx context.Context, dir string, opts VetOptions) (*policies.Report, error) {
	rep, _, err := g.judge(ctx, dir, opts, false)
	return rep, err
}

// Build is `weft build`: the gate on opts.Env (the base when empty), then
// the compiled result of that environment, with its static endpoints. The
// report judges that environment only (the others were loaded for the
// policies' input.splits); a compile error or an acceptance problem is a
// finding of policies.RuleAcceptance. The result is nil when the report
// fails.
func (g *Gate) Build(ctx context.Context, dir string, opts VetOptions) (*policies.Report, *compiler.Result, error) {
	return g.judge(ctx, dir, opts, true)
}

func (g *Gate) judge(ctx context.Context, dir string, opts VetOptions, build bool) (*policies.Report, *compiler.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, g.limits().Timeout)
	defer cancel()
	l, err := g.load(ctx, dir, opts)
	if err != nil {
		return nil, nil, err
	}
	if build {
		// Build judges the environment it compiles only (the base first
		// when none is given); the others were loaded for input.splits.
		l.Vetted = l.Vetted[:1]
	}
	rep, err := g.check(ctx, l, opts)
	if err != nil {
		return nil, nil, err
	}
	var res *compiler.Result
	for i := range rep.Envs {
		e := &rep.Envs[i]
		if e.Failed() || e.Model == nil {
			continue
		}
		// Compile runs the compiler's acceptance gate: a value Envoy would
		// reject is a definition error with its file:line, reported like
		// the loader's.
		r, err := compiler.Compile(e.Model, nil, compiler.Options{Revision: opts.Revision})
		var es schema.Errors
		switch {
		case errors.As(err, &es):
			e.Schema = append(e.Schema, es...)
			continue
		case err != nil:
			e.Findings = append(e.Findings, policies.Finding{Rule: policies.RuleAcceptance, Severity: policies.Deny,
				Msg: "does not compile: " + err.Error(), Environment: e.Name})
			continue
		}
		e.Findings = append(e.Findings, acceptFindings(g.accept(r), e.Name)...)
		res = r
	}
	if rep.Failed() {
		res = nil
	}
	return rep, res, nil
}

func (g *Gate) limits() Limits {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.Limits.WithDefaults()
}

// load runs policies.Load (the environment vetted and the others, for
// input.splits) where an overrun of ctx's deadline can be abandoned.
func (g *Gate) load(ctx context.Context, dir string, opts VetOptions) (*policies.Loaded, error) {
	var l *policies.Loaded
	var lerr error
	how, err := g.eval.run(ctx, func() {
		l, lerr = policies.Load(ctx, dir, g.vetOptions(opts))
	})
	if err == nil {
		err = lerr
	}
	if err != nil {
		return nil, g.timeout(ctx, err, how)
	}
	return l, nil
}

// timeout turns the end of ctx's deadline into a *TimeoutError.
func (g *Gate) timeout(ctx context.Context, err error, how overrun) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		l := g.limits()
		return &TimeoutError{Limit: l.Timeout, Setting: l.TimeoutSetting, Abandoned: how == abandoned, Waited: how == waited}
	}
	return err
}

func (g *Gate) vetOptions(opts VetOptions) policies.VetOptions {
	return policies.VetOptions{Env: opts.Env, Revision: opts.Revision, PolicyDirs: append(slices.Clip(g.PolicyDirs), opts.PolicyDirs...), Limits: g.limits().Limits}
}

// check evaluates the policies on what load loaded (or, with NoPolicies,
// reports the loads alone).
func (g *Gate) check(ctx context.Context, l *policies.Loaded, opts VetOptions) (*policies.Report, error) {
	if g.NoPolicies {
		rep := &policies.Report{Root: l.Root}
		for _, e := range l.Vetted {
			er := policies.EnvReport{Name: policies.EnvName(e), Model: l.Models[e]}
			if es, ok := l.Errs[e].(schema.Errors); ok {
				er.Schema = es
			} else {
				er.Err = l.Errs[e]
			}
			rep.Envs = append(rep.Envs, er)
		}
		return rep, nil
	}
	rep, err := policies.Check(ctx, l, g.vetOptions(opts))
	if err != nil {
		return nil, g.timeout(ctx, err, finished)
	}
	return rep, nil
}

// accept runs the acceptance step, if any.
func (g *Gate) accept(res *compiler.Result) schema.Errors {
	if g.Accept == nil {
		return nil
	}
	return g.Accept(res)
}

func acceptFindings(es schema.Errors, env string) []policies.Finding {
	out := make([]policies.Finding, len(es))
	for i, e := range es {
		out[i] = policies.Finding{Rule: policies.RuleAcceptance, Severity: policies.Deny, Msg: e.Msg, Path: e.Path,
			Pos: e.Pos, Environment: env, Fix: e.Fix, Also: e.Also}
	}
	return out
}

// envResult is the outcome of the gate's load and policy steps for the
// environment a pipeline serves.
func envResult(rep *policies.Report, env string) (policies.EnvReport, error) {
	name := policies.EnvName(env)
	for _, e := range rep.Envs {
		if e.Name == name {
			return e, nil
		}
	}
	return policies.EnvReport{}, fmt.Errorf("the gate did not judge environment %s", name)
}

// denies are the deny findings of an environment.
func denies(e policies.EnvReport) denyError {
	var d denyError
	for _, f := range e.Findings {
		if f.Severity == policies.Deny {
			d = append(d, f)
		}
	}
	return d
}

// MaxFileBytes is the per-file limit in force (a directory watcher hashes
// no more of a file).
func (g *Gate) MaxFileBytes() int64 { return g.limits().MaxFileBytes }
