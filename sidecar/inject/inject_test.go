package inject_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/sidecar/agent"
	"github.com/weft-dev/weft/sidecar/inject"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current output")

func options(t *testing.T) inject.Options {
	t.Helper()
	b, err := os.ReadFile("testdata/trust-bundle.pem")
	if err != nil {
		t.Fatal(err)
	}
	return inject.Options{Version: "v0.1.0", TrustBundle: b, TrustDomain: "shop.example"}
}

// render is what `weft inject -f` prints: the outcomes (stderr) as
// comments, then the manifests.
func render(t *testing.T, in []byte, name string, o inject.Options) (string, []byte) {
	t.Helper()
	out, outcomes, err := inject.Stream(in, name, o)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var b strings.Builder
	for _, oc := range outcomes {
		fmt.Fprintf(&b, "# %s:%s\n", name, oc)
		for _, w := range oc.Warnings {
			fmt.Fprintf(&b, "#   warning: %s\n", w)
		}
	}
	b.WriteString("# ---- output\n")
	b.Write(out)
	return b.String(), out
}

// TestGolden: every testdata/*.yaml injected as `weft inject -f` does
// (a Pod with every kind of probe; annotations; opt-out; hostNetwork; no
// service name; kube-system; a Deployment, Service, CronJob and a List
// with a StatefulSet) equals testdata/<name>.golden; and injecting the
// output again changes no byte (twice is once).
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(inputs) < 7 {
		t.Fatalf("inputs %v: %v", inputs, err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got, out := render(t, src, filepath.Base(in), options(t))
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./sidecar/inject -update)", err)
			}
			if d := cmp.Diff(string(want), got); d != "" {
				t.Errorf("%s differs from %s (-want +got; go test ./sidecar/inject -update to accept):\n%s", in, golden, d)
			}
			again, _, err := inject.Stream(out, "again", options(t))
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(string(out), string(again)); d != "" {
				t.Errorf("injecting %s twice differs from once (-once +twice):\n%s", in, d)
			}
		})
	}
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-0", Namespace: "shop", Labels: map[string]string{"app": "orders", "version": "v1"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "orders",
			Containers: []corev1.Container{{Name: "orders", Image: "localhost/orders:1",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				ReadinessProbe: &corev1.Probe{PeriodSeconds: 7, ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/healthz", Port: intstr.FromString("http")}}},
			}},
		},
	}
}

func container(cs []corev1.Container, name string) *corev1.Container {
	i := slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == name })
	if i < 0 {
		return nil
	}
	return &cs[i]
}

// TestPodContract: what an injected pod carries, as the kubelet, the
// agent and the NetworkPolicies rely on it.
func TestPodContract(t *testing.T) {
	pod := testPod()
	out, err := inject.Pod(pod, "", options(t))
	if err != nil || !out.Injected || out.Service != "orders" {
		t.Fatalf("outcome %+v, %v", out, err)
	}
	if got := []string{pod.Spec.InitContainers[0].Name, pod.Spec.InitContainers[1].Name}; !slices.Equal(got, []string{"weft-init", "weft-proxy"}) {
		t.Errorf("init containers %v: want netinit first, then the proxy, before the app's own", got)
	}
	if pod.Labels[compiler.ServiceLabel] != "orders" || pod.Annotations[inject.VersionAnnotation] != "v0.1.0" {
		t.Errorf("labels %v annotations %v", pod.Labels, pod.Annotations)
	}

	initC := container(pod.Spec.InitContainers, "weft-init")
	sc := initC.SecurityContext
	if *sc.RunAsUser != 0 || *sc.RunAsNonRoot || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("netinit's securityContext: %+v", sc)
	}
	if want := []string{"/usr/local/bin/weft", "netinit", "--proxy-uid=1337", "--inbound-port=15006", "--outbound-port=15001",
		"--exclude-inbound-ports=15021,15090"}; !slices.Equal(append(initC.Command, initC.Args...), want) {
		t.Errorf("netinit runs %q, want %q", append(initC.Command, initC.Args...), want)
	}

	proxy := container(pod.Spec.InitContainers, "weft-proxy")
	if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Error("the proxy is not a native sidecar (restartPolicy Always)")
	}
	if p := proxy.StartupProbe; p == nil || p.HTTPGet.Path != "/ready" || p.HTTPGet.Port.IntValue() != 15021 {
		t.Errorf("startup probe %+v: want GET /ready on 15021", p)
	}
	psc := proxy.SecurityContext
	if *psc.RunAsUser != 1337 || *psc.RunAsGroup != 1337 || !*psc.RunAsNonRoot || !*psc.ReadOnlyRootFilesystem ||
		*psc.AllowPrivilegeEscalation || len(psc.Capabilities.Add) != 0 || !slices.Equal(psc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("proxy's securityContext: %+v", psc)
	}
	if proxy.Resources.Requests.Cpu().String() != "100m" || proxy.Resources.Requests.Memory().String() != "128Mi" {
		t.Errorf("proxy requests %v", proxy.Resources.Requests)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range proxy.Env {
		env[e.Name] = e
	}
	for name, path := range map[string]string{agent.EnvPodName: "metadata.name", agent.EnvPodNamespace: "metadata.namespace",
		agent.EnvService: "metadata.labels['mesh.weft.dev/service']"} {
		if e := env[name]; e.ValueFrom == nil || e.ValueFrom.FieldRef.FieldPath != path {
			t.Errorf("env %s = %+v, want the downward API's %s", name, e, path)
		}
	}
	if !strings.Contains(env[agent.EnvTrustBundle].Value, "BEGIN CERTIFICATE") {
		t.Error("no trust bundle in the proxy's environment")
	}
	if !slices.Contains(proxy.Args, "--trust-domain=shop.example") || !slices.Contains(proxy.Args, "--token-file=/var/run/secrets/weft/tokens/token") {
		t.Errorf("agent args %q", proxy.Args)
	}

	var token *corev1.ServiceAccountTokenProjection
	for _, v := range pod.Spec.Volumes {
		if v.Name == inject.TokenVolume {
			token = v.Projected.Sources[0].ServiceAccountToken
		}
	}
	if token == nil || token.Audience != "weft" || *token.ExpirationSeconds != 3600 || token.Path != "token" {
		t.Errorf("token projection %+v", token)
	}
	mounted := false
	for _, m := range proxy.VolumeMounts {
		mounted = mounted || (m.Name == inject.TokenVolume && m.ReadOnly && m.MountPath == inject.TokenDir)
	}
	if !mounted {
		t.Errorf("the token is not mounted read-only in the proxy: %+v", proxy.VolumeMounts)
	}
	for _, c := range pod.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if m.Name == inject.TokenVolume {
				t.Errorf("the app container %s mounts the proxy's token", c.Name)
			}
		}
	}

	app := container(pod.Spec.Containers, "orders")
	if g := app.ReadinessProbe.HTTPGet; g.Path != "/app-health/orders/readyz" || g.Port.IntValue() != 15021 || app.ReadinessProbe.PeriodSeconds != 7 {
		t.Errorf("app readiness probe %+v: want the agent's /app-health/orders/readyz, period kept", app.ReadinessProbe)
	}
	if !strings.Contains(env[agent.EnvAppProbes].Value, `"/app-health/orders/readyz":{"kind":"http","port":8080,"path":"/healthz"}`) {
		t.Errorf("WEFT_APP_PROBES = %s", env[agent.EnvAppProbes].Value)
	}
}

// TestProxyUIDWarning: an app container running as uid 1337 is warned
// about (the redirect lets that uid through).
func TestProxyUIDWarning(t *testing.T) {
	pod := testPod()
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: ptrInt64(1337)}
	out, err := inject.Pod(pod, "shop", options(t))
	if err != nil || len(out.Warnings) != 1 || !strings.Contains(out.Warnings[0], "container orders runs as uid 1337, the proxy's: its connections bypass the proxy") {
		t.Errorf("warnings %q, %v", out.Warnings, err)
	}
}

func ptrInt64(v int64) *int64 { return &v }

// TestPodTwiceIsOnce: injecting an injected pod (also with rewritten
// probes) gives the same pod.
func TestPodTwiceIsOnce(t *testing.T) {
	once := testPod()
	if _, err := inject.Pod(once, "shop", options(t)); err != nil {
		t.Fatal(err)
	}
	twice := once.DeepCopy()
	if _, err := inject.Pod(twice, "shop", options(t)); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(once, twice); d != "" {
		t.Errorf("twice differs from once:\n%s", d)
	}
}

// TestSkipped: the pods left alone, and why.
func TestSkipped(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*corev1.Pod)
		ns     string
		want   string
	}{
		{"opt-out", func(p *corev1.Pod) { p.Annotations = map[string]string{"weft.dev/inject": "disabled"} }, "shop", "annotation weft.dev/inject: disabled"},
		{"hostNetwork", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, "shop", "hostNetwork"},
		{"kube-system", nil, "kube-system", "namespace kube-system is never injected"},
		{"kube-public", nil, "kube-public", "never injected"},
		{"kube-node-lease", nil, "kube-node-lease", "never injected"},
		{"own namespace", nil, "weft-system", "namespace weft-system is weft's own"},
		{"no service", func(p *corev1.Pod) { p.Labels = nil }, "shop", "no mesh service name: set the label mesh.weft.dev/service"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pod := testPod()
			if c.mutate != nil {
				c.mutate(pod)
			}
			before := pod.DeepCopy()
			out, err := inject.Pod(pod, c.ns, options(t))
			if err != nil || out.Injected || !strings.Contains(out.Skipped, c.want) {
				t.Fatalf("outcome %+v, %v: want skipped with %q", out, err, c.want)
			}
			if d := cmp.Diff(before, pod); d != "" {
				t.Errorf("a skipped pod changed:\n%s", d)
			}
		})
	}
}

// TestServiceName: the label mesh.weft.dev/service, else the annotation
// weft.dev/service, else app.kubernetes.io/name, else app.
func TestServiceName(t *testing.T) {
	cases := []struct {
		labels, annotations map[string]string
		want, err           string
	}{
		{map[string]string{"app": "a", "app.kubernetes.io/name": "b", compiler.ServiceLabel: "c"}, map[string]string{"weft.dev/service": "d"}, "c", ""},
		{map[string]string{"app": "a", "app.kubernetes.io/name": "b"}, map[string]string{"weft.dev/service": "d"}, "d", ""},
		{map[string]string{"app": "a", "app.kubernetes.io/name": "b"}, nil, "b", ""},
		{map[string]string{"app": "a"}, nil, "a", ""},
		{nil, nil, "", ""},
		{map[string]string{"app": "Orders_API"}, nil, "", `label app="Orders_API" is not a mesh service name`},
	}
	for _, c := range cases {
		got, err := inject.ServiceName(&metav1.ObjectMeta{Labels: c.labels, Annotations: c.annotations})
		if got != c.want || (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("labels %v annotations %v: %q, %v; want %q, %q", c.labels, c.annotations, got, err, c.want, c.err)
		}
	}
}

// TestBadInput: a bad annotation or option is an error naming it, its
// value and what is expected; a typo in a manifest is an error with its
// file:line, never dropped from the output.
func TestBadInput(t *testing.T) {
	for key, tc := range map[string]struct{ value, want string }{
		inject.ExcludeInboundPortsAnnotation:     {"80,http", `annotation weft.dev/exclude-inbound-ports: "http" is not a port (1-65535)`},
		inject.ExcludeOutboundPortsAnnotation:    {"70000", `annotation weft.dev/exclude-outbound-ports: "70000" is not a port`},
		inject.ExcludeOutboundIPRangesAnnotation: {"10.0.0.0/33", `annotation weft.dev/exclude-outbound-ip-ranges: "10.0.0.0/33" is not an IPv4 CIDR`},
		inject.ExcludeInboundIPRangesAnnotation:  {"fd00::/8", `annotation weft.dev/exclude-inbound-ip-ranges: "fd00::/8" is IPv6`},
	} {
		pod := testPod()
		pod.Annotations = map[string]string{key: tc.value}
		if _, err := inject.Pod(pod, "shop", options(t)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s=%q: %v, want %q", key, tc.value, err, tc.want)
		}
	}
	o := options(t)
	o.TrustBundle = nil
	if _, err := inject.Pod(testPod(), "shop", o); err == nil || !strings.Contains(err.Error(), "no trust bundle") {
		t.Errorf("no trust bundle: %v", err)
	}
	typo := "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n---\n# web\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers:\n      - {name: web, image: x, imagePullPolicyy: Never}\n"
	if _, _, err := inject.Stream([]byte(typo), "deploy.yaml", options(t)); err == nil ||
		!strings.Contains(err.Error(), `deploy.yaml:5: Deployment web: unknown field "spec.template.spec.containers[0].imagePullPolicyy"`) {
		t.Errorf("typo: %v", err)
	}
}
