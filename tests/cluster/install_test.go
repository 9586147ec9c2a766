package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/weft-dev/weft/environments/deploy"
	"github.com/weft-dev/weft/internal/clustertest"
	"github.com/weft-dev/weft/internal/images"
)

// TestImageNames: the controller's image in the deploy manifests is the
// one `make images` builds.
func TestImageNames(t *testing.T) {
	if deploy.ImageName != images.WeftName || deploy.DefaultTag != images.DefaultTag {
		t.Errorf("environments/deploy runs %s:%s, internal/images builds %s:%s",
			deploy.ImageName, deploy.DefaultTag, images.WeftName, images.DefaultTag)
	}
}

// testInstall applies `weft install --export --image localhost/weft:dev`
// (printed by the weft binary that is in the image) server-side, as the
// README says, and checks what a user sees: the Mesh CRD served, the
// controller's pods admitted by the namespace's "restricted" Pod Security
// and running the image as its non-root user. Once cmd/weft has the
// `controller` command, the Deployment must become Available (2/2); until
// then the test stops there, saying so.
func testInstall(t *testing.T, c *clustertest.Cluster) {
	ctx := context.Background()
	weftBin := clustertest.BuildImages(t).Inputs.Weft
	image := images.Ref(images.WeftName, images.DefaultTag)
	manifests, err := exec.Command(weftBin, "install", "--export", "--image", image).Output()
	if err != nil {
		t.Fatalf("weft install --export: %v", err)
	}
	started := time.Now()
	if _, err := c.Kubectl(ctx, bytes.NewReader(manifests), "apply", "--server-side", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	ns := deploy.DefaultNamespace

	// The CRD is served: a Mesh can be listed.
	waitFor(t, "the Mesh CRD to be served", time.Minute, func() error {
		gvr := schema.GroupVersionResource{Group: "mesh.weft.dev", Version: "v1alpha1", Resource: "meshes"}
		_, err := c.Clientset.Discovery().RESTClient().Get().
			AbsPath("/apis", gvr.Group, gvr.Version, "namespaces", ns, gvr.Resource).DoRaw(ctx)
		return err
	})

	// The controller's pods pass "restricted" admission and their
	// container starts from the image.
	var pods []corev1.Pod
	waitFor(t, "weft-controller pods to start", 2*time.Minute, func() error {
		list, err := c.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=controller"})
		if err != nil {
			return err
		}
		pods = list.Items
		started := 0
		for _, p := range pods {
			for _, s := range p.Status.ContainerStatuses {
				if s.State.Running != nil || s.State.Terminated != nil || s.LastTerminationState.Terminated != nil {
					started++
				}
			}
		}
		if len(pods) < 2 || started < 2 {
			return fmt.Errorf("%d pods, %d containers started; events: %s", len(pods), started, events(c, ns))
		}
		return nil
	})

	if !hasCommand(weftBin, "controller") {
		logs, _ := c.Clientset.CoreV1().Pods(ns).GetLogs(pods[0].Name, &corev1.PodLogOptions{Container: "controller"}).DoRaw(ctx)
		t.Skipf("HOOK: cmd/weft has no `controller` command yet, so weft-controller cannot become Available "+
			"(its container says: %s). The manifests applied, the CRD is served and the pods were admitted "+
			"and started from %s; once `weft controller` exists this test waits for the Deployment to be Available.",
			strings.TrimSpace(string(logs)), image)
	}
	waitAvailable(t, c.Clientset, ns, "weft-controller", 2, 3*time.Minute)
	t.Logf("weft-controller Available (2/2) %s after apply", time.Since(started).Round(10*time.Millisecond))
}

// hasCommand reports whether `weft <cmd> --help` succeeds.
func hasCommand(weftBin, cmd string) bool {
	return exec.Command(weftBin, cmd, "--help").Run() == nil
}

func events(c *clustertest.Cluster, ns string) string {
	list, err := c.Clientset.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, e := range list.Items {
		if e.Type == corev1.EventTypeWarning {
			parts = append(parts, e.InvolvedObject.Name+": "+e.Reason+": "+e.Message)
		}
	}
	return strings.Join(parts, "; ")
}
