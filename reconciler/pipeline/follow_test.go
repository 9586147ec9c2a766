package pipeline_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/pipeline/source"
	"github.com/weft-dev/weft/reconciler/xds"
)

// countingPublisher is the real server, counting the failures recorded
// per step.
type countingPublisher struct {
	*xds.Server
	mu       sync.Mutex
	failures map[string]int
}

func (c *countingPublisher) RecordFailure(rev, step string, err error) {
	c.mu.Lock()
	c.failures[step]++
	c.mu.Unlock()
	c.Server.RecordFailure(rev, step, err)
}

func (c *countingPublisher) count(step string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failures[step]
}

// follow runs a follower of a real directory watcher on dir.
func follow(t *testing.T, dir string, gate *pipeline.Gate) (*countingPublisher, <-chan pipeline.Event, func() error) {
	t.Helper()
	pub := &countingPublisher{Server: newServer(), failures: map[string]int{}}
	events := make(chan pipeline.Event, 64)
	f := &pipeline.Follower{
		Source:   &source.Dir{Path: dir, Poll: 10 * time.Millisecond},
		Pipeline: &pipeline.Pipeline{Gate: gate, Publisher: pub},
		Backoff:  pipeline.Backoff{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond},
		Report:   func(ev pipeline.Event) { events <- ev },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return pub, events, stop
}

func next(t *testing.T, events <-chan pipeline.Event, what string) pipeline.Event {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(30 * time.Second):
		t.Fatalf("no event: %s", what)
	}
	return pipeline.Event{}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFollowerRetriesSourceErrors: a directory that cannot be read is a
// source error: retried with backoff, reported once, recorded in the
// status (step fetch) every time, the served revision unchanged; once the
// directory is back, its revision is served again. Only the end of the
// context stops the follower.
func TestFollowerRetriesSourceErrors(t *testing.T) {
	dir := t.TempDir() + "/mesh"
	writeMesh(t, dir, services)
	pub, events, stop := follow(t, dir, &pipeline.Gate{})
	first := next(t, events, "first revision served")
	if first.Err != nil || !strings.HasPrefix(first.Revision, "dir@") {
		t.Fatalf("first event %+v, want a dir@ revision served", first)
	}

	if err := os.Rename(dir, dir+".away"); err != nil {
		t.Fatal(err)
	}
	ev := next(t, events, "the source error")
	if ev.Step != status.StepFetch || ev.RetryIn == 0 || !strings.Contains(ev.Err.Error(), "no such file or directory") {
		t.Fatalf("event %+v, want a fetch error (no such file or directory) to be retried", ev)
	}
	waitFor(t, "the source retried three times", func() bool { return pub.count(status.StepFetch) >= 3 })
	// A scan that raced the rename may have failed with another text
	// (open cue.mod instead of lstat): that is a second distinct error.
	// From then on the same error is retried without being reported.
	for len(events) > 0 {
		<-events
	}
	n0 := pub.count(status.StepFetch)
	waitFor(t, "the source retried three more times", func() bool { return pub.count(status.StepFetch) >= n0+3 })
	if n := len(events); n != 0 {
		t.Errorf("%d more events for the same error, want it reported once: %v", n, (<-events).Err)
	}
	st := pub.Status()
	if st.Revision != first.Revision || st.LastAttempt.Step != status.StepFetch || !strings.Contains(st.LastAttempt.Error, "no such file") {
		t.Errorf("status: revision %q, last attempt %+v; want %s served and the fetch error", st.Revision, st.LastAttempt, first.Revision)
	}

	if err := os.Rename(dir+".away", dir); err != nil {
		t.Fatal(err)
	}
	ev = next(t, events, "the directory served again")
	if ev.Err != nil || ev.Revision != first.Revision {
		t.Errorf("event %+v, want %s served again", ev, first.Revision)
	}
	if a := pub.Status().LastAttempt; a.Error != "" || a.Revision != first.Revision {
		t.Errorf("last attempt %+v, want %s served", a, first.Revision)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

// TestFollowerRetriesRevision: a revision over its time limit is
// retryable: the follower tries the same revision again with backoff
// (reported once) and serves it once it fits; a stalling revision is not
// retried.
func TestFollowerRetriesRevision(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, services)
	gate := &pipeline.Gate{}
	pub, events, _ := follow(t, dir, gate)
	first := next(t, events, "first revision served")
	if first.Err != nil {
		t.Fatal(first.Err)
	}

	gate.SetLimits(pipeline.Limits{Timeout: time.Nanosecond})
	writeAtomic(t, dir, "extra.cue", "package mesh\n// a change\n")
	ev := next(t, events, "the timeout")
	var te *pipeline.TimeoutError
	if !errors.As(ev.Err, &te) || ev.Step != status.StepLoad || ev.RetryIn == 0 {
		t.Fatalf("event %+v, want a load timeout to be retried", ev)
	}
	waitFor(t, "the revision retried", func() bool { return pub.count(status.StepLoad) >= 3 })
	if n := len(events); n != 0 {
		t.Errorf("%d more events for the same timeout, want it reported once", n)
	}
	if st := pub.Status(); st.Revision != first.Revision {
		t.Errorf("served %q, want %s still", st.Revision, first.Revision)
	}
	gate.SetLimits(pipeline.Limits{})
	ev = next(t, events, "the retried revision served")
	if ev.Err != nil || ev.Revision != pub.Status().Revision || ev.Revision == first.Revision {
		t.Errorf("event %+v, want the new revision served", ev)
	}

	writeAtomic(t, dir, "extra.cue", "package mesh\nmesh: services: nope: ports: http: port: \"x\"\n")
	ev = next(t, events, "the stalling revision")
	if !pipeline.IsStalling(ev.Err) || ev.RetryIn != 0 {
		t.Errorf("event %+v, want a stalling load error, not retried", ev)
	}
}

// TestGitExportBoundedInput: the loader's rules hold for git exports as
// for directories: a committed link to /dev/zero and a committed link out
// of the module (git stores links, and git archive | tar recreates them)
// stall the commit at load, naming the file.
func TestGitExportBoundedInput(t *testing.T) {
	repo := t.TempDir()
	gitRun(t, repo, "init", "-q", "-b", "main")
	writeMesh(t, repo, services)
	if err := os.Symlink("/dev/zero", repo+"/zero.cue"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", repo+"/host.cue"); err != nil {
		t.Fatal(err)
	}
	gitRun(t, repo, "add", "-A")
	gitRun(t, repo, "commit", "-q", "-m", "links")
	src := &source.GitBranch{Repo: repo, Branch: "main", Poll: 10 * time.Millisecond, ExportDir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rev, err := src.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rev.Done()
	srv := newServer()
	_, err = (&pipeline.Pipeline{Gate: &pipeline.Gate{}, Publisher: srv}).Reconcile(ctx, rev)
	if !pipeline.IsStalling(err) || pipeline.StepOf(err) != status.StepLoad {
		t.Fatalf("Reconcile = %v, want a stalling load error", err)
	}
	for _, want := range []string{"zero.cue: is a symbolic link to /dev/zero, outside the CUE module", "host.cue: is a symbolic link to /etc/hostname"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if st := srv.Status(); st.Revision != "" || st.LastAttempt.Revision != rev.Name || st.LastAttempt.Step != status.StepLoad {
		t.Errorf("status %+v, want nothing served and %s failed at load", st, rev.Name)
	}
}

func gitRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// writeAtomic writes a file that the directory watcher sees whole: it is
// written elsewhere and renamed into dir.
func writeAtomic(t *testing.T, dir, name, body string) {
	t.Helper()
	tmp := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}
