package xds

import (
	"context"
	"errors"

	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/schema/mesh"
)

// The reconcile pipeline moved to package reconciler/pipeline. This
// test-only adapter keeps the server's tests driving the server through
// the real pipeline (schema, no policies, compile, Server.Publish), with
// the shape they were written against.

// VetFunc checks a loaded model (the pipeline's Check step).
type VetFunc func(*mesh.Model) error

// Pipeline reconciles a directory as one revision on Server.
type Pipeline struct {
	Server *Server
	Vet    VetFunc
}

// StepError is a revision that failed at one step.
type StepError struct {
	Revision, Step string
	Err            error
}

func (e *StepError) Error() string { return e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// Reconcile runs dir as revision rev through reconciler/pipeline.
func (p *Pipeline) Reconcile(dir, rev string) error {
	pl := &pipeline.Pipeline{Gate: &pipeline.Gate{NoPolicies: true}, Publisher: p.Server}
	if p.Vet != nil {
		pl.Check = p.Vet
	}
	_, err := pl.Reconcile(context.Background(), pipeline.Revision{Name: rev, Dir: dir})
	if err == nil {
		return nil
	}
	step := pipeline.StepOf(err)
	var se *pipeline.StallingError
	var re *pipeline.RetryableError
	switch {
	case errors.As(err, &se):
		err = se.Err
	case errors.As(err, &re):
		err = re.Err
	}
	return &StepError{Revision: rev, Step: step, Err: err}
}
