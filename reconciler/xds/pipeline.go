package xds

import (
	"fmt"
	"time"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// VetFunc checks a loaded model before it is compiled (the policy gate).
// A non-nil error stops the revision. An error that is a schema.Errors or
// a ProblemLister keeps its positions in the status.
type VetFunc func(*mesh.Model) error

// Pipeline runs the steps of one revision in order: load (schema.Load) ->
// vet (Vet, skipped when nil) -> compile -> publish. A failure at any step
// leaves the last good revision serving and is recorded in the server's
// status with the step and the error (with file:line).
type Pipeline struct {
	Server *Server
	// Env is the environment overlay (schema.Options.Env).
	Env string
	Vet VetFunc
	// Endpoints, when set, gives the endpoints to compile with (nil
	// Endpoints: the model's static ones).
	Endpoints func(*mesh.Model) (compiler.Endpoints, error)
	// Compile holds the compiler options; Revision is set per run.
	Compile compiler.Options
	// Observe, when set, is told every step's duration and outcome
	// (package reconciler/metrics).
	Observe func(step string, took time.Duration, err error)
}

// StepError is a revision that failed at one step.
type StepError struct {
	Revision string
	Step     string // status.StepLoad, StepVet, StepCompile or StepPublish
	Err      error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("revision %s: %s: %v", e.Revision, e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// Reconcile loads the mesh repository at dir as revision rev and, if
// every step succeeds, serves it. The error is a *StepError.
func (p *Pipeline) Reconcile(dir, rev string) error {
	start := time.Now()
	observe := func(step string, err error) {
		if p.Observe != nil {
			p.Observe(step, time.Since(start), err)
		}
		start = time.Now()
	}
	fail := func(step string, err error) error {
		observe(step, err)
		if step != status.StepPublish { // Publish records its own failure
			p.Server.RecordFailure(rev, step, err)
		}
		return &StepError{Revision: rev, Step: step, Err: err}
	}
	m, err := schema.Load(dir, schema.Options{Env: p.Env, Revision: rev})
	if err != nil {
		return fail(status.StepLoad, err)
	}
	observe(status.StepLoad, nil)
	if p.Vet != nil {
		if err := p.Vet(m); err != nil {
			return fail(status.StepVet, err)
		}
		observe(status.StepVet, nil)
	}
	var eps compiler.Endpoints
	if p.Endpoints != nil {
		if eps, err = p.Endpoints(m); err != nil {
			return fail(status.StepCompile, fmt.Errorf("endpoints: %w", err))
		}
	}
	opts := p.Compile
	opts.Revision = rev
	res, err := compiler.Compile(m, eps, opts)
	if err != nil {
		return fail(status.StepCompile, err)
	}
	observe(status.StepCompile, nil)
	if err := p.Server.Publish(rev, res); err != nil {
		return fail(status.StepPublish, err)
	}
	observe(status.StepPublish, nil)
	return nil
}
