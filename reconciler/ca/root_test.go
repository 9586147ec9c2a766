package ca

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/durationpb"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

// TestRootFromPEM: a root made by GenerateRoot and handed over as PEM
// (what the controller reads from its Secret) signs, and two CAs built
// from the same PEM — two replicas — issue certificates that verify
// against each other's trust bundle.
func TestRootFromPEM(t *testing.T) {
	certPEM, keyPEM, err := GenerateRoot("shop.example", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{TrustDomain: "shop.example", RootCertPEM: certPEM, RootKeyPEM: keyPEM})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{TrustDomain: "shop.example", RootCertPEM: certPEM, RootKeyPEM: keyPEM})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := b.SignCSR(csrFor(t, p256(t), orders.String()), orders, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.Cert.Verify(x509VerifyOptions(a)); err != nil {
		t.Fatalf("a certificate of replica b does not verify with replica a's bundle: %v", err)
	}
	if string(a.TrustBundlePEM()) != string(b.TrustBundlePEM()) {
		t.Error("the replicas' trust bundles differ")
	}

	other, otherKey, err := GenerateRoot("other.example", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"another trust domain", Config{TrustDomain: "shop.example", RootCertPEM: other, RootKeyPEM: otherKey},
			`is the CA of trust domain "other.example", not "shop.example"`},
		{"a key that is not the root's", Config{TrustDomain: "shop.example", RootCertPEM: certPEM, RootKeyPEM: otherKey},
			"the root key is not the key of the root certificate"},
		{"no key", Config{TrustDomain: "shop.example", RootCertPEM: certPEM}, "give both RootCertPEM and RootKeyPEM"},
		{"PEM and a state dir", Config{TrustDomain: "shop.example", RootCertPEM: certPEM, RootKeyPEM: keyPEM, StateDir: t.TempDir()},
			"and no StateDir or root files"},
		{"not PEM", Config{TrustDomain: "shop.example", RootCertPEM: []byte("root"), RootKeyPEM: keyPEM}, "the root certificate: no PEM CERTIFICATE block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestMetrics: the gRPC service counts what it signs and refuses, and the
// nearest expiry is that of the identity whose latest certificate
// expires first.
func TestMetrics(t *testing.T) {
	c := newCA(t, Config{MinTTL: time.Second})
	auth := NewTokenAuthenticator()
	tokOrders, _ := NewToken()
	tokPayments, _ := NewToken()
	if err := auth.Add(tokOrders, orders); err != nil {
		t.Fatal(err)
	}
	if err := auth.Add(tokPayments, payments); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, c)
	if err != nil {
		t.Fatal(err)
	}
	cl := startServerObserved(t, c, auth, m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sign := func(tok string, id cav1.Identity, ttl time.Duration) error {
		_, err := cl.Sign(cav1.WithToken(ctx, tok), &cav1.SignRequest{CsrPem: csrFor(t, p256(t), id.String()), RequestedTtl: durationpb.New(ttl)})
		return err
	}
	if err := sign(tokOrders, orders, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := sign(tokPayments, payments, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	// orders renews: its latest certificate now expires after payments'.
	if err := sign(tokOrders, orders, 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := sign(tokOrders, payments, time.Hour); err == nil {
		t.Fatal("a CSR for another identity was signed")
	}
	if err := sign("unknown-token-0123456789", orders, time.Hour); err == nil {
		t.Fatal("a CSR with an unknown token was signed")
	}

	want := `
# HELP weft_ca_certificates_signed_total Workload certificates signed by the mesh CA.
# TYPE weft_ca_certificates_signed_total counter
weft_ca_certificates_signed_total 3
# HELP weft_ca_csr_refused_total CSRs the mesh CA refused, by gRPC status code.
# TYPE weft_ca_csr_refused_total counter
weft_ca_csr_refused_total{code="PermissionDenied"} 1
weft_ca_csr_refused_total{code="Unauthenticated"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), MetricSigned, MetricRefused); err != nil {
		t.Error(err)
	}
	nearest, ok := m.Nearest()
	if d := time.Until(nearest); !ok || d < 110*time.Minute || d > 2*time.Hour {
		t.Errorf("nearest expiry in %s, want payments' (2h)", d)
	}
	if got := testutil.ToFloat64(m.root); got != float64(c.Root().NotAfter.Unix()) {
		t.Errorf("root expiry %v, want %d", got, c.Root().NotAfter.Unix())
	}
	// Once every certificate has expired there is no sample at all.
	m.now = func() time.Time { return time.Now().Add(4 * time.Hour) }
	if n, err := testutil.GatherAndCount(reg, MetricNearestExpiry); err != nil || n != 0 {
		t.Errorf("%d samples of %s after every certificate expired (%v), want none", n, MetricNearestExpiry, err)
	}
}
