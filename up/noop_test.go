package up_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// An edit that changes no behaviour — a comment above everything, fields
// written in another order — is served as a new revision, and Envoy
// modifies, adds, removes and drains no listener and no cluster.
func TestNoOpEditChangesNothingInEnvoy(t *testing.T) {
	const services = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["reviews"]
		}
		reviews: {
			ports: http: port: 9080
			versions: {
				v1: labels: version: "v1"
				v2: labels: version: "v2"
			}
			timeout: "3s"
			rateLimit: requestsPerSecond: 100
		}
`
	// The same services, reordered and commented, a few lines lower.
	const reordered = `
		// reviews answers for the product page.
		reviews: {
			rateLimit: requestsPerSecond: 100

			timeout: "3s"
			versions: {
				v2: labels: version: "v2"
				v1: labels: version: "v1"
			}
			ports: http: port: 9080
		}
		// frontend is the edge.
		frontend: {
			calls: ["reviews"]
			versions: v1: labels: version: "v1"
			ports: http: port: 8080
			edge: true
		}
`
	dir := t.TempDir()
	writeMesh(t, dir, services)
	tm := startMesh(t, dir, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	counters := []string{
		"listener_manager.listener_modified",
		"listener_manager.listener_added",
		"listener_manager.listener_removed",
		"listener_manager.total_listeners_draining",
		"cluster_manager.cluster_modified",
		"cluster_manager.cluster_added",
		"cluster_manager.cluster_removed",
	}
	before := map[string]int64{}
	for _, in := range tm.Instances() {
		for _, c := range counters {
			before[in.NodeID+" "+c] = envoyStat(t, &in, c)
		}
	}
	rev := tm.Server().Revision()

	writeMesh(t, dir, reordered)
	b, err := os.ReadFile(filepath.Join(dir, "mesh.cue"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mesh.cue"), append([]byte("// The shop's mesh.\n\n"), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	for tm.Server().Revision() == rev {
		select {
		case <-ctx.Done():
			t.Fatalf("the edited revision was never served; last attempt %+v", tm.Server().Status().LastAttempt)
		case <-time.After(50 * time.Millisecond):
		}
	}
	tm.waitReady(ctx)
	// Give Envoy time to act on what it received (a drain would show now).
	time.Sleep(500 * time.Millisecond)

	for _, in := range tm.Instances() {
		for _, c := range counters {
			if got, was := envoyStat(t, &in, c), before[in.NodeID+" "+c]; got != was {
				t.Errorf("%s: %s went from %d to %d after a no-op edit", in.NodeID, c, was, got)
			}
		}
	}
}
