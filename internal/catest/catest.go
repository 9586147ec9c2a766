// Package catest gives tests the certificate a workload's agent would
// hold: a key made in the test process and a certificate for it signed
// by a mesh CA (package reconciler/ca), as the agent's CSR gets it.
//
// It imports reconciler/ca, so only packages that may import the
// reconciler (reconciler, up, tests) can use it (tests/layering_test.go).
package catest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"testing"
	"time"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/ca"
)

// WorkloadCert is a certificate of c for id, valid for an hour, with its
// ECDSA P-256 key: what a workload of that identity (or an attacker who
// stole its key) presents.
func WorkloadCert(t testing.TB, c *ca.CA, id cav1.Identity) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id.URL()}}, key)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := c.SignCSR(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{iss.Cert.Raw}, PrivateKey: key, Leaf: iss.Cert}
}
