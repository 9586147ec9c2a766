package webhook_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/sidecar/inject"
	"github.com/weft-dev/weft/sidecar/webhook"
)

// servingCert is a CA and a certificate for 127.0.0.1 that it signed.
func servingCert(t testing.TB) (caPEM []byte, cert tls.Certificate) {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := key(), key()
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test webhook CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}
}

// warnings collects the admission warnings the API server relays.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

func appPod(name string, mutate func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "web", "version": "v1"}},
		Spec: corev1.PodSpec{ServiceAccountName: "web", Containers: []corev1.Container{{Name: "web", Image: "localhost/web:1",
			Ports:          []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstrName("http")}}},
		}}},
	}
	if mutate != nil {
		mutate(p)
	}
	return p
}

func weftContainers(p *corev1.Pod) []string {
	var out []string
	for _, c := range slices.Concat(p.Spec.InitContainers, p.Spec.Containers) {
		if strings.HasPrefix(c.Name, "weft-") {
			out = append(out, c.Name)
		}
	}
	return out
}

// injectingAPIServer is a real kube-apiserver calling the webhook through
// the MutatingWebhookConfiguration that environments/deploy installs (its
// clientConfig pointed at a TLS server of the test), with the namespaces
// shop (labelled weft.dev/inject=enabled) and plain (unlabelled).
type injectingAPIServer struct {
	cs     *kubernetes.Clientset
	warned warnings
	broken atomic.Bool // the injector's options fail: no CA yet
	opts   inject.Options
}

func startInjectingAPIServer(t testing.TB) *injectingAPIServer {
	t.Helper()
	env := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	bundle, err := os.ReadFile(filepath.Join("..", "inject", "testdata", "trust-bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	a := &injectingAPIServer{opts: inject.Options{TrustBundle: bundle, Version: "v0.0.1-test"}}
	mux := http.NewServeMux()
	mux.Handle(webhook.Path, webhook.New(webhook.Config{Options: func(context.Context) (inject.Options, error) {
		if a.broken.Load() {
			return inject.Options{}, errors.New("the mesh CA's root is not loaded yet")
		}
		return a.opts, nil
	}}))
	caPEM, cert := servingCert(t)
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	// The manifest's webhook configuration, reached at the test's server.
	raw, err := os.ReadFile(filepath.Join(tooltest.RepoRoot(), "environments", "deploy", "webhook.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := yaml.UnmarshalStrict(raw, mwc); err != nil {
		t.Fatal(err)
	}
	url := srv.URL + webhook.Path
	mwc.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM}
	if err := env.Client.Create(ctx, mwc); err != nil {
		t.Fatal(err)
	}

	cfg := rest.CopyConfig(env.Config)
	cfg.WarningHandler = &a.warned
	if a.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	for name, l := range map[string]map[string]string{"shop": {"weft.dev/inject": "enabled"}, "plain": nil} {
		if _, err := a.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The API server picks the configuration up asynchronously: wait
	// until a dry run is injected (sideEffects None allows dry runs).
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, err := a.cs.CoreV1().Pods("shop").Create(ctx, appPod("probe", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil && len(weftContainers(p)) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook did not inject a dry-run pod within 60s: %v %v", weftContainers(p), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return a
}

// TestWebhookInAPIServer registers the webhook with a real kube-apiserver
// through the MutatingWebhookConfiguration that environments/deploy
// installs (its clientConfig pointed at this test's TLS server) and
// creates pods: in a namespace labelled weft.dev/inject=enabled they are
// injected — the API server validates and stores the native sidecar —
// unless they opt out, use hostNetwork or have no service name (a warning
// says how to name one); a bad annotation refuses the pod with its reason;
// an unlabelled namespace and kube-system (even labelled) are untouched;
// an already injected pod is stored as it was; and when the injector has
// no options (no CA yet), pods are refused, not created unmeshed.
func TestWebhookInAPIServer(t *testing.T) {
	a := startInjectingAPIServer(t)
	cs, warned, broken, opts := a.cs, &a.warned, &a.broken, a.opts
	ctx := context.Background()
	ks, err := cs.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ks.Labels["weft.dev/inject"] = "enabled"
	if _, err := cs.CoreV1().Namespaces().Update(ctx, ks, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	warned.take()

	create := func(ns string, p *corev1.Pod) (*corev1.Pod, error) {
		return cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	}

	t.Run("injected", func(t *testing.T) {
		p, err := create("shop", appPod("web-0", nil))
		if err != nil {
			t.Fatal(err)
		}
		if got := weftContainers(p); !slices.Equal(got, []string{"weft-init", "weft-proxy"}) {
			t.Errorf("stored pod has weft containers %v", got)
		}
		proxy := p.Spec.InitContainers[1]
		if proxy.RestartPolicy == nil || *proxy.RestartPolicy != corev1.ContainerRestartPolicyAlways || proxy.StartupProbe == nil {
			t.Errorf("the stored proxy is not a native sidecar with a startup probe: %+v", proxy)
		}
		if p.Labels["mesh.weft.dev/service"] != "web" || p.Annotations[inject.VersionAnnotation] != "v0.0.1-test" {
			t.Errorf("labels %v annotations %v", p.Labels, p.Annotations)
		}
		if g := p.Spec.Containers[0].ReadinessProbe.HTTPGet; g.Path != "/app-health/web/readyz" || g.Port.IntValue() != 15021 {
			t.Errorf("app probe %+v: want it rewritten to the agent", g)
		}
	})

	t.Run("already injected is stored as it was", func(t *testing.T) {
		pre := appPod("web-1", nil)
		if _, err := inject.Pod(pre, "shop", opts); err != nil {
			t.Fatal(err)
		}
		p, err := create("shop", pre.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		if got := weftContainers(p); !slices.Equal(got, []string{"weft-init", "weft-proxy"}) {
			t.Errorf("weft containers %v after a second injection", got)
		}
		if len(p.Spec.InitContainers) != len(pre.Spec.InitContainers) || len(p.Spec.Volumes) != len(pre.Spec.Volumes) ||
			p.Spec.InitContainers[1].Env[4].Value != pre.Spec.InitContainers[1].Env[4].Value {
			t.Errorf("the stored pod differs from the one injected before creation")
		}
	})

	untouched := []struct {
		name, ns string
		pod      *corev1.Pod
		warning  string
	}{
		{"opt-out", "shop", appPod("opt-out", func(p *corev1.Pod) { p.Annotations = map[string]string{"weft.dev/inject": "disabled"} }), ""},
		{"hostNetwork", "shop", appPod("host", func(p *corev1.Pod) { p.Spec.HostNetwork = true }), ""},
		{"no service name", "shop", appPod("nameless", func(p *corev1.Pod) { p.Labels = nil }), "no mesh service name: set the label mesh.weft.dev/service"},
		{"unlabelled namespace", "plain", appPod("plain", nil), ""},
		{"kube-system", "kube-system", appPod("system", nil), ""},
	}
	for _, c := range untouched {
		t.Run(c.name, func(t *testing.T) {
			p, err := create(c.ns, c.pod)
			if err != nil {
				t.Fatal(err)
			}
			if got := weftContainers(p); len(got) != 0 || p.Labels["mesh.weft.dev/service"] != "" {
				t.Errorf("pod in %s got %v, labels %v: want it untouched", c.ns, got, p.Labels)
			}
			w := strings.Join(warned.take(), "\n")
			if (c.warning == "") != (w == "") || !strings.Contains(w, c.warning) {
				t.Errorf("warnings %q, want %q", w, c.warning)
			}
		})
	}

	t.Run("bad annotation", func(t *testing.T) {
		_, err := create("shop", appPod("bad", func(p *corev1.Pod) { p.Annotations = map[string]string{"weft.dev/exclude-outbound-ports": "postgres"} }))
		if err == nil || !strings.Contains(err.Error(), `annotation weft.dev/exclude-outbound-ports: "postgres" is not a port (1-65535)`) {
			t.Errorf("pod with a bad annotation: %v", err)
		}
	})

	t.Run("no options fails closed", func(t *testing.T) {
		broken.Store(true)
		defer broken.Store(false)
		_, err := create("shop", appPod("early", nil))
		if err == nil || !strings.Contains(err.Error(), "the mesh CA's root is not loaded yet") {
			t.Errorf("pod created while the injector had no options: %v", err)
		}
		if _, err := cs.CoreV1().Pods("shop").Get(ctx, "early", metav1.GetOptions{}); err == nil {
			t.Error("the pod exists")
		}
	})
}

func intstrName(name string) intstr.IntOrString { return intstr.FromString(name) }
