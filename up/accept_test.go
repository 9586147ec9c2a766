package up_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/up"
)

// A commit holding a value Envoy would reject (a Host header edit) is
// refused by the compiler's acceptance gate: the previous revision keeps
// serving, no proxy receives (or NACKs) anything, and the status names the
// field with its file:line.
func TestAcceptanceGateCommit(t *testing.T) {
	repo := t.TempDir()
	git(t, repo, "init", "-q", "-b", "main")
	writeMesh(t, repo, gatedMesh)
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "initial")
	tm := startMesh(t, repo, func(o *up.Options) { o.Poll = 100 * time.Millisecond })
	good := tm.Server().Revision()

	bad := commit(t, repo, strings.Replace(gatedMesh, "routes: {", "headers: request: set: Host: \"reviews.internal\"\n\t\t\troutes: {", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tm.waitAttempted(ctx, bad, "the commit with a Host header edit")
	st, err := up.FetchStatus(ctx, tm.StatusAddr())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	up.PrintStatus(&out, st, time.Now())
	t.Logf("weft status after the refused commit:\n%s", out.String())
	found := false
	if st.LastAttempt != nil {
		for _, p := range st.LastAttempt.Problems {
			found = found || (p.Path == "mesh.services.reviews.headers.request.set.Host" && p.File == "mesh.cue" && p.Line > 0 && p.Fix != "")
		}
	}
	if st.Revision != good || st.LastAttempt == nil || st.LastAttempt.Step != "compile" || !found ||
		!strings.Contains(out.String(), "mesh.cue:") || !strings.Contains(out.String(), "Host header") {
		t.Errorf("want %s still served and the compile step's gate finding (path, mesh.cue:line, fix)", good)
	}
	c := tm.client("frontend-v1")
	for i := 0; i < 20; i++ {
		if code, a, _, err := get(c, "http://reviews/", nil); err != nil || code != 200 || a == nil || a.Version != "v1" {
			t.Fatalf("the previous revision is not serving: %d %v %v", code, a, err)
		}
	}
}
