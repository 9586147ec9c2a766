package pipeline

import (
	"context"
	"sync"
)

// evaluator runs the loads of a Gate — CUE evaluations, which cannot be
// cancelled — where an overrun can be abandoned: run returns when ctx
// ends while the evaluation goes on in its goroutine until CUE is done.
// One evaluation at a time holds the evaluator's slot, abandoned or not,
// so overruns never pile up: the next load waits for the slot (within
// its own deadline). The cost of an overrun is one core and the
// evaluation's memory until it ends.
type evaluator struct {
	once sync.Once
	slot chan struct{}
}

// run runs f unless ctx has ended, and waits for it or for ctx. The
// error is nil when f finished, else ctx's; how says why it did not
// finish.
func (e *evaluator) run(ctx context.Context, f func()) (how overrun, err error) {
	e.once.Do(func() { e.slot = make(chan struct{}, 1) })
	if err := ctx.Err(); err != nil {
		return notStarted, err
	}
	select {
	case e.slot <- struct{}{}:
	case <-ctx.Done():
		return waited, ctx.Err()
	}
	done := make(chan struct{})
	go func() {
		defer func() { <-e.slot }()
		defer close(done)
		f()
	}()
	select {
	case <-done:
		return finished, nil
	case <-ctx.Done():
		select {
		case <-done: // finished at the same moment: keep the result
			return finished, nil
		default:
			return abandoned, ctx.Err()
		}
	}
}

// overrun says how a run ended.
type overrun int

const (
	finished   overrun = iota
	notStarted         // ctx had ended already
	waited             // ctx ended while an earlier, abandoned evaluation held the slot
	abandoned          // ctx ended while f ran; f goes on
)
