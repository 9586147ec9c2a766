package meshctl_test

import (
	"bytes"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
	"github.com/weft-dev/weft/reconciler/meshctl"
)

func TestShortRevision(t *testing.T) {
	for in, want := range map[string]string{
		"main@sha1:0123456789abcdef0123456789abcdef01234567": "main@sha1:01234567",
		"v1.2.3@sha256:aabbccddeeff00112233":                 "v1.2.3@sha256:aabbccdd",
		"sha256:aabbccddeeff":                                "sha256:aabbccdd",
		"main@sha1:0123":                                     "main@sha1:0123",
		"":                                                   "",
	} {
		if got := meshctl.ShortRevision(in); got != want {
			t.Errorf("ShortRevision(%q) = %q, want %q", in, got, want)
		}
	}
}

// A failing Mesh's status, as `weft status --namespace` prints it: the
// conditions, the revision still applied, the proxies and their NACKs,
// and every problem of the failure at its file:line:column with its fix.
func TestPrintStatusOfAFailure(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	m := &meshv1.Mesh{
		ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: "shop"},
		Spec: meshv1.MeshSpec{SourceRef: meshv1.SourceReference{Kind: "GitRepository", Name: "shop", Namespace: "flux-system"},
			Path: "./environments", Environment: "prod"},
		Status: meshv1.MeshStatus{
			Conditions: []metav1.Condition{
				{Type: "Ready", Status: "False", Reason: "LoadFailed", Message: "load failed for revision main@sha1:2: environments/orders.cue:12:3: unknown version v3", LastTransitionTime: metav1.NewTime(now.Add(-90 * time.Second))},
				{Type: "Stalled", Status: "True", Reason: "LoadFailed", Message: "same", LastTransitionTime: metav1.NewTime(now.Add(-90 * time.Second))},
			},
			LastAppliedRevision:   "main@sha1:1",
			LastAttemptedRevision: "main@sha1:2",
			SnapshotVersion:       "main@sha1:1/0123456789ab",
			Proxies: &meshv1.ProxiesStatus{NACKs: []meshv1.ProxyNACK{{Proxy: "orders-v1-abc", Class: "orders-v1",
				TypeURL: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", Resource: "outbound|8080", File: "environments/orders.cue", Line: 20,
				Message: "missing ): (unclosed\nmore"}}},
			Failure: &meshv1.Failure{Revision: "main@sha1:2", Step: "load", Truncated: 2, Problems: []meshv1.Problem{
				{File: "environments/orders.cue", Line: 12, Column: 3, Path: "mesh.services.orders.routes.split.to.v3", Message: "unknown version v3", Fix: "use v1 or v2"},
			}},
		},
	}
	m.Status.Proxies.SetCounts(3, 2, 1)
	var b bytes.Buffer
	meshctl.PrintStatus(&b, m, now)
	want := `Mesh weft-system/shop: GitRepository/flux-system/shop, path ./environments, environment prod
  Ready:       False LoadFailed (1m ago): load failed for revision main@sha1:2: environments/orders.cue:12:3: unknown version v3
  Stalled:     True LoadFailed (1m ago): same
  applied:     main@sha1:1
  snapshot:    main@sha1:1/0123456789ab
  attempted:   main@sha1:2
  proxies:     3 connected, 2 in sync, 1 NACKing
    NACK orders-v1-abc (orders-v1) of RouteConfiguration outbound|8080 (environments/orders.cue:20): missing ): (unclosed ...
  last failure: revision main@sha1:2 failed at step load
    environments/orders.cue:12:3: mesh.services.orders.routes.split.to.v3: unknown version v3
      fix: use v1 or v2
    ... and 2 more
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}
