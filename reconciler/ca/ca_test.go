package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

var (
	orders   = cav1.Identity{TrustDomain: "shop.example", Namespace: "shop", ServiceAccount: "orders"}
	payments = cav1.Identity{TrustDomain: "shop.example", Namespace: "shop", ServiceAccount: "payments"}
)

func csrFor(t testing.TB, key crypto.Signer, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		p, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, p)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCA(t testing.TB, cfg Config) *CA {
	t.Helper()
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = "shop.example"
	}
	if cfg.StateDir == "" && cfg.RootCertFile == "" {
		cfg.StateDir = filepath.Join(t.TempDir(), "ca")
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSignWorkloadCertificate(t *testing.T) {
	c := newCA(t, Config{})
	key := p256(t)
	before := time.Now()
	iss, err := c.SignCSR(csrFor(t, key, orders.String()), orders, 0)
	if err != nil {
		t.Fatal(err)
	}
	cert := iss.Cert
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "spiffe://shop.example/ns/shop/sa/orders" {
		t.Errorf("URI SANs %v, want exactly spiffe://shop.example/ns/shop/sa/orders", cert.URIs)
	}
	if len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.EmailAddresses) != 0 {
		t.Errorf("unexpected SANs: %v %v %v", cert.DNSNames, cert.IPAddresses, cert.EmailAddresses)
	}
	if life := cert.NotAfter.Sub(before); life < 24*time.Hour-time.Minute || life > 24*time.Hour+time.Minute {
		t.Errorf("lifetime from now %s, want 24h (the default)", life)
	}
	if cert.IsCA || cert.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("IsCA %v, key usage %v: want a leaf with digitalSignature only", cert.IsCA, cert.KeyUsage)
	}
	if got := cert.ExtKeyUsage; len(got) != 2 || got[0] != x509.ExtKeyUsageServerAuth || got[1] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ext key usage %v, want server+client auth", got)
	}
	if !cert.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Error("certificate is not for the CSR's key")
	}
	// The chain verifies against the trust bundle, for both TLS roles.
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(iss.TrustBundlePEM) {
		t.Fatal("trust bundle has no certificate")
	}
	block, _ := pem.Decode(iss.ChainPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Errorf("verify for %v: %v", u, err)
		}
	}
	other := newCA(t, Config{})
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: other.TrustPool()}); err == nil {
		t.Error("certificate verifies against another CA's root")
	}
	// Two certificates never share a serial.
	iss2, err := c.SignCSR(csrFor(t, key, orders.String()), orders, 0)
	if err != nil {
		t.Fatal(err)
	}
	if iss2.Cert.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Error("same serial twice")
	}
}

func TestLifetimeClamped(t *testing.T) {
	c := newCA(t, Config{DefaultTTL: time.Hour, MinTTL: 30 * time.Second, MaxTTL: 2 * time.Hour})
	for _, tc := range []struct{ ask, want time.Duration }{
		{0, time.Hour}, {30 * time.Second, 30 * time.Second}, {time.Second, 30 * time.Second},
		{90 * time.Minute, 90 * time.Minute}, {48 * time.Hour, 2 * time.Hour},
	} {
		now := time.Now()
		iss, err := c.SignCSR(csrFor(t, p256(t), orders.String()), orders, tc.ask)
		if err != nil {
			t.Fatal(err)
		}
		if got := iss.Cert.NotAfter.Sub(now); got < tc.want-2*time.Second || got > tc.want+time.Second {
			t.Errorf("ask %s: lifetime %s, want %s", tc.ask, got, tc.want)
		}
	}
	if _, err := New(Config{TrustDomain: "x.example", StateDir: t.TempDir(), MinTTL: time.Hour, MaxTTL: time.Minute}); err == nil {
		t.Error("MinTTL > MaxTTL accepted")
	}
}

func TestRefusedCSRs(t *testing.T) {
	c := newCA(t, Config{})
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	good := csrFor(t, p256(t), orders.String())
	tampered := append([]byte(nil), good...)
	{ // flip a bit inside the signed part of the DER
		block, _ := pem.Decode(good)
		der := append([]byte(nil), block.Bytes...)
		der[len(der)/2] ^= 0x01
		tampered = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	for _, tc := range []struct {
		name      string
		csr       []byte
		forbidden bool
		want      string
	}{
		{"other identity", csrFor(t, p256(t), payments.String()), true, "credential of spiffe://shop.example/ns/shop/sa/orders may not request a certificate for spiffe://shop.example/ns/shop/sa/payments"},
		{"other trust domain", csrFor(t, p256(t), "spiffe://evil.example/ns/shop/sa/orders"), true, "spiffe://evil.example/ns/shop/sa/orders"},
		{"two URIs", csrFor(t, p256(t), orders.String(), payments.String()), false, "exactly one SAN"},
		{"no SAN", csrFor(t, p256(t)), false, "exactly one SAN"},
		{"RSA 1024", csrFor(t, rsa1024, orders.String()), false, "RSA 1024 bits"},
		{"P-384", csrFor(t, p384, orders.String()), false, "P-384"},
		{"bad signature", tampered, false, ""},
		{"not PEM", []byte("hello"), false, "PEM"},
	} {
		_, err := c.SignCSR(tc.csr, orders, 0)
		var fe *ForbiddenError
		var be *BadRequestError
		switch {
		case err == nil:
			t.Errorf("%s: signed", tc.name)
			continue
		case tc.forbidden && !errors.As(err, &fe):
			t.Errorf("%s: %v (%T), want a ForbiddenError", tc.name, err, err)
		case !tc.forbidden && !errors.As(err, &be):
			t.Errorf("%s: %v (%T), want a BadRequestError", tc.name, err, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %q does not contain %q", tc.name, err, tc.want)
		}
	}
}

func TestRootPersistedAndReloaded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "ca")
	c1 := newCA(t, Config{StateDir: dir})
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700 | os.ModeDir}, {filepath.Join(dir, RootKeyFileName), 0o600}, {filepath.Join(dir, RootCertFileName), 0o644}} {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != f.mode {
			t.Errorf("%s: mode %v, want %v", f.path, st.Mode(), f.mode)
		}
	}
	root := c1.Root()
	if root.PublicKeyAlgorithm != x509.ECDSA || root.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("root key %v, want ECDSA P-256", root.PublicKeyAlgorithm)
	}
	iss, err := c1.SignCSR(csrFor(t, p256(t), orders.String()), orders, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A restart loads the same root: earlier certificates still verify.
	c2 := newCA(t, Config{StateDir: dir})
	if !c2.Root().Equal(root) {
		t.Fatal("restart generated a new root")
	}
	if _, err := iss.Cert.Verify(x509.VerifyOptions{Roots: c2.TrustPool()}); err != nil {
		t.Errorf("certificate from before the restart: %v", err)
	}
	// The same root loaded from files (e.g. a Secret).
	c3 := newCA(t, Config{RootCertFile: filepath.Join(dir, RootCertFileName), RootKeyFile: filepath.Join(dir, RootKeyFileName)})
	if !c3.Root().Equal(root) {
		t.Fatal("root files loaded another root")
	}
	// Half a state dir is an error, not a new root.
	if err := os.Remove(filepath.Join(dir, RootCertFileName)); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{TrustDomain: "shop.example", StateDir: dir}); err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Errorf("state dir with only the key: %v", err)
	}
	// A key that is not the certificate's is refused.
	other := newCA(t, Config{})
	if _, err := New(Config{TrustDomain: "shop.example", RootCertFile: filepath.Join(other.cfg.StateDir, RootCertFileName), RootKeyFile: filepath.Join(dir, RootKeyFileName)}); err == nil {
		t.Error("mismatched root key accepted")
	}
}

func TestTokenAuthenticator(t *testing.T) {
	a := NewTokenAuthenticator()
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Add(tok, orders); err != nil {
		t.Fatal(err)
	}
	if id, err := a.Authenticate(context.Background(), tok); err != nil || id != orders {
		t.Errorf("Authenticate(token) = %v, %v", id, err)
	}
	for _, bad := range []string{"", tok[:len(tok)-1], tok + "x", "nonsense-token-0123456789"} {
		if _, err := a.Authenticate(context.Background(), bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) = %v, want ErrUnauthenticated", bad, err)
		}
	}
	for h := range a.ids {
		if string(h[:]) == tok || strings.Contains(string(h[:]), tok) {
			t.Error("registry stores the token itself")
		}
	}
	a.Remove(tok)
	if _, err := a.Authenticate(context.Background(), tok); err == nil {
		t.Error("removed token still authenticates")
	}
	path := filepath.Join(t.TempDir(), "tokens", "orders.token")
	if err := WriteTokenFile(path, tok); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode() != 0o600 {
		t.Errorf("token file mode %v, want 0600", st.Mode())
	}
}

// startServer serves c's CertificateService over TLS on 127.0.0.1 and
// returns a client that trusts the CA's bundle.
func startServer(t *testing.T, c *CA, auth Authenticator) cav1.CertificateServiceClient {
	t.Helper()
	return startServerObserved(t, c, auth, nil)
}

// startServerObserved is startServer with an Observer (nil: none).
func startServerObserved(t *testing.T, c *CA, auth Authenticator, o Observer) cav1.CertificateServiceClient {
	t.Helper()
	tlsCfg, err := c.ServerTLS(cav1.Identity{TrustDomain: c.TrustDomain(), Namespace: "weft-system", ServiceAccount: "weft"}, []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, tls.NoClientCert)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	srv := NewServer(c, auth, nil)
	if o != nil {
		srv.Observe(o)
	}
	srv.Register(gs)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.TrustBundlePEM())
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return cav1.NewCertificateServiceClient(conn)
}

// TestGRPCSign: the CA over gRPC+TLS, as an agent calls it.
func TestGRPCSign(t *testing.T) {
	c := newCA(t, Config{MinTTL: time.Second})
	auth := NewTokenAuthenticator()
	tok, _ := NewToken()
	if err := auth.Add(tok, orders); err != nil {
		t.Fatal(err)
	}
	cl := startServer(t, c, auth)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := cl.Sign(cav1.WithToken(ctx, tok), &cav1.SignRequest{CsrPem: csrFor(t, p256(t), orders.String()), RequestedTtl: durationpb.New(30 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(resp.CertChainPem)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.URIs[0].String() != orders.String() || !resp.NotAfter.AsTime().Equal(cert.NotAfter) {
		t.Errorf("cert for %v until %v; response says %v", cert.URIs, cert.NotAfter, resp.NotAfter.AsTime())
	}
	if life := time.Until(cert.NotAfter); life > 30*time.Second || life < 20*time.Second {
		t.Errorf("lifetime %s, want the requested 30s", life)
	}
	if string(resp.TrustBundlePem) != string(c.TrustBundlePEM()) {
		t.Error("trust bundle differs from the CA's")
	}

	for _, tc := range []struct {
		name  string
		ctx   context.Context
		csr   []byte
		code  codes.Code
		parts []string
	}{
		{"no token", ctx, csrFor(t, p256(t), orders.String()), codes.Unauthenticated, nil},
		{"unknown token", cav1.WithToken(ctx, "not-a-token-of-this-mesh"), csrFor(t, p256(t), orders.String()), codes.Unauthenticated, []string{"unknown token"}},
		{"another identity", cav1.WithToken(ctx, tok), csrFor(t, p256(t), payments.String()), codes.PermissionDenied, []string{orders.String(), payments.String()}},
		{"weak key", cav1.WithToken(ctx, tok), csrFor(t, mustRSA(t, 1024), orders.String()), codes.InvalidArgument, []string{"RSA 1024"}},
	} {
		_, err := cl.Sign(tc.ctx, &cav1.SignRequest{CsrPem: tc.csr})
		st, _ := status.FromError(err)
		if st.Code() != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
		for _, p := range tc.parts {
			if !strings.Contains(st.Message(), p) {
				t.Errorf("%s: message %q does not name %q", tc.name, st.Message(), p)
			}
		}
	}
}

func TestServingCertificate(t *testing.T) {
	c := newCA(t, Config{})
	id := cav1.Identity{TrustDomain: "shop.example", Namespace: "weft-system", ServiceAccount: "weft"}
	cert, err := c.ServingCertificate(id, []string{"localhost", "weft.weft-system.svc"}, []net.IP{net.IPv4(127, 0, 0, 1)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"localhost", "weft.weft-system.svc", "127.0.0.1"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: c.TrustPool(), DNSName: name}); err != nil {
			t.Errorf("verify as %s: %v", name, err)
		}
	}
	if cert.Leaf.URIs[0].String() != id.String() {
		t.Errorf("URI SAN %v", cert.Leaf.URIs)
	}
}

func mustRSA(t testing.TB, bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// BenchmarkSign: one CSR -> certificate through SignCSR (parse, signature
// check, policy, sign), reported as certificates per second.
func BenchmarkSign(b *testing.B) {
	c := newCA(b, Config{})
	csr := csrFor(b, p256(b), orders.String())
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := c.SignCSR(csr, orders, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "certs/s")
}

// BenchmarkSignParallel: the same with GOMAXPROCS concurrent callers.
func BenchmarkSignParallel(b *testing.B) {
	c := newCA(b, Config{})
	csr := csrFor(b, p256(b), orders.String())
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.SignCSR(csr, orders, 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "certs/s")
}

// x509VerifyOptions verifies a workload certificate against c's bundle.
func x509VerifyOptions(c *CA) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: c.TrustPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}
