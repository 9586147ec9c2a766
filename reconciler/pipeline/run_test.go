package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestEvaluatorAbandons: an evaluation that outlives its context is
// abandoned (run returns) but holds the evaluator's slot until it ends, so
// that the next evaluation starts only then; an ended context starts
// nothing. (A CUE evaluation cannot be made to last a given time; f
// stands in for one.)
func TestEvaluatorAbandons(t *testing.T) {
	var e evaluator
	release, started := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	how, err := e.run(ctx, func() { close(started); <-release })
	if how != abandoned || !errors.Is(err, context.Canceled) {
		t.Fatalf("run = %v, %v; want abandoned, context.Canceled", how, err)
	}
	if len(e.slot) != 1 {
		t.Fatal("the abandoned evaluation does not hold the slot")
	}

	second := make(chan struct{})
	result := make(chan overrun, 1)
	go func() {
		how, _ := e.run(context.Background(), func() { close(second) })
		result <- how
	}()
	close(release) // the abandoned one ends: the next may start
	<-second
	if how := <-result; how != finished {
		t.Errorf("second run: %v, want finished", how)
	}

	ended, cancel2 := context.WithCancel(context.Background())
	cancel2()
	ran := false
	if how, err := e.run(ended, func() { ran = true }); how != notStarted || err == nil || ran {
		t.Errorf("run with an ended context: %v, %v, ran %v; want notStarted and an error", how, err, ran)
	}
}

func TestTimeoutErrorText(t *testing.T) {
	for _, c := range []struct {
		err  *TimeoutError
		want string
	}{
		{&TimeoutError{Limit: time.Minute}, "did not finish within the revision time limit of 1m0s (--revision-timeout)"},
		{&TimeoutError{Limit: time.Second, Abandoned: true}, "its CUE evaluation was abandoned and runs on until it ends"},
		{&TimeoutError{Limit: time.Second, Waited: true}, "waiting for the abandoned CUE evaluation of an earlier revision to end"},
	} {
		if !strings.Contains(c.err.Error(), c.want) || !errors.Is(c.err, context.DeadlineExceeded) {
			t.Errorf("%q does not contain %q (or is not a deadline)", c.err, c.want)
		}
	}
}
