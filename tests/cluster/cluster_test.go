package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/weft-dev/weft/internal/clustertest"
	"github.com/weft-dev/weft/internal/images"
)

// demoAnswer is the part of weft demo-app's JSON answer the tests read.
type demoAnswer struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
	Host     string `json:"host"`
	Calls    []struct {
		URL    string      `json:"url"`
		Status int         `json:"status"`
		Error  string      `json:"error"`
		Answer *demoAnswer `json:"answer"`
	} `json:"calls"`
}

// TestCluster brings a fresh cluster up, runs weft's own image in it and
// tears it down, checking what the cluster offers the end-to-end tests
// (each step is a subtest; they share the cluster and run in order):
//
//   - demo-app: a 2-replica Deployment of localhost/weft running `weft
//     demo-app` becomes Available; its Service's EndpointSlice lists both
//     pods; pod to pod HTTP across the bridge, pod to Service by ClusterIP
//     (kube-proxy) and by name (cluster DNS) all answer;
//   - kubectl exec and logs through the apiserver to the kubelet;
//   - images in pods: netinit's iptables-restore (nft and legacy) as root
//     with NET_ADMIN in the weft image, Envoy in the proxy image;
//   - weft install: `weft install --export` applied (install_test.go);
//   - teardown leaves no netns, mount, cgroup, process or file behind.
func TestCluster(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	ctx := context.Background()
	weftImage := images.Ref(images.WeftName, images.DefaultTag)
	t.Logf("cluster %s up: %s", c.Name, c.Timings())

	var pods []corev1.Pod
	t.Run("demo-app", func(t *testing.T) {
		started := time.Now()
		ns := createNamespace(t, c.Clientset, "smoke")
		deployDemoApp(t, c.Clientset, ns, "web", weftImage, 2)
		waitAvailable(t, c.Clientset, ns, "web", 2, 2*time.Minute)
		t.Logf("Deployment web: 2 pods Ready %s after create", time.Since(started).Round(10*time.Millisecond))

		pods = runningPods(t, c.Clientset, ns, "app=web")
		if len(pods) != 2 {
			t.Fatalf("%d pods of web, want 2", len(pods))
		}
		var ips []string
		for _, p := range pods {
			if !strings.HasPrefix(p.Status.PodIP, "10.244.0.") {
				t.Errorf("pod %s has IP %q, want one from the bridge's 10.244.0.0/24", p.Name, p.Status.PodIP)
			}
			ips = append(ips, p.Status.PodIP)
		}
		slices.Sort(ips)

		// The EndpointSlice controller lists both pods as ready.
		waitFor(t, "EndpointSlices of web to list both pods", time.Minute, func() error {
			got := endpointIPs(t, c.Clientset, ns, "web")
			if !slices.Equal(got, ips) {
				return fmt.Errorf("ready endpoints %v, want %v", got, ips)
			}
			return nil
		})

		a, b := pods[0], pods[1]
		// From the test (the node's side of the bridge) to a pod.
		ans := get(t, c, fmt.Sprintf("http://%s:8080/", a.Status.PodIP))
		if ans.Instance != a.Name || ans.Service != "web" {
			t.Errorf("pod %s answered as %q of %q", a.Name, ans.Instance, ans.Service)
		}
		// Pod A calls pod B directly: pod to pod across the bridge.
		ans = get(t, c, fmt.Sprintf("http://%s:8080/?call=%s:8080/direct", a.Status.PodIP, b.Status.PodIP))
		if len(ans.Calls) != 1 || ans.Calls[0].Answer == nil || ans.Calls[0].Answer.Instance != b.Name {
			t.Errorf("pod %s calling pod %s: %+v", a.Name, b.Name, ans.Calls)
		}
		// Pod A calls the Service by ClusterIP (kube-proxy's rules), then
		// by its name (the cluster DNS and the pod's search path).
		svc, err := c.Clientset.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, target := range []string{svc.Spec.ClusterIP + ":80", "web", "web." + ns + ".svc"} {
			ans = get(t, c, fmt.Sprintf("http://%s:8080/?call=%s/via-service", a.Status.PodIP, target))
			if len(ans.Calls) != 1 || ans.Calls[0].Answer == nil || !slices.Contains(podNames(pods), ans.Calls[0].Answer.Instance) {
				t.Errorf("pod %s calling Service web as %s: %+v", a.Name, target, ans.Calls)
			}
		}
	})

	t.Run("kubectl exec and logs", func(t *testing.T) {
		if len(pods) == 0 {
			t.Skip("no pods")
		}
		ns := pods[0].Namespace
		testapp := images.Ref(images.TestAppName, images.DefaultTag)
		out, err := c.Kubectl(ctx, nil, "-n", ns, "run", "shell", "--image="+testapp, "--image-pull-policy=Never",
			"--restart=Never", "--command", "--", "sleep", "3600")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Kubectl(ctx, nil, "-n", ns, "wait", "--for=condition=Ready", "pod/shell", "--timeout=90s"); err != nil {
			t.Fatal(err)
		}
		out, err = c.Kubectl(ctx, nil, "-n", ns, "exec", "shell", "--", "wget", "-q", "-O", "-", "http://web/_demo/count")
		if err != nil || !strings.Contains(string(out), `"count"`) {
			t.Errorf("wget from a busybox pod to http://web: %v\n%s", err, out)
		}
		out, err = c.Kubectl(ctx, nil, "-n", ns, "logs", pods[0].Name)
		if err != nil {
			t.Errorf("kubectl logs: %v\n%s", err, out)
		}
	})

	t.Run("images in pods", func(t *testing.T) {
		ns := createNamespace(t, c.Clientset, "images")
		// What weft netinit does in its init container: as root with
		// NET_ADMIN and NET_RAW, restore nat rules into the pod's netns,
		// with the nft back end and the legacy one; then list them.
		rules := "*nat\n:WEFT_OUTPUT - [0:0]\n-A OUTPUT -p tcp -j WEFT_OUTPUT\n" +
			"-A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN\n" +
			"-A WEFT_OUTPUT -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 15001\nCOMMIT\n"
		if _, err := c.Clientset.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "rules"}, Data: map[string]string{"nat": rules},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		root := &corev1.SecurityContext{
			RunAsUser: ptr(int64(0)), RunAsNonRoot: ptr(false),
			Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "NET_RAW"}, Drop: []corev1.Capability{"ALL"}},
		}
		weft := images.Ref(images.WeftName, images.DefaultTag)
		container := func(name string, command ...string) corev1.Container {
			return corev1.Container{
				Name: name, Image: weft, ImagePullPolicy: corev1.PullNever, Command: command, SecurityContext: root,
				VolumeMounts: []corev1.VolumeMount{{Name: "rules", MountPath: "/rules"}},
			}
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "netinit"},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				InitContainers: []corev1.Container{
					container("nft", "iptables-restore", "/rules/nat"),
					container("legacy", "iptables-legacy-restore", "/rules/nat"),
				},
				Containers: []corev1.Container{
					container("nft-save", "iptables-save", "-t", "nat"),
					container("legacy-save", "iptables-legacy-save", "-t", "nat"),
				},
				Volumes: []corev1.Volume{{Name: "rules", VolumeSource: corev1.VolumeSource{
					ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "rules"}},
				}}},
			},
		}
		logs := runPod(t, c.Clientset, ns, pod)
		for _, name := range []string{"nft-save", "legacy-save"} {
			for _, want := range []string{"-A OUTPUT -p tcp -j WEFT_OUTPUT", "--uid-owner 1337 -j RETURN", "--dport 8080 -j REDIRECT --to-ports 15001"} {
				if !strings.Contains(logs[name], want) {
					t.Errorf("%s: no %q in:\n%s", name, want, logs[name])
				}
			}
		}

		// The proxy image's Envoy runs (as the image's user, 1337).
		proxy := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "envoy"},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{
					Name: "envoy", Image: images.Ref(images.ProxyName, images.DefaultTag), ImagePullPolicy: corev1.PullNever,
					Command: []string{"envoy", "--version"},
				}},
			},
		}
		if out := runPod(t, c.Clientset, ns, proxy)["envoy"]; !strings.Contains(out, "/1.40.0/") {
			t.Errorf("envoy --version in the proxy image: %q", out)
		}
	})

	t.Run("weft install", func(t *testing.T) { testInstall(t, c) })

	t.Run("teardown", func(t *testing.T) {
		if err := c.Down(); err != nil {
			t.Fatal(err)
		}
		if left := c.Leftovers(); len(left) > 0 {
			t.Errorf("after teardown:\n  %s", strings.Join(left, "\n  "))
		}
		t.Logf("down in %s", c.Phase("down").Round(10*time.Millisecond))
	})
}

// runPod creates pod, waits until it Succeeded and returns each
// container's log; a pod that fails fails t with its logs.
func runPod(t *testing.T, cs kubernetes.Interface, ns string, pod *corev1.Pod) map[string]string {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var phase corev1.PodPhase
	waitFor(t, "pod "+pod.Name+" to finish", 2*time.Minute, func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		phase = p.Status.Phase
		if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
			return nil
		}
		return fmt.Errorf("phase %s: %s", phase, podStates(cs, ns, &metav1.LabelSelector{}))
	})
	logs := map[string]string{}
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		b, err := cs.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Container: c.Name}).DoRaw(ctx)
		if err != nil {
			t.Errorf("logs of %s/%s: %v", pod.Name, c.Name, err)
		}
		logs[c.Name] = string(b)
	}
	if phase != corev1.PodSucceeded {
		t.Fatalf("pod %s %s; logs: %v", pod.Name, phase, logs)
	}
	return logs
}

func createNamespace(t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Pods need the namespace's default ServiceAccount, which the
	// ServiceAccount controller creates.
	waitFor(t, "ServiceAccount default in "+name, time.Minute, func() error {
		_, err := cs.CoreV1().ServiceAccounts(name).Get(context.Background(), "default", metav1.GetOptions{})
		return err
	})
	return name
}

// deployDemoApp creates a Deployment of `weft demo-app` on :8080 (ready
// when it answers /_demo/count) and a Service name:80 -> 8080.
func deployDemoApp(t *testing.T, cs kubernetes.Interface, ns, name, image string, replicas int32) {
	t.Helper()
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr(int64(2)),
					Containers: []corev1.Container{{
						Name:            "app",
						Image:           image,
						ImagePullPolicy: corev1.PullNever,
						Args:            []string{"demo-app", "--addr", "0.0.0.0:8080", "--service", name, "--version", "v1"},
						Env: []corev1.EnvVar{{Name: "WEFT_INSTANCE", ValueFrom: &corev1.EnvVarSource{
							FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"},
						}}},
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/_demo/count", Port: intstr.FromString("http")}},
							PeriodSeconds: 1,
						},
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot:             ptr(true),
							AllowPrivilegeEscalation: ptr(false),
							ReadOnlyRootFilesystem:   ptr(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(context.Background(), dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.ServiceSpec{
			Selector: labels,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	if _, err := cs.CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func waitAvailable(t *testing.T, cs kubernetes.Interface, ns, name string, replicas int32, timeout time.Duration) {
	t.Helper()
	waitFor(t, "Deployment "+ns+"/"+name+" Available", timeout, func() error {
		d, err := cs.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas == replicas && d.Status.UpdatedReplicas == replicas {
			return nil
		}
		return fmt.Errorf("%d/%d available, %d updated; conditions %v; pods: %s", d.Status.AvailableReplicas, replicas,
			d.Status.UpdatedReplicas, d.Status.Conditions, podStates(cs, ns, d.Spec.Selector))
	})
}

func podStates(cs kubernetes.Interface, ns string, sel *metav1.LabelSelector) string {
	list, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(sel)})
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, p := range list.Items {
		s := p.Name + " " + string(p.Status.Phase)
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			switch {
			case cs.State.Waiting != nil:
				s += fmt.Sprintf(" %s waiting %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
			case cs.State.Terminated != nil:
				s += fmt.Sprintf(" %s terminated %s %d", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
			default:
				s += fmt.Sprintf(" %s ready=%v", cs.Name, cs.Ready)
			}
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

func runningPods(t *testing.T, cs kubernetes.Interface, ns, selector string) []corev1.Pod {
	t.Helper()
	list, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func podNames(pods []corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

// endpointIPs are the ready addresses of the Service's EndpointSlices, sorted.
func endpointIPs(t *testing.T, cs kubernetes.Interface, ns, svc string) []string {
	t.Helper()
	list, err := cs.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svc,
	})
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ips = append(ips, e.Addresses...)
			}
		}
	}
	slices.Sort(ips)
	return ips
}

// get fetches url from inside the cluster's netns and decodes demo-app's
// answer.
func get(t *testing.T, c *clustertest.Cluster, url string) demoAnswer {
	t.Helper()
	resp, err := c.HTTPClient().Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	var ans demoAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
	return ans
}

func waitFor(t *testing.T, what string, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for %s: %v", timeout, what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }
