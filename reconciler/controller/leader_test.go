package controller_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/api/status"
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

// TestProxiesOfEveryReplicaCounted: two replicas with leader election
// and pod names (no such pods: their reports are not owned). A real
// Envoy connects to each; the leader counts the follower's from its
// report: 2/2. A report written long ago (a replica gone without its pod
// being deleted) is not counted; a live one is, and a proxy it lists
// that is connected to the leader since later counts once.
func TestProxiesOfEveryReplicaCounted(t *testing.T) {
	le := controller.LeaderElection{Enabled: true, ID: "weft-test-leader"}
	p := startPlane(t, controller.Options{LeaderElection: le, PodName: "weft-controller-a"})
	rev := p.commit(fixture{route: "one"}.files(), "one")
	p.gitRepository(rev)
	if err := p.c.Create(p.ctx, newMesh("shop")); err != nil {
		t.Fatal(err)
	}
	p.waitMesh("shop", "Ready, written by the leader", ready(rev))
	p.startEnvoy("frontend-1", "frontend-v1", false)
	p.waitXDS("the leader serves its Envoy", acked(rev, "frontend-1"))

	p.ctrl, _ = p.runController(controller.Options{LeaderElection: le, PodName: "weft-controller-b"}, "127.0.0.1:0")
	p.startEnvoy("frontend-2", "frontend-v1", false)
	p.waitXDS("the follower serves its Envoy", acked(rev, "frontend-2"))
	m := p.waitMesh("shop", "the follower's proxy counted, in sync", func(m *meshv1.Mesh) bool {
		return m.Status.Proxies != nil && m.Status.Proxies.Total == 2 && m.Status.Proxies.InSync == 2
	})
	if pr := m.Status.Proxies; pr.Summary != "2/2" || !ready(rev)(m) {
		t.Errorf("proxies %+v, want summary 2/2 on a Ready Mesh\n%s", *pr, describeMesh(m))
	}
	report := &corev1.ConfigMap{}
	if err := p.c.Get(p.ctx, client.ObjectKey{Namespace: controlNS, Name: controller.ProxiesReportName("weft-controller-b")}, report); err != nil {
		t.Fatal(err)
	}
	if report.Labels[controller.ProxiesLabel] != "true" || len(report.OwnerReferences) != 0 ||
		!strings.Contains(report.Data[controller.ProxiesKey], `"nodeID":"frontend-2"`) {
		t.Errorf("the follower's report: labels %v owners %v data %v", report.Labels, report.OwnerReferences, report.Data)
	}

	// Stale first: the cache sees it before the live one.
	long := time.Now().Add(-time.Hour)
	writeReport(t, p, "weft-controller-gone", long, []status.Proxy{
		{NodeID: "frontend-8", Class: "frontend-v1", Connected: true, InSync: true, ConnectedSince: long},
		{NodeID: "frontend-9", Class: "frontend-v1", Connected: true, InSync: true, ConnectedSince: long},
	})
	writeReport(t, p, "weft-controller-c", time.Now(), []status.Proxy{
		{NodeID: "frontend-3", Class: "frontend-v1", Connected: true, InSync: true, ConnectedSince: time.Now()},
		{NodeID: "frontend-1", Class: "frontend-v1", Connected: true, InSync: true, ConnectedSince: long},
	})
	// 3: the live report's frontend-3 with frontend-1 once; 4 or 5
	// would count the stale report.
	m = p.waitMesh("shop", "the live report counted, the stale one not", func(m *meshv1.Mesh) bool {
		return m.Status.Proxies != nil && m.Status.Proxies.Total == 3
	})
	if pr := m.Status.Proxies; pr.Summary != "3/3" || pr.InSync != 3 {
		t.Errorf("proxies %+v, want 3 in sync, summary 3/3", *pr)
	}
}

// writeReport writes a proxies report of pod as at time at.
func writeReport(t *testing.T, p *plane, pod string, at time.Time, proxies []status.Proxy) {
	t.Helper()
	b, err := json.Marshal(proxies)
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: controlNS, Name: controller.ProxiesReportName(pod), Labels: map[string]string{controller.ProxiesLabel: "true"}},
		Data:       map[string]string{controller.ProxiesKey: string(b), controller.ProxiesUpdatedKey: at.UTC().Format(time.RFC3339Nano)},
	}
	if err := p.c.Create(p.ctx, cm); err != nil {
		t.Fatal(err)
	}
}
