package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// Revision is one version of a mesh repository, ready to load: a name
// (`main@sha1:<12 hex>`, `dir@<12 hex>`, a Flux artifact's revision),
// the directory holding it (the repository, or an environment directory
// in it), and what to do once it is no longer needed.
type Revision struct {
	Name string
	Dir  string
	// PolicyDirs are policy folders that come with the revision (a
	// Mesh's spec.policies inside its Flux artifact), evaluated with
	// Gate.PolicyDirs.
	PolicyDirs []string
	// Cleanup removes what the source made for the revision (an exported
	// copy); nil when there is nothing to remove.
	Cleanup func()
}

// Done runs Cleanup, if any.
func (r Revision) Done() {
	if r.Cleanup != nil {
		r.Cleanup()
	}
}

// Source yields the revisions of a mesh repository: a watched directory,
// a followed git branch (package reconciler/pipeline/source), a Flux
// artifact.
type Source interface {
	// Next blocks until there is a revision that differs from the last
	// one returned (the first call returns the current one) and returns
	// it, or until ctx ends (ctx's error). Any other error is a
	// *RetryableError (step status.StepFetch or StepExport): the source
	// stays usable and the next call tries again.
	Next(ctx context.Context) (Revision, error)
	// String describes the source for people ("git repository R, branch
	// main (polled every 1s)").
	String() string
}

// Publisher serves a compiled revision and keeps the status: the xDS
// server (*xds.Server) is one.
type Publisher interface {
	// Publish swaps in rev for every proxy, or changes nothing served; it
	// records its own outcome as the last attempt (step
	// status.StepPublish when it fails).
	Publish(rev string, res *compiler.Result) error
	// RecordFailure records a failed attempt at a step before publish;
	// the served revision is unchanged. Positioned problems of err
	// (schema.Errors, or an error with Problems() []status.Problem) are
	// kept with their file:line.
	RecordFailure(rev, step string, err error)
}

// Applied is a revision that was published.
type Applied struct {
	Revision string
	Model    *mesh.Model
	Result   *compiler.Result
	At       time.Time
}

// Pipeline reconciles one revision at a time: load -> vet -> compile ->
// accept (with Gate.Accept) -> publish, each step taking the revision's
// context (deadline Gate.Limits.Timeout). A failure at any step changes
// nothing served: the last good revision keeps serving, the failure is
// recorded with Publisher.RecordFailure (step and error, with file:line)
// and returned as a *StallingError or a *RetryableError.
type Pipeline struct {
	// Gate is the gate of every revision (its Limits, policies and
	// acceptance step).
	Gate *Gate
	// Env is the environment served (schema.Options.Env).
	Env string
	// Check, when set, runs right after load, before the policies: an
	// error stalls the revision at the vet step (`weft up` refuses a
	// change of trust domain there).
	Check func(*mesh.Model) error
	// Endpoints, when set, gives the endpoints to compile with (nil: the
	// model's static ones). Its error is retryable.
	Endpoints func(*mesh.Model) (compiler.Endpoints, error)
	// Compile holds the compiler options; Revision is set per run.
	Compile compiler.Options
	// Publisher serves what passed.
	Publisher Publisher
	// Observe, when set, is told every step's duration and outcome (the
	// control plane's metrics, package reconciler/metrics).
	Observe func(step string, took time.Duration, err error)

	// inc compiles each revision from the previous compiled one: only the
	// services whose inputs changed are compiled again (compiler.CompileFrom).
	inc compiler.Incremental

	mu sync.Mutex // serializes Reconcile and Republish
	// pubMu guards last and published, so that they can be read while a
	// revision runs (an Endpoints func may read them).
	pubMu sync.Mutex
	last  *Applied
	// published are the last maxPublished revisions published, oldest
	// first: a revision the proxies rejected is rolled back by the
	// server to an earlier one, which Republish may have to serve again.
	published []*Applied
}

// run is one revision going through the steps.
type run struct {
	rev    Revision
	env    string
	loaded *policies.Loaded
	model  *mesh.Model
	result *compiler.Result
}

// vetOptions are the gate's options for the revision and environment env.
func (r *run) vetOptions(env string) VetOptions {
	return VetOptions{Env: env, Revision: r.rev.Name, PolicyDirs: r.rev.PolicyDirs}
}

// step is one step of a reconcile: it fails with a *StallingError or a
// *RetryableError (or the end of ctx).
type step struct {
	name string
	run  func(ctx context.Context, r *run) error
}

func (p *Pipeline) steps() []step {
	s := []step{
		{status.StepLoad, p.load},
		{status.StepVet, p.vet},
		{status.StepCompile, p.compile},
	}
	if p.Gate.Accept != nil {
		s = append(s, step{status.StepAccept, p.accept})
	}
	return append(s, step{status.StepPublish, p.publish})
}

// Reconcile runs revision rev through every step and, if all pass,
// serves it. The revision's directory is read during the call only (the
// caller may remove it afterwards). A canceled ctx ends it without
// recording anything.
func (p *Pipeline) Reconcile(ctx context.Context, rev Revision) (*Applied, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, p.Gate.limits().Timeout)
	defer cancel()
	r := &run{rev: rev}
	for _, s := range p.steps() {
		start := time.Now()
		err := s.run(ctx, r)
		if p.Observe != nil {
			p.Observe(s.name, time.Since(start), err)
		}
		if err != nil {
			return nil, p.fail(ctx, rev.Name, s.name, err)
		}
	}
	a := &Applied{Revision: rev.Name, Model: r.model, Result: r.result, At: time.Now()}
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	p.last = a
	p.published = append(p.published, a)
	if len(p.published) > maxPublished {
		p.published = append(p.published[:0:0], p.published[len(p.published)-maxPublished:]...)
	}
	return a, nil
}

// fail records err (a step's failure) and returns it typed.
func (p *Pipeline) fail(ctx context.Context, rev, step string, err error) error {
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		var te *TimeoutError
		if !errors.As(err, &te) {
			l := p.Gate.limits()
			err = &TimeoutError{Limit: l.Timeout, Setting: l.TimeoutSetting}
		}
		err = &RetryableError{Revision: rev, Step: step, Err: err}
	}
	var se *StallingError
	var re *RetryableError
	switch {
	case errors.As(err, &se):
		se.Revision, se.Step = rev, step
	case errors.As(err, &re):
		re.Revision, re.Step = rev, step
	default:
		err = &RetryableError{Revision: rev, Step: step, Err: err}
	}
	if step != status.StepPublish { // Publish records its own failure
		p.Publisher.RecordFailure(rev, step, errors.Unwrap(err))
	}
	return err
}

func stall(err error) error { return &StallingError{Err: err} }
func retry(err error) error { return &RetryableError{Err: err} }

// load loads the environment served (and the others, for the policies'
// input.splits), within the limits.
func (p *Pipeline) load(ctx context.Context, r *run) error {
	l, err := p.Gate.load(ctx, r.rev.Dir, r.vetOptions(p.Env))
	if err != nil {
		return err // the time limit, or ctx: retryable
	}
	// Judge only the environment served (the others were loaded for the
	// policies' input.splits).
	l.Vetted = l.Vetted[:1]
	r.loaded, r.env = l, l.Vetted[0]
	if m := l.Models[r.env]; m != nil {
		r.model = m
		return nil
	}
	err = l.Errs[r.env]
	if !schema.IsErrors(err) && isIO(err) {
		return retry(err)
	}
	return stall(err)
}

// vet runs Check, then the policies; a deny (or a broken policy) stalls
// the revision.
func (p *Pipeline) vet(ctx context.Context, r *run) error {
	if p.Check != nil {
		if err := p.Check(r.model); err != nil {
			return stall(err)
		}
	}
	rep, err := p.Gate.check(ctx, r.loaded, r.vetOptions(r.env))
	if err != nil {
		return err
	}
	if len(rep.Policy) > 0 {
		return stall(policyErrors{rep.Policy})
	}
	e, err := envResult(rep, r.env)
	if err != nil {
		return err
	}
	if d := denies(e); len(d) > 0 {
		return stall(d)
	}
	return nil
}

// compile compiles the model with the endpoints.
func (p *Pipeline) compile(ctx context.Context, r *run) error {
	var eps compiler.Endpoints
	if p.Endpoints != nil {
		var err error
		if eps, err = p.Endpoints(r.model); err != nil {
			return retry(fmt.Errorf("endpoints: %w", err))
		}
	}
	opts := p.Compile
	opts.Revision = r.rev.Name
	res, err := p.inc.Compile(r.model, eps, opts)
	if err != nil {
		return stall(err)
	}
	r.result = res
	return ctx.Err()
}

// accept runs the acceptance step on the compiled result.
func (p *Pipeline) accept(ctx context.Context, r *run) error {
	if es := p.Gate.accept(r.result); len(es) > 0 {
		return stall(es)
	}
	return ctx.Err()
}

// publish serves the result.
func (p *Pipeline) publish(ctx context.Context, r *run) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := p.Publisher.Publish(r.rev.Name, r.result)
	var st interface{ Stalling() bool }
	if errors.As(err, &st) && st.Stalling() {
		return stall(err) // e.g. a version the proxies rejected: it would be refused again
	}
	return err
}

// LastApplied is the last revision published (nil before the first).
func (p *Pipeline) LastApplied() *Applied {
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	return p.last
}

// Published is the revision rev among the last ones published (nil when
// it is not kept): the xDS server may have rolled the proxies back from
// LastApplied to an earlier one, whose model the controller needs (its
// NetworkPolicies).
func (p *Pipeline) Published(rev string) *Applied {
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	for i := len(p.published) - 1; i >= 0; i-- {
		if a := p.published[i]; a.Revision == rev {
			return a
		}
	}
	return nil
}

// maxPublished bounds the revisions Republish can serve again.
const maxPublished = 4

// Republish publishes revision rev again, unchanged, from the results of
// the last revisions published (a new xDS server after a restart:
// compiling is deterministic, so the proxies already have these
// versions). rev is the revision the previous server had applied — not
// necessarily the last published: the proxies may have rejected that one
// and been rolled back. An empty rev does nothing; a rev no longer kept
// is an error.
func (p *Pipeline) Republish(rev string) error {
	if rev == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if a := p.Published(rev); a != nil {
		return p.Publisher.Publish(a.Revision, a.Result)
	}
	return fmt.Errorf("republish: revision %s is not among the last %d published", rev, maxPublished)
}

// RecordFailure records a failure outside the steps (a source's) in the
// status.
func (p *Pipeline) RecordFailure(rev, step string, err error) {
	p.Publisher.RecordFailure(rev, step, err)
}
