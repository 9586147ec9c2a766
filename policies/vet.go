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

// Vet is `weft vet`: it compiles the policies (the bundle, the
// repository's policies/ folder, opts.PolicyDirs) while it loads and
// validates the environments with schema.Load, and evaluates the policies
// on each one that loads. A broken policy is the only thing reported
// (Report.Policy): nothing is evaluated.
// The error is for failures that are neither the definition's nor the
// policies' fault.
func Vet(ctx context.Context, dir string, opts VetOptions) (*Report, error) {
	root := schema.ModuleRoot(dir)
	if opts.Env == "" {
		// `weft vet DIR/prod` is `weft vet DIR --env prod`: the policies
		// must know the environment they judge.
		if env, ok := envOf(dir, root); ok {
			dir, opts.Env = root, env
		}
	}
	rep := &Report{Root: root}
	envs := schema.Environments(dir)
	vetted := []string{opts.Env}
	if opts.Env == "" {
		vetted = append([]string{""}, envs...)
	}
	// The canary rule compares an environment's splits with the other
	// environments': load them all (in parallel), also when one is vetted.
	// The policies are compiled meanwhile.
	want := map[string]bool{}
	for _, e := range append(vetted, envs...) {
		want[e] = true
	}
	var (
		models map[string]*mesh.Model
		errs   map[string]error
		loaded = make(chan struct{})
	)
	go func() {
		defer close(loaded)
		models, errs = loadAll(dir, opts.Revision, sortedKeys(want))
	}()
	eng, err := New(ctx, Options{Dirs: PolicyDirs(dir, opts.PolicyDirs), Root: root})
	<-loaded
	if err != nil {
		if es, ok := err.(Errors); ok {
			rep.Policy = es
			return rep, nil
		}
		return nil, err
	}
	rep.Rules = eng.Rules()
	splits := map[string]Splits{}
	for _, e := range envs {
		if m := models[e]; m != nil {
			splits[e] = SplitsOf(m)
		}
	}
	for _, e := range vetted {
		er := EnvReport{Name: EnvName(e)}
		if m := models[e]; m != nil {
			fs, err := eng.Eval(ctx, Input{Model: m, Splits: splits})
			if err != nil {
				if es, ok := err.(Errors); ok {
					rep.Policy = append(rep.Policy, es...)
					continue
				}
				return nil, err
			}
			er.Findings, er.Model = fs, m
		} else if es, ok := errs[e].(schema.Errors); ok {
			er.Schema = es
		} else {
			er.Err = errs[e]
		}
		rep.Envs = append(rep.Envs, er)
	}
	return rep, nil
}

// envOf reports whether dir is one of the environment directories of the
// repository at root (root/environments/E or root/E), and which.
func envOf(dir, root string) (string, bool) {
	abs, err := filepath.Abs(dir)
	if err != nil || abs == root {
		return "", false
	}
	env := filepath.Base(abs)
	if p := filepath.Dir(abs); p != root && p != filepath.Join(root, "environments") {
		return "", false
	}
	for _, e := range schema.Environments(root) {
		if e == env {
			return env, true
		}
	}
	return "", false
}

// loadAll loads the environments of dir concurrently.
func loadAll(dir, revision string, envs []string) (map[string]*mesh.Model, map[string]error) {
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
			m, err := schema.Load(dir, schema.Options{Env: e, Revision: revision})
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
