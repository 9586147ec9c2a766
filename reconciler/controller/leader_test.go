package controller_test

import (
	"testing"

	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/controller"
)

// TestNewLeaderWritesStatusAtOnce: two replicas with leader election. A
// real Envoy connects to the follower, which serves it but does not
// write: the Mesh's status counts the leader's proxies (none). When the
// leader stops, the follower is elected and requeues the Mesh at once,
// so the status counts its Envoy without waiting for the Mesh's interval
// (an hour) or another event.
func TestNewLeaderWritesStatusAtOnce(t *testing.T) {
	le := controller.LeaderElection{Enabled: true, ID: "weft-test-leader"}
	p := startPlane(t, controller.Options{LeaderElection: le})
	rev := p.commit(fixture{route: "one"}.files(), "one")
	p.gitRepository(rev)
	if err := p.c.Create(p.ctx, newMesh("shop")); err != nil {
		t.Fatal(err)
	}
	p.waitMesh("shop", "Ready, written by the leader", ready(rev))

	stopLeader := p.stopFirst
	p.ctrl, _ = p.runController(controller.Options{LeaderElection: le}, "127.0.0.1:0")
	envoy := p.startEnvoy("frontend-1", "frontend-v1", false)
	p.waitXDS("the follower serves the Envoy the revision", acked(rev, envoy.id))
	if m := p.mesh("shop"); m.Status.Proxies == nil || m.Status.Proxies.Total != 0 {
		t.Fatalf("the follower wrote the status: proxies %+v", m.Status.Proxies)
	}

	stopLeader()
	m := p.waitMesh("shop", "the new leader's proxies counted", func(m *meshv1.Mesh) bool {
		return ready(rev)(m) && m.Status.Proxies != nil && m.Status.Proxies.Total == 1 && m.Status.Proxies.InSync == 1
	})
	if m.Status.Proxies.Summary != "1/1" {
		t.Errorf("proxies summary %q, want 1/1", m.Status.Proxies.Summary)
	}
}
