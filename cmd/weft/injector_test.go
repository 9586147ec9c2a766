package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/sidecar/inject"
	"github.com/weft-dev/weft/sidecar/webhook"
)

// TestInjectorInManager composes the injector as `weft controller` does
// (setupInjector on a controller-runtime manager) against a real
// kube-apiserver whose webhook configuration is the manifest's, pointed
// at the manager's webhook port with no caBundle: the leader makes the
// webhook Secret and patches the caBundle, every replica serves the
// certificate, the API server trusts it, and a pod created in a labelled
// namespace comes back injected with the controller's addresses and the
// CA's trust bundle.
func TestInjectorInManager(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const ns = "weft-system"
	for name, labels := range map[string]map[string]string{ns: nil, "shop": {inject.InjectKey: inject.Enabled}} {
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}); err != nil {
			t.Fatal(err)
		}
	}
	port := tooltest.FreePorts(t, 1)[0]
	raw, err := os.ReadFile(filepath.Join(tooltest.RepoRoot(), "environments", "deploy", "webhook.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := yaml.UnmarshalStrict(raw, mwc); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, webhook.Path)
	mwc.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
	if err := env.Client.Create(ctx, mwc); err != nil {
		t.Fatal(err)
	}
	bundle, err := os.ReadFile(filepath.Join(tooltest.RepoRoot(), "sidecar", "inject", "testdata", "trust-bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}

	mgr, err := manager.New(env.Config, manager.Options{
		Scheme:                 kubetest.DefaultScheme(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	var o injectorOptions
	o.WebhookAddress, o.WebhookName, o.WebhookSecret, o.ServiceName = fmt.Sprintf("127.0.0.1:%d", port), "weft-injector", "weft-webhook-tls", "weft-controller"
	o.ExtraHosts = []string{"127.0.0.1"}
	certs, err := setupInjector(mgr, o, injectorDeps{
		Namespace: ns, TrustDomain: "shop.example", Version: "v0.2.0",
		TrustBundle: func(context.Context) ([]byte, error) { return bundle, nil },
		Log:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("manager: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the manager did not stop")
		}
	})

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "localhost/web:1"}}},
	}
	deadline := time.Now().Add(90 * time.Second)
	var got *corev1.Pod
	for {
		got = pod.DeepCopy()
		err := env.Client.Create(ctx, got, client.DryRunAll)
		if err == nil && len(got.Spec.InitContainers) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no injected pod within 90s: last error %v, init containers %d", err, len(got.Spec.InitContainers))
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err := certs.Checker()(nil); err != nil {
		t.Errorf("webhook-cert readiness: %v", err)
	}

	sec := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "weft-webhook-tls"}, sec); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "weft-injector"}, mwc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, sec.Data["ca.crt"]) {
		t.Error("the caBundle is not the webhook Secret's CA")
	}
	proxy := got.Spec.InitContainers[1]
	for _, want := range []string{"--ca-address=weft-controller.weft-system.svc:15012", "--xds-address=weft-controller.weft-system.svc:15010", "--trust-domain=shop.example"} {
		if !slices.Contains(proxy.Args, want) {
			t.Errorf("proxy args %q lack %s", proxy.Args, want)
		}
	}
	if proxy.Image != "localhost/weft-proxy:v0.2.0" || got.Annotations[inject.VersionAnnotation] != "v0.2.0" {
		t.Errorf("image %s, annotations %v", proxy.Image, got.Annotations)
	}
	if e := proxy.Env[3]; e.Name != "WEFT_TRUST_BUNDLE" || e.Value != string(bundle) {
		t.Errorf("env %s: want the CA's trust bundle", e.Name)
	}
}
