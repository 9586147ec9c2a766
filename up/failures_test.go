package up_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/up"
)

// waitStatus polls the status until cond holds.
func (tm *testMesh) waitStatus(ctx context.Context, what string, cond func(st status.Status) bool) status.Status {
	tm.t.Helper()
	for {
		st := tm.Server().Status()
		if cond(st) {
			return st
		}
		select {
		case <-ctx.Done():
			tm.t.Fatalf("never: %s\nlast attempt: %+v\noutput:\n%s", what, st.LastAttempt, tm.out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// serves checks that the mesh still answers: frontend reaches reviews.
func (tm *testMesh) serves(what string) {
	tm.t.Helper()
	c := tm.client("frontend-v1")
	for i := 0; i < 10; i++ {
		if code, a, _, err := get(c, "http://reviews/", nil); err != nil || code != 200 || a == nil {
			tm.t.Fatalf("%s: the mesh stopped serving: %d %v %v", what, code, a, err)
		}
	}
}

func (tm *testMesh) statusText(ctx context.Context) string {
	tm.t.Helper()
	st, err := up.FetchStatus(ctx, tm.StatusAddr())
	if err != nil {
		tm.t.Fatal(err)
	}
	var b bytes.Buffer
	up.PrintStatus(&b, st, time.Now())
	return b.String()
}

// Issue 7 item 7: when a commit of the followed branch cannot be exported
// (here one of its objects is missing from the repository: git archive
// fails, as it does on a corrupted or partially fetched repository), the
// workloads keep serving the last good revision, weft status shows the
// export failure, weft up prints it once however often it retries, and
// the next good commit is served.
func TestGitExportFailureKeepsServing(t *testing.T) {
	repo := newRepo(t)
	tm := startMesh(t, repo, func(o *up.Options) { o.Poll = 100 * time.Millisecond })
	nodes := len(tm.Instances())
	good := tm.Server().Revision()

	// The commit is made without moving the branch, its blob taken away,
	// and only then the branch moved: weft up never sees it whole.
	writeMesh(t, repo, splitWith(50, 50))
	git(t, repo, "add", "mesh.cue")
	sha := git(t, repo, "commit-tree", git(t, repo, "write-tree"), "-p", "HEAD", "-m", "broken")
	broken := "main@sha1:" + sha[:12]
	blob := git(t, repo, "rev-parse", sha+":mesh.cue")
	obj := filepath.Join(repo, ".git", "objects", blob[:2], blob[2:])
	if err := os.Rename(obj, obj+".away"); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "update-ref", "refs/heads/main", sha)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := tm.waitStatus(ctx, "the export failure recorded", func(st status.Status) bool {
		return st.LastAttempt != nil && st.LastAttempt.Revision == broken && st.LastAttempt.Step == status.StepExport
	}).LastAttempt
	tm.waitStatus(ctx, "the export retried", func(st status.Status) bool {
		return st.LastAttempt.Step == status.StepExport && st.LastAttempt.At.After(first.At)
	})
	text := tm.statusText(ctx)
	t.Logf("weft status while the export fails:\n%s", text)
	if !strings.Contains(text, "revision: "+good) || !strings.Contains(text, "last attempt: "+broken+" FAILED at export") || !strings.Contains(text, "git archive") {
		t.Errorf("weft status does not show %s served and the export of %s failing", good, broken)
	}
	if n := strings.Count(tm.out.String(), "weft up: export failed"); n != 1 {
		t.Errorf("the export failure was printed %d times, want once:\n%s", n, tm.out)
	}
	tm.serves("while the export fails")
	if len(tm.Instances()) != nodes {
		t.Errorf("%d instances while the export fails, want %d", len(tm.Instances()), nodes)
	}

	next := commit(t, repo, splitWith(0, 100))
	if err := waitServedAndAcked(ctx, tm.Mesh, next, nodes); err != nil {
		t.Fatal(err)
	}
	if share := v2Share(t, tm, 50); share != 100 {
		t.Errorf("after the next good commit v2 got %.0f%%, want 100%%", share)
	}
}

// Issue 8 item 5: bounded input. Every revision over a limit — a link to
// /dev/zero, a FIFO, a link out of the module, an @embed of a file outside
// it, a file over the per-file limit, a source over the total, a revision
// over its time limit — fails with a message naming the file (or the
// limit), and the last good revision keeps serving; once the offending
// change is undone, the mesh serves it again.
func TestBoundedInputKeepsServing(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, splitWith(100, 0))
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	outsideCUE := filepath.Join(outside, "x.cue")
	outsideTxt := filepath.Join(outside, "host.txt")
	for _, f := range []string{outsideCUE, outsideTxt} {
		if err := os.WriteFile(f, []byte("package mesh\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	limits := pipeline.Limits{Limits: schema.Limits{MaxFileBytes: 64 << 10, MaxTotalBytes: 128 << 10}}
	gate := &pipeline.Gate{NoPolicies: true, Limits: limits}
	tm := startMesh(t, dir, func(o *up.Options) { o.Poll = 100 * time.Millisecond; o.Gate = gate })
	// What is served is compared by content (the snapshot hashes): a
	// change made in several writes may be seen half done by the watcher,
	// as a revision whose configuration is the same.
	good := served(tm.Server().Status())

	comment := func(kb int) string { return "package mesh\n// " + strings.Repeat("x", kb<<10) + "\n" }
	link := func(target, name string) func() error {
		return func() error { return os.Symlink(target, filepath.Join(dir, name)) }
	}
	cases := []struct {
		name  string
		add   func() error
		files []string // removed to undo
		undo  func()
		want  []string
	}{{
		name: "link to /dev/zero", add: link("/dev/zero", "zero.cue"), files: []string{"zero.cue"},
		want: []string{"zero.cue: is a symbolic link to /dev/zero, outside the CUE module"},
	}, {
		name:  "FIFO",
		add:   func() error { return syscall.Mkfifo(filepath.Join(dir, "pipe.cue"), 0o644) },
		files: []string{"pipe.cue"},
		want:  []string{"pipe.cue: is a named pipe (FIFO), not a regular file"},
	}, {
		name: "link out of the module", add: link(outsideCUE, "linked.cue"), files: []string{"linked.cue"},
		want: []string{"linked.cue: is a symbolic link to " + outsideCUE + ", outside the CUE module"},
	}, {
		name: "@embed of a file outside the module",
		add: func() error {
			if err := os.WriteFile(filepath.Join(dir, "embed.cue"), []byte("@extern(embed)\npackage mesh\nmesh: services: frontend: local: env: HOST: _ @embed(file=host.txt,type=text)\n"), 0o644); err != nil {
				return err
			}
			return link(outsideTxt, "host.txt")()
		},
		files: []string{"embed.cue", "host.txt"},
		want:  []string{"embed.cue:3:", "@embed of host.txt: the file is a symbolic link to " + outsideTxt},
	}, {
		name:  "file over the limit",
		add:   func() error { return os.WriteFile(filepath.Join(dir, "big.cue"), []byte(comment(100)), 0o644) },
		files: []string{"big.cue"},
		want:  []string{"big.cue: is 100.02 KiB, over the limit of 64 KiB per file"},
	}, {
		name: "source over the limit",
		add: func() error {
			for _, n := range []string{"a.cue", "b.cue", "c.cue"} {
				if err := os.WriteFile(filepath.Join(dir, n), []byte(comment(50)), 0o644); err != nil {
					return err
				}
			}
			return nil
		},
		files: []string{"a.cue", "b.cue", "c.cue"},
		want:  []string{"over the limit of 128 KiB for the whole source"},
	}, {
		name: "revision over its time limit",
		add: func() error {
			gate.SetLimits(pipeline.Limits{Limits: limits.Limits, Timeout: time.Nanosecond})
			return os.WriteFile(filepath.Join(dir, "touch.cue"), []byte("package mesh\n"), 0o644)
		},
		files: []string{"touch.cue"},
		undo:  func() { gate.SetLimits(limits) },
		want:  []string{"did not finish within the revision time limit of 1ns (--revision-timeout)"},
	}}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if err := c.add(); err != nil {
			t.Fatal(err)
		}
		st := tm.waitStatus(ctx, c.name+" refused", func(st status.Status) bool {
			if st.LastAttempt == nil || st.LastAttempt.Error == "" {
				return false
			}
			for _, w := range c.want {
				if !strings.Contains(st.LastAttempt.Error, w) {
					return false
				}
			}
			return true
		})
		if got := served(st); got != good {
			t.Errorf("%s: serving %s, want the last good configuration %s", c.name, got, good)
		}
		t.Logf("%s: %s at %s: %s", c.name, st.LastAttempt.Revision, st.LastAttempt.Step, strings.SplitN(st.LastAttempt.Error, "\n", 2)[0])
		tm.serves(c.name)
		if c.undo != nil {
			c.undo()
		}
		for _, f := range c.files {
			if err := os.Remove(filepath.Join(dir, f)); err != nil {
				t.Fatal(err)
			}
		}
		tm.waitStatus(ctx, c.name+" undone, served again", func(st status.Status) bool {
			return st.LastAttempt != nil && st.LastAttempt.Error == "" && st.LastAttempt.Revision == st.Revision && served(st) == good
		})
		cancel()
	}
}

// served is the configuration served: each class's content hash (the part
// of its snapshot version after the revision).
func served(st status.Status) string {
	var parts []string
	for class, v := range st.Classes {
		parts = append(parts, class+"="+v[strings.LastIndex(v, "/")+1:])
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
