package caroot_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/reconciler/kube/caroot"
	"github.com/weft-dev/weft/reconciler/kube/kubetesting"
)

// controllerClient is a client that acts as the controller's service
// account weft-system/weft-controller, with environments/deploy's RBAC
// applied: the least privilege the controller runs with.
func controllerClient(t *testing.T, env *kubetest.Env) client.Client {
	t.Helper()
	kubetesting.Namespace(t, env.Clientset, "weft-system")
	rbac := filepath.Join(tooltest.RepoRoot(), "environments", "deploy", "rbac.yaml")
	kubectl := filepath.Join(kubetest.Assets(t), "kubectl")
	if out, err := exec.Command(kubectl, "--kubeconfig", env.Kubeconfig, "apply", "-n", "weft-system", "-f", rbac).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply %s: %v\n%s", rbac, err, out)
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:weft-system:weft-controller"}
	c, err := client.New(cfg, client.Options{Scheme: kubetest.DefaultScheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func closed() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

// TestLoad: the mesh CA root lives in the Secret weft-ca-root; the
// replicas, as the controller's service account with the deploy RBAC,
// create it once and share it.
func TestLoad(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	c := controllerClient(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := func(name string) caroot.Options {
		return caroot.Options{Namespace: "weft-system", Name: name, TrustDomain: "shop.example", PollInterval: 50 * time.Millisecond}
	}

	t.Run("leaders racing create it once", func(t *testing.T) {
		for round := range 5 {
			name := fmt.Sprintf("weft-ca-root-%d", round)
			if round == 0 {
				name = caroot.DefaultSecretName // the one the Role grants get on
			}
			roots := make([]*caroot.Root, 3)
			errs := make([]error, 3)
			var wg sync.WaitGroup
			for i := range roots {
				wg.Go(func() { roots[i], errs[i] = caroot.Load(ctx, env.Client, env.Client, closed(), opts(name)) })
			}
			wg.Wait()
			created := 0
			for i, r := range roots {
				if errs[i] != nil {
					t.Fatalf("replica %d: %v", i, errs[i])
				}
				if r.Created {
					created++
				}
				if string(r.CertPEM) != string(roots[0].CertPEM) || string(r.KeyPEM) != string(roots[0].KeyPEM) {
					t.Fatalf("replica %d has another root", i)
				}
			}
			if created != 1 {
				t.Fatalf("round %d: %d replicas created the Secret, want 1", round, created)
			}
		}
	})

	t.Run("the controller's RBAC reads and creates it", func(t *testing.T) {
		// weft-ca-root exists (above): read as the controller.
		r, err := caroot.Load(ctx, c, c, closed(), opts(caroot.DefaultSecretName))
		if err != nil || r.Created {
			t.Fatalf("Load as the controller: %+v, %v; want the existing root", r, err)
		}
		if _, err := ca.New(ca.Config{TrustDomain: "shop.example", RootCertPEM: r.CertPEM, RootKeyPEM: r.KeyPEM}); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: caroot.DefaultSecretName}}); err != nil {
			t.Fatal(err)
		}
		r, err = caroot.Load(ctx, c, c, closed(), opts(caroot.DefaultSecretName))
		if err != nil || !r.Created {
			t.Fatalf("Load as the controller, no Secret: %+v, %v; want it created", r, err)
		}
		s := &corev1.Secret{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "weft-system", Name: caroot.DefaultSecretName}, s); err != nil {
			t.Fatal(err)
		}
		if s.Type != corev1.SecretTypeTLS || s.Annotations[caroot.TrustDomainAnnotation] != "shop.example" || string(s.Data["tls.crt"]) != string(r.CertPEM) {
			t.Errorf("Secret: type %s, annotations %v; want kubernetes.io/tls with the trust domain and the root", s.Type, s.Annotations)
		}
	})

	t.Run("a replica that is not the leader waits for it", func(t *testing.T) {
		name := "weft-ca-root-wait"
		got := make(chan *caroot.Root, 1)
		never := make(chan struct{})
		go func() {
			r, err := caroot.Load(ctx, env.Client, env.Client, never, opts(name))
			if err != nil {
				t.Error(err)
			}
			got <- r
		}()
		select {
		case r := <-got:
			t.Fatalf("a follower returned %+v without a Secret", r)
		case <-time.After(500 * time.Millisecond):
		}
		leader, err := caroot.Load(ctx, env.Client, env.Client, closed(), opts(name))
		if err != nil || !leader.Created {
			t.Fatalf("leader: %+v, %v", leader, err)
		}
		select {
		case r := <-got:
			if r.Created || string(r.CertPEM) != string(leader.CertPEM) {
				t.Fatal("the follower did not get the leader's root")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the follower still waits 30s after the leader created the Secret")
		}
	})

	t.Run("a follower elected later creates it", func(t *testing.T) {
		elected := make(chan struct{})
		time.AfterFunc(300*time.Millisecond, func() { close(elected) })
		r, err := caroot.Load(ctx, env.Client, env.Client, elected, opts("weft-ca-root-later"))
		if err != nil || !r.Created {
			t.Fatalf("Load: %+v, %v; want created once elected", r, err)
		}
	})

	t.Run("a Secret without its key is an error, never replaced", func(t *testing.T) {
		broken := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "weft-system", Name: "weft-ca-root-broken"},
			Data: map[string][]byte{"tls.crt": []byte("x")}}
		if err := env.Client.Create(ctx, broken); err != nil {
			t.Fatal(err)
		}
		_, err := caroot.Load(ctx, env.Client, env.Client, closed(), opts("weft-ca-root-broken"))
		want := "Secret weft-system/weft-ca-root-broken (the mesh CA root) lacks tls.crt or tls.key: restore them, or delete the Secret"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Load: %v, want %q", err, want)
		}
	})
}
