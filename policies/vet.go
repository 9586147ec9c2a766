package policies

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// RepoPolicyDir is the folder of a mesh repository (below its root) whose
// Rego and data files are compiled with the default bundle.
const RepoPolicyDir = "policies"

// VetOptions select what Vet checks.
type VetOptions struct {
	// Env is the environment to vet; "" vets the base and every
	// environment of the repository.
	Env string
	// Revision is recorded in the models and given to the rules.
	Revision string
	// PolicyDirs are extra policy folders (`weft vet --policy DIR`),
	// compiled with the bundle and the repository's policies/ folder.
	PolicyDirs []string
	// Limits bound what the loader reads (schema.Options.Limits).
	Limits schema.Limits
}

// Report is the outcome of Vet.
type Report struct {
	// Root is the mesh repository's root (absolute); positions are
	// relative to it.
	Root string
	// Rules are the rules that were loaded (for SARIF and --explain).
	Rules []*Rule
	// Policy lists the problems of the policies themselves: when there is
	// any, nothing else was checked.
	Policy Errors
	// Envs are the results per environment vetted, in order.
	Envs []EnvReport
}

// EnvReport is the result of one environment.
type EnvReport struct {
	// Name is the environment (BaseEnv for the base).
	Name string
	// Schema lists the definition errors; when there is any, the
	// policies did not run.
	Schema schema.Errors
	// Err is a failure to load that is not a definition error (no such
	// environment, unreadable files).
	Err error
	// Findings are the policies' findings.
	Findings []Finding
	// Model is the environment's model when it loaded: `weft build`
	// compiles the very model the policies judged.
	Model *mesh.Model
}

// Failed reports whether the environment fails the gate.
func (e EnvReport) Failed() bool {
	if len(e.Schema) > 0 || e.Err != nil {
		return true
	}
	for _, f := range e.Findings {
		if f.Severity == Deny {
			return true
		}
	}
	return false
}

// Failed reports whether anything fails the gate: `weft vet` exits 1.
func (r *Report) Failed() bool {
	if len(r.Policy) > 0 {
		return true
	}
	for _, e := range r.Envs {
		if e.Failed() {
			return true
		}
	}
	return false
}

// Findings returns everything reported, schema and policy errors included
// (as findings of the pseudo rules RuleSchema and RulePolicy), in order.
func (r *Report) Findings() []Finding {
	out := r.Policy.Findings()
	for _, e := range r.Envs {
		for _, se := range e.Schema {
			out = append(out, Finding{Rule: RuleSchema, Severity: Deny, Msg: se.Msg, Path: se.Path,
				Pos: se.Pos, Environment: e.Name, Fix: se.Fix, Also: se.Also})
		}
		if e.Err != nil {
			out = append(out, Finding{Rule: RuleSchema, Severity: Deny, Msg: e.Err.Error(), Environment: e.Name})
		}
		out = append(out, e.Findings...)
	}
	return out
}

// PolicyDirs returns the policy folders of the mesh repository at dir:
// its policies/ folder when there is one, then extra.
func PolicyDirs(dir string, extra []string) []string {
	var dirs []string
	p := filepath.Join(schema.ModuleRoot(dir), RepoPolicyDir)
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		dirs = append(dirs, p)
	}
	return append(dirs, extra...)
}

// Vet is `weft vet`: Load then Check. A broken policy stops it before
// anything is evaluated (Report.Policy). The error is for failures that
// are neither the definition's nor the policies' fault.
func Vet(ctx context.Context, dir string, opts VetOptions) (*Report, error) {
	l, err := Load(ctx, dir, opts)
	if err != nil {
		return nil, err
	}
	return Check(ctx, l, opts)
}

// Loaded is a mesh repository loaded for vetting: the environments
// vetted and, for the canary rule's input.splits, every other one.
type Loaded struct {
	// Dir is the repository (after schema.ResolveEnv), Root its module
	// root (absolute).
	Dir, Root string
	// Vetted are the environments judged, in order ("" is the base).
	Vetted []string
	// Envs are all the environments of the repository.
	Envs []string
	// Models and Errs hold each loaded environment's model or error.
	Models map[string]*mesh.Model
	Errs   map[string]error
}

// Load loads what Check judges: opts.Env (resolved with
// schema.ResolveEnv: `weft vet DIR/prod` is `weft vet DIR --env prod`),
// or the base and every environment when it is empty, and every other
// environment for input.splits; concurrently, each within opts.Limits.
// Failures to load are in Loaded.Errs; the error is ctx's.
func Load(ctx context.Context, dir string, opts VetOptions) (*Loaded, error) {
	dir, opts.Env = schema.ResolveEnv(dir, opts.Env)
	l := &Loaded{Dir: dir, Root: schema.ModuleRoot(dir), Envs: schema.Environments(dir)}
	l.Vetted = []string{opts.Env}
	if opts.Env == "" {
		l.Vetted = append([]string{""}, l.Envs...)
	}
	// The canary rule compares an environment's splits with the other
	// environments': load them all, also when one is vetted.
	want := map[string]bool{}
	for _, e := range append(l.Vetted, l.Envs...) {
		want[e] = true
	}
	l.Models, l.Errs = loadAll(ctx, dir, opts, sortedKeys(want))
	return l, ctx.Err()
}

// Check compiles the policies (the bundle, the repository's policies/
// folder, opts.PolicyDirs) and evaluates them on every vetted environment
// that loaded. A broken policy stops it before anything is evaluated
// (Report.Policy).
func Check(ctx context.Context, l *Loaded, opts VetOptions) (*Report, error) {
	rep := &Report{Root: l.Root}
	eng, err := New(ctx, Options{Dirs: PolicyDirs(l.Dir, opts.PolicyDirs), Root: l.Root})
	if err != nil {
		if es, ok := err.(Errors); ok {
			rep.Policy = es
			return rep, nil
		}
		return nil, err
	}
	rep.Rules = eng.Rules()
	splits := map[string]Splits{}
	for _, e := range l.Envs {
		if m := l.Models[e]; m != nil {
			splits[e] = SplitsOf(m)
		}
	}
	for _, e := range l.Vetted {
		er := EnvReport{Name: EnvName(e)}
		if m := l.Models[e]; m != nil {
			fs, err := eng.Eval(ctx, Input{Model: m, Splits: splits})
			if err != nil {
				if es, ok := err.(Errors); ok {
					rep.Policy = append(rep.Policy, es...)
					continue
				}
				return nil, err
			}
			er.Findings, er.Model = fs, m
		} else if es, ok := l.Errs[e].(schema.Errors); ok {
			er.Schema = es
		} else {
			er.Err = l.Errs[e]
		}
		rep.Envs = append(rep.Envs, er)
	}
	return rep, nil
}

// loadAll loads the environments of dir concurrently.
func loadAll(ctx context.Context, dir string, opts VetOptions, envs []string) (map[string]*mesh.Model, map[string]error) {
	models := make(map[string]*mesh.Model, len(envs))
	errs := make(map[string]error, len(envs))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
	for _, e := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			m, err := schema.LoadContext(ctx, dir, schema.Options{Env: e, Revision: opts.Revision, Limits: opts.Limits})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs[e] = err
			} else {
				models[e] = m
			}
		}()
	}
	wg.Wait()
	return models, errs
}
