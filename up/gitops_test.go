package up_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-dev/weft/up"
)

func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// gitMesh is a repository holding splitMesh with reviews at v1/v2 = a/b.
func splitWith(v1, v2 int) string {
	return strings.Replace(splitMesh, "to: {v1: 90, v2: 10}", fmt.Sprintf("to: {v1: %d, v2: %d}", v1, v2), 1)
}

func newRepo(t testing.TB) string {
	dir := t.TempDir()
	git(t, dir, "init", "-q", "-b", "main")
	writeMesh(t, dir, splitWith(100, 0))
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "initial")
	return dir
}

// commit writes mesh.cue's services and commits; it returns the
// revision name weft up gives the commit.
func commit(t testing.TB, repo, services string) string {
	t.Helper()
	writeMesh(t, repo, services)
	git(t, repo, "commit", "-q", "-am", "change")
	return "main@sha1:" + git(t, repo, "rev-parse", "--short=12", "HEAD")
}

// waitServedAndAcked waits until rev is served and every proxy has ACKed
// its class's version of it.
func waitServedAndAcked(ctx context.Context, m *up.Mesh, rev string, nodes int) error {
	for {
		srv := m.Server()
		ch := srv.Changed()
		st := srv.Status()
		if st.Revision == rev {
			acked := 0
			for _, p := range st.Proxies {
				if p.Connected && p.InSync && p.AckedVersion == st.Classes[p.Class] {
					acked++
				}
			}
			if acked == nodes {
				return nil
			}
		}
		select {
		case <-ch:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("revision %s not served and ACKed: %w (served %s)", rev, ctx.Err(), st.Revision)
		}
	}
}

func v2Share(t *testing.T, tm *testMesh, n int) float64 {
	c := tm.client("frontend-v1")
	var mu sync.Mutex
	v2, bad := 0, 0
	parallel(n, 8, func(int) {
		code, a, _, err := get(c, "http://reviews/", nil)
		mu.Lock()
		defer mu.Unlock()
		if err != nil || code != 200 || a == nil {
			bad++
		} else if a.Version == "v2" {
			v2++
		}
	})
	if bad > 0 {
		t.Errorf("%d of %d requests failed", bad, n)
	}
	return 100 * float64(v2) / float64(n)
}

// The GitOps loop: commits that change the split reach every Envoy; a
// commit that does not load leaves the previous revision serving and the
// status names file:line.
func TestGitOpsLoop(t *testing.T) {
	repo := newRepo(t)
	tm := startMesh(t, repo, func(o *up.Options) { o.Poll = 100 * time.Millisecond })
	nodes := len(tm.Instances())

	var lat []time.Duration
	weights := [][2]int{{50, 50}, {0, 100}, {90, 10}, {100, 0}, {20, 80}, {60, 40}, {10, 90}, {70, 30}, {30, 70}, {50, 50}}
	for _, w := range weights {
		rev := commit(t, repo, splitWith(w[0], w[1]))
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := waitServedAndAcked(ctx, tm.Mesh, rev, nodes)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("commit -> all %d proxies ACKed over %d commits (poll 100ms): p50 %s, max %s", nodes, len(lat), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	if share := v2Share(t, tm, 400); share < 40 || share > 60 {
		t.Errorf("after the 50/50 commit v2 got %.1f%%", share)
	}

	// A commit with a CUE error.
	good := tm.Server().Revision()
	broken := strings.Replace(splitWith(50, 50), "port: 9080", `port: "9080"`, 1)
	bad := commit(t, repo, broken)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tm.waitAttempted(ctx, bad, "the broken commit")
	if got := tm.Server().Revision(); got != good {
		t.Errorf("served revision %s after a broken commit, want %s", got, good)
	}
	st, err := up.FetchStatus(ctx, tm.StatusAddr())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	up.PrintStatus(&out, st, time.Now())
	t.Logf("weft status after the broken commit:\n%s", out.String())
	if !regexp.MustCompile(`mesh\.cue:\d+`).MatchString(out.String()) || !strings.Contains(out.String(), bad) {
		t.Errorf("weft status does not show the broken revision with mesh.cue:line:\n%s", out.String())
	}
	if share := v2Share(t, tm, 200); share < 35 || share > 65 {
		t.Errorf("the previous revision (50/50) stopped serving: v2 %.1f%%", share)
	}
}

// BenchmarkGitOpsLoop: one op is a commit that changes the split, until
// every proxy (3 Envoys) has ACKed it, with weft up's default 1s poll of
// the branch.
func BenchmarkGitOpsLoop(b *testing.B) {
	repo := newRepo(b)
	tm := startMesh(b, repo, func(o *up.Options) { o.Poll = time.Second })
	nodes := len(tm.Instances())
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		v2 := (i*37 + 10) % 101
		b.StopTimer()
		rev := commit(b, repo, splitWith(100-v2, v2))
		b.StartTimer()
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := waitServedAndAcked(ctx, tm.Mesh, rev, nodes)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max-ms")
}

// A plain directory is watched: an edit that adds a replica starts its
// instance (agent + Envoy + app) and the callers' EDS gets it; an edit
// that removes it stops it. The Envoys use delta xDS here.
func TestWatchDirScale(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, splitWith(0, 100))
	tm := startMesh(t, dir, func(o *up.Options) { o.Poll = 100 * time.Millisecond; o.DeltaXDS = true })
	if n := len(tm.Instances()); n != 3 {
		t.Fatalf("%d instances, want 3", n)
	}
	scaled := strings.Replace(splitWith(0, 100), `v2: labels: version: "v2"`, `v2: {labels: version: "v2", replicas: 2}`, 1)
	writeMesh(t, dir, scaled)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for tm.Instance("reviews-v2-1") == nil {
		select {
		case <-ctx.Done():
			t.Fatalf("reviews-v2-1 never started:\n%s", tm.out)
		case <-time.After(50 * time.Millisecond):
		}
	}
	tm.waitReady(ctx)
	seen := map[string]int{}
	c := tm.client("frontend-v1")
	for i := 0; i < 100; i++ {
		if code, a, _, err := get(c, "http://reviews/", nil); err == nil && code == 200 && a != nil {
			seen[a.Instance]++
		}
	}
	t.Logf("after scaling reviews v2 to 2 replicas: %v", seen)
	if seen["reviews-v2-0"] == 0 || seen["reviews-v2-1"] == 0 || seen["reviews-v2-0"]+seen["reviews-v2-1"] != 100 {
		t.Errorf("requests by instance %v, want both v2 replicas and no failure", seen)
	}
	writeMesh(t, dir, splitWith(0, 100))
	for tm.Instance("reviews-v2-1") != nil {
		select {
		case <-ctx.Done():
			t.Fatal("reviews-v2-1 never stopped")
		case <-time.After(50 * time.Millisecond):
		}
	}
	tm.waitReady(ctx)
	for i := 0; i < 50; i++ {
		if code, a, _, err := get(c, "http://reviews/", nil); err != nil || code != 200 || a == nil || a.Instance != "reviews-v2-0" {
			t.Fatalf("after scaling down: %d %v %v", code, a, err)
		}
	}
}
