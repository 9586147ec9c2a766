package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"time"

	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/reconciler/api/status"
)

// StallingError is a revision that failed in a way that trying the same
// revision again cannot change: a CUE or cross-reference error, a file
// the loader refuses or that is over the limits, a policy deny or a
// broken policy, a compile or acceptance error. The source has to bring
// a new revision. It is Flux's Stalled condition (Ready=False,
// Stalled=True, no requeue).
type StallingError struct {
	// Revision is the revision's name, Step the step that failed
	// (status.StepLoad, StepVet, StepCompile or StepAccept).
	Revision, Step string
	Err            error
}

func (e *StallingError) Error() string { return stepText(e.Revision, e.Step, e.Err) }
func (e *StallingError) Unwrap() error { return e.Err }

// RetryableError is a failure that a later attempt may not have: a source
// that cannot fetch or export (git failing, an unreadable directory), a
// revision over its time limit, a publish that failed. Flux requeues it
// with a backoff (Ready=False, Reconciling); Follower does the same.
type RetryableError struct {
	// Revision is the revision's name, or, for a failure to fetch one,
	// what the source knows (a branch). Step is the step that failed
	// (status.StepFetch, StepExport, StepLoad, ... StepPublish).
	Revision, Step string
	Err            error
}

func (e *RetryableError) Error() string { return stepText(e.Revision, e.Step, e.Err) }
func (e *RetryableError) Unwrap() error { return e.Err }

// stepText is "revision R: STEP: error", without the step twice when the
// error already starts with it (the xDS server's "publish: ..." errors).
func stepText(rev, step string, err error) string {
	msg := strings.TrimPrefix(err.Error(), step+": ")
	if rev == "" {
		return fmt.Sprintf("%s: %s", step, msg)
	}
	return fmt.Sprintf("revision %s: %s: %s", rev, step, msg)
}

// Retryable wraps err, a failure of step for revision rev, as a
// *RetryableError. Sources return their errors so.
func Retryable(rev, step string, err error) error {
	return &RetryableError{Revision: rev, Step: step, Err: err}
}

// IsRetryable reports whether err (anywhere in its chain) is a
// *RetryableError.
func IsRetryable(err error) bool {
	var re *RetryableError
	return errors.As(err, &re)
}

// IsStalling reports whether err (anywhere in its chain) is a
// *StallingError.
func IsStalling(err error) bool {
	var se *StallingError
	return errors.As(err, &se)
}

// StepOf is the step a pipeline error names ("" for any other error).
func StepOf(err error) string {
	var se *StallingError
	if errors.As(err, &se) {
		return se.Step
	}
	var re *RetryableError
	if errors.As(err, &re) {
		return re.Step
	}
	return ""
}

// TimeoutError is a revision that did not finish within Limits.Timeout.
// It unwraps to context.DeadlineExceeded.
type TimeoutError struct {
	Limit time.Duration
	// Setting names the limit for people (default "--revision-timeout";
	// the controller's is a Mesh's spec.timeout).
	Setting string
	// Abandoned is set when a CUE evaluation was still running: it cannot
	// be interrupted and goes on in the background until it ends (see
	// package doc). Waited is set when the time went waiting for such an
	// evaluation of an earlier revision to end.
	Abandoned, Waited bool
}

func (e *TimeoutError) Error() string {
	setting := e.Setting
	if setting == "" {
		setting = "--revision-timeout"
	}
	s := fmt.Sprintf("did not finish within the revision time limit of %s (%s)", e.Limit, setting)
	switch {
	case e.Abandoned:
		s += "; its CUE evaluation was abandoned and runs on until it ends"
	case e.Waited:
		s += ", waiting for the abandoned CUE evaluation of an earlier revision to end"
	}
	return s
}

func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// isIO reports whether err is a failure to read files (as opposed to
// what the files say).
func isIO(err error) bool {
	var pe *fs.PathError
	var errno syscall.Errno
	return errors.As(err, &pe) || errors.As(err, &errno)
}

// policyErrors are the problems of the policies themselves, with their
// positions for the status.
type policyErrors struct{ es policies.Errors }

func (p policyErrors) Error() string { return "policies: " + p.es.Error() }
func (p policyErrors) Unwrap() error { return p.es }

func (p policyErrors) Problems() []status.Problem {
	out := make([]status.Problem, len(p.es))
	for i, e := range p.es {
		out[i] = status.Problem{File: e.Pos.File, Line: e.Pos.Line, Column: e.Pos.Column, Message: e.Msg,
			Fix: "fix the policy file: `opa check` and `opa test` on the folder show the same errors"}
	}
	return out
}

// denyError is the deny findings of a revision, with their positions for
// the status.
type denyError []policies.Finding

func (d denyError) Error() string {
	lines := make([]string, len(d))
	for i, f := range d {
		lines[i] = f.String()
	}
	return fmt.Sprintf("%d policy deny finding(s):\n%s", len(d), strings.Join(lines, "\n"))
}

func (d denyError) Problems() []status.Problem {
	out := make([]status.Problem, len(d))
	for i, f := range d {
		out[i] = status.Problem{File: f.Pos.File, Line: f.Pos.Line, Column: f.Pos.Column, Path: f.Path,
			Message: f.Rule + ": " + f.Msg, Fix: f.Fix}
	}
	return out
}
