package webhookcert_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/reconciler/kube/webhookcert"
)

const (
	ns   = "weft-system"
	host = "weft-controller.weft-system.svc"
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	t     *testing.T
	env   *kubetest.Env
	clock *clock
}

func newFixture(t *testing.T) *fixture {
	env := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(tooltest.RepoRoot(), "environments", "deploy", "webhook.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := yaml.UnmarshalStrict(raw, mwc); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Create(ctx, mwc); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, env: env, clock: &clock{now: time.Now()}}
}

func (f *fixture) certs(hosts ...string) *webhookcert.Certs {
	f.t.Helper()
	c, err := webhookcert.New(f.env.Client, f.env.Client, webhookcert.Options{Namespace: ns, Hosts: hosts, Now: f.clock.Now})
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fixture) secret() *corev1.Secret {
	f.t.Helper()
	s := &corev1.Secret{}
	if err := f.env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: webhookcert.DefaultSecretName}, s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fixture) caBundle() []byte {
	f.t.Helper()
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := f.env.Client.Get(context.Background(), client.ObjectKey{Name: webhookcert.DefaultWebhookName}, m); err != nil {
		f.t.Fatal(err)
	}
	return m.Webhooks[0].ClientConfig.CABundle
}

func certs(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
}

// verify checks that the serving certificate verifies for host against
// the webhook configuration's caBundle, as the API server does, at the
// test clock's time; it returns the leaf.
func (f *fixture) verify(c *webhookcert.Certs, host string) *x509.Certificate {
	f.t.Helper()
	cert, err := c.GetCertificate(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(f.caBundle()) {
		f.t.Fatal("the caBundle holds no certificate")
	}
	leaf := cert.Leaf
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		ic, _ := x509.ParseCertificate(der)
		inter.AddCert(ic)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: pool, Intermediates: inter, CurrentTime: f.clock.Now()}); err != nil {
		f.t.Fatalf("the serving certificate does not verify for %s against the caBundle: %v", host, err)
	}
	return leaf
}

// TestCreatedPatchedRotated: the leader's pass creates the Secret (CA and
// serving certificate for the hosts), patches the caBundle so that the
// certificate verifies as the API server checks it (a real TLS handshake
// at first), changes nothing when nothing is due, repairs a caBundle that
// was reset, renews the serving certificate when two thirds of its life
// have passed, rolls the CA over with both CAs trusted until the old one
// expires, and reissues when the hosts change; a replica that is not the
// leader serves what the Secret holds.
func TestCreatedPatchedRotated(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	follower := f.certs(host, "127.0.0.1")
	if err := follower.Load(ctx); err == nil || !strings.Contains(err.Error(), "does not exist yet (the leader creates it)") {
		t.Errorf("load before the leader: %v", err)
	}
	if err := follower.Checker()(nil); err == nil {
		t.Error("a replica without a certificate reports ready")
	}

	leader := f.certs(host, "127.0.0.1")
	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	sec := f.secret()
	if sec.Type != corev1.SecretTypeTLS || len(sec.Data["tls.key"]) == 0 || len(sec.Data["ca.key"]) == 0 {
		t.Fatalf("Secret type %s keys %v", sec.Type, keys(sec.Data))
	}
	if string(f.caBundle()) != string(sec.Data["ca.crt"]) {
		t.Fatal("the caBundle is not the Secret's ca.crt")
	}
	first := f.verify(leader, host)
	if first.NotAfter.Sub(f.clock.Now()) < 89*24*time.Hour || len(first.IPAddresses) != 1 {
		t.Errorf("serving certificate until %s, IPs %v", first.NotAfter, first.IPAddresses)
	}
	handshake(t, leader, f.caBundle(), host)

	// Nothing due: nothing written.
	rv := sec.ResourceVersion
	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if f.secret().ResourceVersion != rv {
		t.Error("a pass with nothing due wrote the Secret")
	}

	// A replica that is not the leader serves the same certificate.
	if err := follower.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.verify(follower, host); got.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Error("the follower serves another certificate")
	}
	if err := follower.Checker()(nil); err != nil {
		t.Errorf("follower not ready: %v", err)
	}

	// A caBundle reset by re-applying the manifest is repaired.
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := f.env.Client.Get(ctx, client.ObjectKey{Name: webhookcert.DefaultWebhookName}, m); err != nil {
		t.Fatal(err)
	}
	m.Webhooks[0].ClientConfig.CABundle = nil
	if err := f.env.Client.Update(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	f.verify(leader, host)

	// Day 61 of 90: the serving certificate is renewed, the CA kept.
	caBefore := string(f.caBundle())
	f.clock.advance(61 * 24 * time.Hour)
	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	renewed := f.verify(leader, host)
	if renewed.SerialNumber.Cmp(first.SerialNumber) == 0 || string(f.caBundle()) != caBefore {
		t.Errorf("day 61: serial %s (was %s), CA changed %v: want a new certificate from the same CA",
			renewed.SerialNumber, first.SerialNumber, string(f.caBundle()) != caBefore)
	}

	// Day 250 of the CA's 365: a new CA; both trusted; the certificate
	// from the new one.
	oldCA := certs(t, f.caBundle())[0]
	f.clock.advance(189 * 24 * time.Hour)
	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	bundle := certs(t, f.caBundle())
	if len(bundle) != 2 || !bundle[1].Equal(oldCA) || bundle[0].Equal(oldCA) {
		t.Fatalf("day 250: caBundle holds %d CAs, want the new one then the old one", len(bundle))
	}
	if leaf := f.verify(leader, host); leaf.CheckSignatureFrom(bundle[0]) != nil {
		t.Error("day 250: the serving certificate is not from the new CA")
	}

	// Past the old CA's expiry: it leaves the bundle.
	f.clock.advance(120 * 24 * time.Hour)
	if err := leader.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if bundle := certs(t, f.caBundle()); len(bundle) != 1 || bundle[0].Equal(oldCA) {
		t.Errorf("day 370: caBundle holds %d CAs, want only the new one", len(bundle))
	}
	f.verify(leader, host)

	// Other hosts: a new certificate for them.
	moved := f.certs("weft-controller.mesh-system.svc")
	if err := moved.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	f.verify(moved, "weft-controller.mesh-system.svc")
}

// TestNoWebhookConfiguration: without the webhook configuration the pass
// fails saying so (it still keeps the certificate for the server).
func TestNoWebhookConfiguration(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.env.Client.Delete(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookcert.DefaultWebhookName}}); err != nil {
		t.Fatal(err)
	}
	err := f.certs(host).Rotate(ctx)
	if err == nil || !strings.Contains(err.Error(), "MutatingWebhookConfiguration weft-injector does not exist (environments/deploy installs it)") {
		t.Errorf("Rotate: %v", err)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// handshake serves HTTPS with c's GetCertificate and connects to it as
// the API server would: trusting the caBundle, for host.
func handshake(t *testing.T, c *webhookcert.Certs, caBundle []byte, host string) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: c.GetCertificate, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	go srv.Serve(ln)
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caBundle)
	cl := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ln.Addr().String())
		},
	}}
	resp, err := cl.Get("https://" + host + "/")
	if err != nil {
		t.Fatalf("TLS to the webhook's certificate: %v", err)
	}
	resp.Body.Close()
}
