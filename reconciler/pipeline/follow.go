package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
)

// Follower runs a Pipeline on every revision of a Source until its
// context ends — `weft up`'s loop; the Kubernetes controller requeues
// from the same typed errors instead. Only the end of the context stops
// it:
//
//   - a source error (git failing, an export failing, an unreadable
//     directory) is recorded in the status (the last attempt, with its
//     step) and retried after Backoff; the last good revision keeps
//     serving;
//   - a revision that fails retryably (over its time limit, a publish
//     that failed) is tried again after Backoff, unless a new revision
//     comes first; its directory is kept until then;
//   - a revision that stalls (a CUE error, a policy deny, ...) is dropped
//     and the follower waits for the next one.
//
// A revision's directory is cleaned up (Revision.Done) once the pipeline
// is done with it, served or not: the served model and compiled result
// stay in memory (Pipeline.LastApplied).
type Follower struct {
	Source   Source
	Pipeline *Pipeline
	// Backoff spaces retries (zero fields: DefaultBackoff's); consecutive
	// failures lengthen it, a served revision resets it.
	Backoff Backoff
	// Served, when set, is called after each revision that was published
	// (`weft up` starts and stops workloads there), before Report.
	Served func(ctx context.Context, a *Applied)
	// Report, when set, is told what happened, for people. A failure
	// identical to the previous one reported (same step, same error) is
	// not reported again; the status records every attempt.
	Report func(Event)
}

// Event is a revision served, or a failure.
type Event struct {
	// Revision is the revision's name (for a source error, what the
	// source knows, e.g. its branch).
	Revision string
	// Step and Err say what failed (Err nil: served).
	Step string
	Err  error
	// RetryIn is when the same revision, or the source, is tried again
	// (0: it is not; a new revision is awaited).
	RetryIn time.Duration
	// Took is how long a served revision took, from load to publish.
	Took time.Duration
	// Applied is the revision served.
	Applied *Applied
}

// Run follows the source until ctx ends and returns ctx's error.
func (f *Follower) Run(ctx context.Context) error {
	var (
		pending  *Revision // failed retryably: tried again at its delay, unless a new one comes
		failures int       // consecutive retryable failures
		delay    time.Duration
		last     string // the failure reported last
	)
	defer func() {
		if pending != nil {
			pending.Done()
		}
	}()
	report := func(ev Event) {
		key := ""
		if ev.Err != nil {
			key = ev.Step + "\x00" + ev.Err.Error()
			if key == last {
				return
			}
		}
		last = key
		if f.Report != nil {
			f.Report(ev)
		}
	}
	backoff := func() time.Duration {
		d := f.Backoff.Delay(failures)
		failures++
		return d
	}
	for {
		rev, retrying, err := f.next(ctx, pending, delay)
		start := time.Now()
		if ctx.Err() != nil {
			if err == nil && !retrying {
				rev.Done()
			}
			return ctx.Err()
		}
		if err != nil {
			delay = backoff()
			name, step, cause := f.sourceFailure(err)
			f.Pipeline.RecordFailure(name, step, cause)
			report(Event{Revision: name, Step: step, Err: err, RetryIn: delay})
			if pending == nil && !sleep(ctx, delay) {
				return ctx.Err()
			}
			continue
		}
		if !retrying && pending != nil {
			pending.Done() // a new revision replaces the one waiting for its retry
		}
		pending = nil
		a, err := f.Pipeline.Reconcile(ctx, rev)
		switch {
		case err == nil:
			rev.Done()
			failures, delay = 0, 0
			if f.Served != nil {
				f.Served(ctx, a)
			}
			report(Event{Revision: rev.Name, Took: time.Since(start), Applied: a})
		case ctx.Err() != nil:
			rev.Done()
			return ctx.Err()
		case IsRetryable(err):
			pending = &rev
			delay = backoff()
			report(Event{Revision: rev.Name, Step: StepOf(err), Err: err, RetryIn: delay})
		default:
			rev.Done()
			failures, delay = 0, 0
			report(Event{Revision: rev.Name, Step: StepOf(err), Err: err})
		}
	}
}

// next waits for the source's next revision; with a pending revision,
// only until its retry is due, and then returns it again (retrying).
func (f *Follower) next(ctx context.Context, pending *Revision, delay time.Duration) (rev Revision, retrying bool, err error) {
	if pending == nil {
		rev, err := f.Source.Next(ctx)
		return rev, false, err
	}
	wctx, cancel := context.WithTimeout(ctx, delay)
	defer cancel()
	rev, err = f.Source.Next(wctx)
	if err != nil && ctx.Err() == nil && wctx.Err() != nil {
		return *pending, true, nil
	}
	return rev, false, err
}

// sourceFailure names a source's error for the status: the revision (or
// what the source knows), the step and the cause.
func (f *Follower) sourceFailure(err error) (name, step string, cause error) {
	var re *RetryableError
	if errors.As(err, &re) {
		name, step, cause = re.Revision, re.Step, re.Err
	}
	if name == "" {
		name = f.Source.String()
	}
	if step == "" {
		step = status.StepFetch
	}
	if cause == nil {
		cause = err
	}
	return name, step, cause
}

// sleep waits d or until ctx ends (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
