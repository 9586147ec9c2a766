package meshctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
)

// ReconcileOptions are the flags of `weft reconcile mesh`.
type ReconcileOptions struct {
	// WithSource requests a reconcile of the Mesh's source first and
	// waits for its new artifact.
	WithSource bool
	// Timeout bounds the whole command (default 5m).
	Timeout time.Duration
	// Poll is how often the objects are read while waiting (default 1s).
	Poll time.Duration
	// Now stamps the request (default time.Now).
	Now func() time.Time
}

// sourceGroupVersion is Flux's source API.
var sourceGroupVersion = schema.GroupVersion{Group: "source.toolkit.fluxcd.io", Version: "v1"}

// ReconcileMesh is `weft reconcile mesh NAME`: it sets
// reconcile.fluxcd.io/requestedAt on the Mesh (and first, with
// WithSource, on its source, waiting for the source to handle it), waits
// until the controller has handled the request and the Mesh is Ready,
// and prints each step as the flux CLI does. A Mesh that ends Ready=False
// (or Stalled) is an error with the condition's message; so is the end
// of the timeout. A suspended Mesh is refused.
func ReconcileMesh(ctx context.Context, c client.Client, key client.ObjectKey, o ReconcileOptions, w io.Writer) error {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	m := &meshv1.Mesh{}
	if err := c.Get(ctx, key, m); err != nil {
		return fmt.Errorf("Mesh %s: %w", key, err)
	}
	if m.Spec.Suspend {
		return fmt.Errorf("resuming a suspended Mesh is not what reconcile does: Mesh %s is suspended (spec.suspend)", key)
	}
	if o.WithSource {
		if err := reconcileSource(ctx, c, m, o, w); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "► annotating Mesh %s in %s namespace\n", key.Name, key.Namespace)
	at, err := request(ctx, c, m, o.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "✔ Mesh annotated")
	fmt.Fprintln(w, "◎ waiting for Mesh reconciliation")
	for {
		if err := c.Get(ctx, key, m); err != nil {
			return fmt.Errorf("Mesh %s: %w", key, err)
		}
		if done, err := meshHandled(m, at); done {
			if err != nil {
				fmt.Fprintf(w, "✗ %v\n", err)
				return err
			}
			fmt.Fprintf(w, "✔ applied revision %s\n", m.Status.LastAppliedRevision)
			return nil
		}
		if err := sleep(ctx, o.Poll); err != nil {
			return fmt.Errorf("waiting for Mesh %s to handle the reconcile request: %w (its Ready condition: %s)", key, err, readyText(m))
		}
	}
}

// meshHandled reports whether the controller handled request at and,
// with an error, how it failed. A Mesh rolling its revision out is not
// done yet.
func meshHandled(m *meshv1.Mesh, at string) (bool, error) {
	if m.Status.GetLastHandledReconcileRequest() != at {
		return false, nil
	}
	ready := apimeta.FindStatusCondition(m.Status.Conditions, meta.ReadyCondition)
	switch {
	case ready == nil || ready.Status == metav1.ConditionUnknown:
		return false, nil
	case ready.Status == metav1.ConditionTrue:
		return true, nil
	}
	return true, fmt.Errorf("Mesh reconciliation failed: %s: %s", ready.Reason, ready.Message)
}

func readyText(m *meshv1.Mesh) string {
	ready := apimeta.FindStatusCondition(m.Status.Conditions, meta.ReadyCondition)
	if ready == nil {
		return "none yet"
	}
	return fmt.Sprintf("%s %s: %s", ready.Status, ready.Reason, ready.Message)
}

// reconcileSource annotates the Mesh's source and waits for it to handle
// the request with a Ready artifact.
func reconcileSource(ctx context.Context, c client.Client, m *meshv1.Mesh, o ReconcileOptions, w io.Writer) error {
	ref := m.Spec.SourceRef
	key := client.ObjectKey{Namespace: m.SourceNamespace(), Name: ref.Name}
	src := &unstructured.Unstructured{}
	src.SetGroupVersionKind(sourceGroupVersion.WithKind(ref.Kind))
	if err := c.Get(ctx, key, src); err != nil {
		return fmt.Errorf("%s %s: %w", ref.Kind, key, err)
	}
	fmt.Fprintf(w, "► annotating %s %s in %s namespace\n", ref.Kind, key.Name, key.Namespace)
	at, err := request(ctx, c, src, o.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "✔ %s annotated\n", ref.Kind)
	fmt.Fprintf(w, "◎ waiting for %s reconciliation\n", ref.Kind)
	for {
		if err := c.Get(ctx, key, src); err != nil {
			return fmt.Errorf("%s %s: %w", ref.Kind, key, err)
		}
		handled, _, _ := unstructured.NestedString(src.Object, "status", "lastHandledReconcileAt")
		if handled == at {
			status, reason, msg := unstructuredReady(src)
			switch status {
			case metav1.ConditionTrue:
				rev, _, _ := unstructured.NestedString(src.Object, "status", "artifact", "revision")
				fmt.Fprintf(w, "✔ fetched revision %s\n", rev)
				return nil
			case metav1.ConditionFalse:
				err := fmt.Errorf("%s reconciliation failed: %s: %s", ref.Kind, reason, msg)
				fmt.Fprintf(w, "✗ %v\n", err)
				return err
			}
		}
		if err := sleep(ctx, o.Poll); err != nil {
			return fmt.Errorf("waiting for %s %s to handle the reconcile request: %w", ref.Kind, key, err)
		}
	}
}

// unstructuredReady is the Ready condition of an unstructured object.
func unstructuredReady(u *unstructured.Unstructured) (metav1.ConditionStatus, string, string) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		cm, ok := c.(map[string]any)
		if !ok || cm["type"] != meta.ReadyCondition {
			continue
		}
		s, _ := cm["status"].(string)
		r, _ := cm["reason"].(string)
		msg, _ := cm["message"].(string)
		return metav1.ConditionStatus(s), r, msg
	}
	return metav1.ConditionUnknown, "", ""
}

// request sets reconcile.fluxcd.io/requestedAt on obj (a merge patch of
// the annotation alone) and returns its value.
func request(ctx context.Context, c client.Client, obj client.Object, now time.Time) (string, error) {
	at := now.Format(time.RFC3339Nano)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, meta.ReconcileRequestAnnotation, at)
	if err := c.Patch(ctx, obj, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		return "", fmt.Errorf("annotating %s %s/%s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetNamespace(), obj.GetName(), err)
	}
	return at, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("timed out")
		}
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
