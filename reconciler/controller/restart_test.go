package controller_test

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/controller"
)

// TestRestartServesTheLastGoodRevision: source-controller offers only its
// latest artifact. With a broken revision there, a controller that
// starts (a restart, a new replica) still serves the last applied
// revision: the leader kept its artifact in a ConfigMap. A real Envoy
// reconnects to the new controller and is served that revision, while
// the Mesh stays Stalled on the broken one.
func TestRestartServesTheLastGoodRevision(t *testing.T) {
	p := startPlane(t, controller.Options{})
	rev1 := p.commit(fixture{route: "one"}.files(), "good")
	p.gitRepository(rev1)
	if err := p.c.Create(p.ctx, newMesh("shop")); err != nil {
		t.Fatal(err)
	}
	p.waitMesh("shop", "Ready with the good revision", ready(rev1))
	frontend := p.startEnvoy("frontend-1", "frontend-v1", false)
	p.waitXDS("the Envoy ACKs the good revision", acked(rev1, frontend.id))

	bad := p.commit(fixture{route: "bad", broken: true}.files(), "broken")
	p.fetch()
	p.waitMesh("shop", "Stalled on the broken revision", stalled(bad, meshv1.LoadFailedReason))

	var cm corev1.ConfigMap
	if err := p.c.Get(p.ctx, client.ObjectKey{Namespace: controlNS, Name: controller.KeptArtifactName(controlNS, "shop")}, &cm); err != nil {
		t.Fatalf("the applied revision's artifact is not kept: %v", err)
	}
	var spec struct{ Revision string }
	if err := json.Unmarshal([]byte(cm.Data["spec.json"]), &spec); err != nil || spec.Revision != rev1 || len(cm.BinaryData["artifact.tar.gz"]) == 0 {
		t.Fatalf("kept %q (%v) with %d bytes, want %s", spec.Revision, err, len(cm.BinaryData["artifact.tar.gz"]), rev1)
	}

	// The controller goes away; a new one starts on the same address.
	addr := p.ctrl.Addr()
	stopFirst := p.stopFirst
	stopFirst()
	p.ctrl, _ = p.runController(controller.Options{}, addr)
	p.waitXDS("the Envoy, reconnected to the new controller, is served the good revision", acked(rev1, frontend.id))
	m := p.waitMesh("shop", "still Stalled on the broken revision, the good one applied", func(m *meshv1.Mesh) bool {
		return stalled(bad, meshv1.LoadFailedReason)(m) && m.Status.LastAppliedRevision == rev1
	})
	if st := p.ctrl.XDS.Status(); st.Revision != rev1 {
		t.Errorf("the new controller serves %q, want %s\n%s", st.Revision, rev1, describeMesh(m))
	}

	// Deleting the Mesh deletes what was kept for it.
	if err := p.c.Delete(p.ctx, m); err != nil {
		t.Fatal(err)
	}
	p.waitGone(&corev1.ConfigMap{}, client.ObjectKey{Namespace: controlNS, Name: controller.KeptArtifactName(controlNS, "shop")})
}
