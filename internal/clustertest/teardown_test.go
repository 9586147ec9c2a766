package clustertest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weft-dev/weft/internal/images"
)

// TestTeardownAfterKill: a cluster whose owner vanished (Detach: no
// Pdeathsig, no PIDs kept in memory — what a killed test run leaves)
// with a pod running is removed completely by Teardown, which knows only
// its name: no netns, mount, cgroup, process, work-dir file, shim socket
// or CNI cache file is left.
func TestTeardownAfterKill(t *testing.T) {
	requireMachine(t, "")
	opts := Options{Name: DefaultName() + "-k", Detach: true, NoDNS: true, Logf: t.Logf}
	opts.defaultImages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Teardown(c.opts.BaseDir, c.Name) })

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "sleep", Image: images.Ref(images.TestAppName, images.DefaultTag), ImagePullPolicy: corev1.PullNever,
			Command: []string{"sleep", "3600"},
		}}},
	}
	if _, err := c.Clientset.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.waitFor(ctx, "pod sleeper Running", 2*time.Minute, func(ctx context.Context) error {
		p, err := c.Clientset.CoreV1().Pods("default").Get(ctx, "sleeper", metav1.GetOptions{})
		if err == nil && p.Status.Phase != corev1.PodRunning {
			return os.ErrNotExist
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	hostFiles := containerdHostFiles(c.layout)
	if len(hostFiles) == 0 {
		t.Fatal("no shim socket or CNI cache file found for the running pod: the test would prove nothing")
	}
	if pids := cgroupPIDs(cgroupName(c.Name)); len(pids) == 0 {
		t.Fatal("no process in the pods' cgroup: the test would prove nothing")
	}

	started := time.Now()
	if err := Teardown(c.opts.BaseDir, c.Name); err != nil {
		t.Fatal(err)
	}
	t.Logf("teardown of the abandoned cluster: %s", time.Since(started).Round(time.Millisecond))
	left := Leftovers(c.opts.BaseDir, c.Name)
	for _, f := range hostFiles {
		if _, err := os.Lstat(f); err == nil {
			left = append(left, "file "+f)
		}
	}
	if len(left) > 0 {
		t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a\040b`: "/tmp/a b",
		`/plain`:      "/plain",
		`/x\134y`:     `/x\y`,
		`/short\04`:   `/short\04`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
