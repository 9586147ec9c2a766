package up_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/up"
)

const gatedMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["reviews"]
			timeout: "5s"
			rateLimit: {requestsPerSecond: 100, burst: 200}
		}
		reviews: {
			ports: http: port: 9080
			versions: {
				v1: labels: version: "v1"
				v2: labels: version: "v2"
			}
			routes: {
				split: {
					match: path: prefix: "/"
					to: {v1: 100, v2: 0}
					timeout: "2s"
				}
			}
		}
`

// With the policy gate of weft vet: a commit that a policy denies leaves
// the previous revision serving, and the status names the rule and the
// file:line.
func TestPolicyDenyCommit(t *testing.T) {
	repo := t.TempDir()
	git(t, repo, "init", "-q", "-b", "main")
	writeMesh(t, repo, gatedMesh)
	git(t, repo, "add", ".")
	git(t, repo, "commit", "-q", "-m", "initial")
	tm := startMesh(t, repo, func(o *up.Options) { o.Poll = 100 * time.Millisecond; o.Gate = &pipeline.Gate{} })
	good := tm.Server().Revision()

	// 50/50 and no timeout on the route: route_timeout denies it.
	bad := commit(t, repo, strings.Replace(strings.Replace(gatedMesh, `timeout: "2s"`, "", 1), "to: {v1: 100, v2: 0}", "to: {v1: 50, v2: 50}", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tm.waitAttempted(ctx, bad, "the denied commit")
	st, err := up.FetchStatus(ctx, tm.StatusAddr())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	up.PrintStatus(&out, st, time.Now())
	t.Logf("weft status after the denied commit:\n%s", out.String())
	if st.Revision != good || st.LastAttempt.Step != "vet" || !strings.Contains(out.String(), "route_timeout") || !strings.Contains(out.String(), "mesh.cue:") {
		t.Errorf("want %s still served and the vet failure with route_timeout at mesh.cue:line", good)
	}
	c := tm.client("frontend-v1")
	for i := 0; i < 50; i++ {
		if code, a, _, err := get(c, "http://reviews/", nil); err != nil || code != 200 || a == nil || a.Version != "v1" {
			t.Fatalf("the previous revision (100%% v1) is not serving: %d %v %v", code, a, err)
		}
	}
}
