package up_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const limitMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["api"]
		}
		api: {
			ports: http: port: 9080
			versions: v1: labels: version: "v1"
			rateLimit: {requestsPerSecond: 1, burst: 20}
			headers: {
				request: set: {"x-mesh-injected": "yes"}
				response: preset: "security"
			}
		}
`

// Local rate limit: past the burst, 429; header injection visible in the
// echoed request; the security preset in responses.
func TestRateLimitAndHeaders(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, limitMesh)
	tm := startMesh(t, dir, nil)
	c := tm.client("frontend-v1")

	codes := map[int]int{}
	var first http.Header
	var injected string
	start := time.Now()
	for i := 0; i < 40; i++ {
		code, a, h, err := get(c, "http://api:9080/", nil)
		if err != nil {
			t.Fatal(err)
		}
		codes[code]++
		if code == 200 && first == nil {
			first, injected = h, a.Headers["x-mesh-injected"]
		}
	}
	took := time.Since(start)
	t.Logf("40 requests in %s, burst 20 at 1 rps: %v", took.Round(time.Millisecond), codes)
	// The bucket refills one token a second while the requests run.
	refill := int(took/time.Second) + 1
	if codes[200] < 20 || codes[200] > 20+refill || codes[200]+codes[429] != 40 {
		t.Errorf("codes %v, want 20 (+ up to %d refilled) 200 and the rest 429", codes, refill)
	}
	if injected != "yes" {
		t.Errorf("echoed x-mesh-injected = %q, want yes", injected)
	}
	for _, h := range []string{"Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options"} {
		if first.Get(h) == "" {
			t.Errorf("response lacks %s (security preset); headers %v", h, first)
		}
	}
}

const authzMesh = `
		frontend: {
			edge: true
			ports: http: port: 8080
			versions: v1: labels: version: "v1"
			calls: ["api"]
		}
		batch: {
			ports: http: port: 8001
			versions: v1: labels: version: "v1"
			calls: ["api"]
		}
		other: {
			ports: http: port: 8002
			versions: v1: labels: version: "v1"
			calls: ["api"]
		}
		api: {
			ports: http: port: 9080
			versions: v1: labels: version: "v1"
			authz: {
				allow: [{from: ["frontend", "batch"]}]
				deny: [{from: ["batch"], paths: ["/admin/*"]}]
			}
		}
`

// mTLS and authorization at api's inbound Envoy.
func TestMTLSAndAuthz(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, authzMesh)
	tm := startMesh(t, dir, nil)
	api := tm.instance("api-v1")

	// The allowed caller, and the SPIFFE id authz saw.
	code, a, _, err := get(tm.client("frontend-v1"), "http://api:9080/admin/x", nil)
	if err != nil || code != 200 || a == nil {
		t.Fatalf("frontend -> api: %d %v", code, err)
	}
	xfcc := a.Headers["x-forwarded-client-cert"]
	if !strings.Contains(xfcc, "URI=spiffe://t.example/ns/t/sa/frontend") {
		t.Errorf("x-forwarded-client-cert = %q, want the frontend's SPIFFE id", xfcc)
	}
	t.Logf("api saw x-forwarded-client-cert: %s", xfcc)

	for _, tc := range []struct {
		from, path string
		want       int
	}{
		{"batch-v1", "/x", 200},
		{"batch-v1", "/admin/x", 403}, // deny beats allow
		{"other-v1", "/x", 403},       // not in allow
		{"frontend-v1", "/admin/x", 200},
	} {
		code, _, _, err := get(tm.client(tc.from), "http://api:9080"+tc.path, nil)
		if err != nil || code != tc.want {
			t.Errorf("%s -> api %s: %d %v, want %d", tc.from, tc.path, code, err, tc.want)
		}
	}

	// Plaintext to the inbound port: refused (no plaintext chain).
	pc := &http.Client{Timeout: 5 * time.Second}
	if resp, err := pc.Get("http://" + api.Addr(9080) + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("plaintext request to api's inbound port answered %s", resp.Status)
	} else {
		t.Logf("plaintext refused: %v", err)
	}

	// A client certificate from another CA, with the frontend's id.
	cert := foreignCert(t, "spiffe://t.example/ns/t/sa/frontend")
	fc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		// Always present it (Go would skip a certificate that the server's
		// acceptable CAs do not name).
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
		InsecureSkipVerify:   true, // the client's side is not under test
	}}}
	if resp, err := fc.Get("https://" + api.Addr(9080) + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("client with a foreign CA's certificate got %s", resp.Status)
	} else {
		t.Logf("foreign certificate refused: %v", err)
	}
}

// foreignCert is a client certificate for spiffeID from a fresh CA.
func foreignCert(t *testing.T, spiffeID string) tls.Certificate {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "evil root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(spiffeID)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
}
