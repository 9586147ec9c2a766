package kubetest_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/internal/kubetest"
)

// TestServiceAccountTokens: tokens from the real TokenRequest API are
// accepted by the real TokenReview API for their audience only, and
// expired or invalidated tokens are refused — what weft's CA relies on.
func TestServiceAccountTokens(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	cs := env.Clientset

	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa, err := cs.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "orders"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := cs.CoreV1().Secrets("shop").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "orders-binding"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	request := func(t *testing.T, spec authenticationv1.TokenRequestSpec) string {
		t.Helper()
		tr, err := cs.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "orders", &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenRequest %+v: %v", spec, err)
		}
		return tr.Status.Token
	}
	review := func(t *testing.T, token string, audiences ...string) authenticationv1.TokenReviewStatus {
		t.Helper()
		r, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
			Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("TokenReview: %v", err)
		}
		return r.Status
	}
	sign := func(t *testing.T, notBefore, expiry time.Time) string {
		t.Helper()
		tok, err := env.SignServiceAccountToken(kubetest.TokenClaims{
			ServiceAccount: sa, Audiences: []string{"weft"}, NotBefore: notBefore, Expiry: expiry,
		})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ten := int64(600) // the shortest expiration TokenRequest allows
	now := time.Now()

	t.Run("audience weft is accepted as the service account", func(t *testing.T) {
		st := review(t, request(t, authenticationv1.TokenRequestSpec{Audiences: []string{"weft"}, ExpirationSeconds: &ten}), "weft")
		if !st.Authenticated || st.Error != "" {
			t.Fatalf("TokenReview: authenticated=%v error=%q, want authenticated", st.Authenticated, st.Error)
		}
		if got, want := st.User.Username, "system:serviceaccount:shop:orders"; got != want {
			t.Errorf("username %q, want %q", got, want)
		}
		if st.User.UID != string(sa.UID) {
			t.Errorf("uid %q, want the ServiceAccount's %q", st.User.UID, sa.UID)
		}
		for _, g := range []string{"system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"} {
			if !slices.Contains(st.User.Groups, g) {
				t.Errorf("groups %v lack %q", st.User.Groups, g)
			}
		}
		if !slices.Equal(st.Audiences, []string{"weft"}) {
			t.Errorf("audiences %v, want [weft]", st.Audiences)
		}
	})

	t.Run("another audience is refused", func(t *testing.T) {
		st := review(t, request(t, authenticationv1.TokenRequestSpec{Audiences: []string{"vault"}, ExpirationSeconds: &ten}), "weft")
		wantRefused(t, st, `audiences ["vault"] is invalid for the target audiences ["weft"]`)
	})

	t.Run("a token without audience has the issuer as audience and is refused for weft", func(t *testing.T) {
		tok := request(t, authenticationv1.TokenRequestSpec{ExpirationSeconds: &ten})
		if st := review(t, tok); !st.Authenticated || !slices.Equal(st.Audiences, []string{kubetest.Issuer}) {
			t.Errorf("review with the apiserver's audiences: authenticated=%v audiences=%v error=%q, want authenticated for [%s]",
				st.Authenticated, st.Audiences, st.Error, kubetest.Issuer)
		}
		wantRefused(t, review(t, tok, "weft"), "is invalid for the target audiences")
	})

	t.Run("TokenRequest refuses an expiration under 10 minutes", func(t *testing.T) {
		short := int64(599)
		_, err := cs.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "orders", &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"weft"}, ExpirationSeconds: &short},
		}, metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), "may not specify a duration less than 10 minutes") {
			t.Fatalf("TokenRequest expirationSeconds=599: err=%v, want the 10-minute minimum", err)
		}
	})

	// TokenRequest cannot issue an expired token (previous case), so these
	// are signed with the apiserver's own key; the first one, valid,
	// proves that the signing is faithful and only the expiry differs.
	t.Run("a token signed with the apiserver key is accepted while valid", func(t *testing.T) {
		st := review(t, sign(t, now.Add(-time.Minute), now.Add(time.Hour)), "weft")
		if !st.Authenticated || st.User.Username != "system:serviceaccount:shop:orders" {
			t.Fatalf("TokenReview: authenticated=%v user=%q error=%q, want system:serviceaccount:shop:orders",
				st.Authenticated, st.User.Username, st.Error)
		}
	})
	t.Run("an expired token is refused", func(t *testing.T) {
		wantRefused(t, review(t, sign(t, now.Add(-2*time.Hour), now.Add(-time.Hour)), "weft"), "service account token has expired")
	})

	t.Run("a token bound to a deleted Secret is refused", func(t *testing.T) {
		tok := request(t, authenticationv1.TokenRequestSpec{
			Audiences: []string{"weft"}, ExpirationSeconds: &ten,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: secret.Name, UID: secret.UID},
		})
		if st := review(t, tok, "weft"); !st.Authenticated {
			t.Fatalf("bound token before the delete: error %q, want authenticated", st.Error)
		}
		if err := cs.CoreV1().Secrets("shop").Delete(ctx, secret.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// The apiserver caches a successful authentication for 10 s
		// (its token cache), so the refusal can lag the delete.
		deleted := time.Now()
		st := review(t, tok, "weft")
		for st.Authenticated && time.Since(deleted) < time.Minute {
			time.Sleep(250 * time.Millisecond)
			st = review(t, tok, "weft")
		}
		wantRefused(t, st, "service account token has been invalidated")
		t.Logf("refused %s after the Secret was deleted", time.Since(deleted).Round(100*time.Millisecond))
	})
}

func wantRefused(t *testing.T, st authenticationv1.TokenReviewStatus, want string) {
	t.Helper()
	if st.Authenticated {
		t.Fatalf("TokenReview authenticated %q, want refused with %q", st.User.Username, want)
	}
	if !strings.Contains(st.Error, want) {
		t.Fatalf("TokenReview error %q, want it to contain %q", st.Error, want)
	}
}

const widgetCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.weft.dev
spec:
  group: test.weft.dev
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer, minimum: 1}
`

// TestCRDsAndKubeconfig: an installed CRD is served at once (its schema
// enforced), and the kubeconfig file works for a child process (kubectl).
func TestCRDsAndKubeconfig(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	crds := env.InstallCRDYAML([]byte(widgetCRD))
	if len(crds) != 1 || crds[0].Name != "widgets.test.weft.dev" {
		t.Fatalf("installed %d CRDs, want widgets.test.weft.dev", len(crds))
	}

	widget := func(name string, size int64) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(schema.GroupVersionKind{Group: "test.weft.dev", Version: "v1", Kind: "Widget"})
		u.SetNamespace("default")
		u.SetName(name)
		_ = unstructured.SetNestedField(u.Object, size, "spec", "size")
		return u
	}
	if err := env.Client.Create(ctx, widget("big", 3)); err != nil {
		t.Fatalf("creating a Widget: %v", err)
	}
	err := env.Client.Create(ctx, widget("empty", 0))
	if err == nil || !strings.Contains(err.Error(), "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1") {
		t.Errorf("creating a Widget with size 0: err=%v, want the CRD schema's minimum", err)
	}
	got := widget("", 0)
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: "big"}, got); err != nil {
		t.Fatal(err)
	}
	if size, _, _ := unstructured.NestedInt64(got.Object, "spec", "size"); size != 3 {
		t.Errorf("stored Widget size %d, want 3", size)
	}

	kubectl := filepath.Join(kubetest.Assets(t), "kubectl")
	out, err := exec.Command(kubectl, "--kubeconfig", env.Kubeconfig, "get", "widgets", "-n", "default", "-o", "name").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl get widgets: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "widget.test.weft.dev/big" {
		t.Errorf("kubectl get widgets: %q, want widget.test.weft.dev/big", got)
	}
}

func TestDecodeCRDs(t *testing.T) {
	for _, tc := range []struct {
		name, docs, err string
		n               int
	}{
		{name: "one", docs: widgetCRD, n: 1},
		{name: "two with an empty document", docs: widgetCRD + "\n---\n---\n" + strings.Replace(widgetCRD, "widgets.test", "gadgets.test", 1), n: 2},
		{name: "another kind", docs: widgetCRD + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", err: `document 2: kind "ConfigMap", want CustomResourceDefinition`},
		{name: "unknown field", docs: strings.Replace(widgetCRD, "scope:", "scop:", 1), err: `document 1: error unmarshaling JSON: while decoding JSON: json: unknown field "scop"`},
		{name: "nothing", docs: "\n---\n", err: "no CustomResourceDefinition in the documents"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crds, err := kubetest.DecodeCRDs([]byte(tc.docs))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err=%v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(crds) != tc.n {
				t.Fatalf("got %d CRDs, err=%v; want %d", len(crds), err, tc.n)
			}
		})
	}
}
