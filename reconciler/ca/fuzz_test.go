package ca

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

// FuzzSignCSR: arbitrary CSR bytes (raw DER, or PEM), lifetimes and
// owners. SignCSR never panics; it refuses with a ForbiddenError or a
// BadRequestError, or signs a certificate whose only SAN is the owner's
// SPIFFE id (never what the CSR asked for otherwise), for a valid owner
// of the CA's trust domain, as a leaf that verifies against the root,
// with a lifetime within the CA's range.
func FuzzSignCSR(f *testing.F) {
	c := newCA(f, Config{})
	key := p256(f)
	for _, seed := range [][]byte{
		csrFor(f, key, orders.String()),
		csrFor(f, key, payments.String()),
		csrFor(f, key, "spiffe://evil.example/ns/shop/sa/orders"),
		csrFor(f, key, orders.String(), payments.String()),
		csrFor(f, key, "spiffe://shop.example/ns/shop/sa/orders?x=1"),
		csrFor(f, key, "spiffe://shop.example/ns/shop/sa/%6Frders"),
		csrFor(f, key),
		[]byte("not a csr"),
	} {
		f.Add(seed, int64(3600), "orders")
		if block, _ := pem.Decode(seed); block != nil {
			f.Add(block.Bytes, int64(0), "orders")
		}
	}
	f.Add(csrFor(f, key, "spiffe://shop.example/ns/shop/sa/a/b"), int64(60), "a/b")
	f.Fuzz(func(t *testing.T, csr []byte, ttlSeconds int64, sa string) {
		owner := cav1.Identity{TrustDomain: "shop.example", Namespace: "shop", ServiceAccount: sa}
		in := csr
		if !bytes.HasPrefix(csr, []byte("-----BEGIN")) {
			in = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})
		}
		ttl := time.Duration(ttlSeconds%(30*24*3600)) * time.Second
		iss, err := c.SignCSR(in, owner, ttl)
		if err != nil {
			var fe *ForbiddenError
			var be *BadRequestError
			if !errors.As(err, &fe) && !errors.As(err, &be) {
				t.Fatalf("refusal %v (%T) is neither forbidden nor a bad request", err, err)
			}
			return
		}
		if err := owner.Validate(); err != nil {
			t.Fatalf("signed a certificate for an invalid identity %q: %v", owner, err)
		}
		cert := iss.Cert
		if len(cert.URIs) != 1 || cert.URIs[0].String() != owner.String() || len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.EmailAddresses) != 0 {
			t.Fatalf("certificate SANs: URIs %v DNS %v IP %v email %v; want only %s", cert.URIs, cert.DNSNames, cert.IPAddresses, cert.EmailAddresses, owner)
		}
		if cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign != 0 {
			t.Fatal("signed a CA certificate")
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: c.TrustPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("certificate does not verify: %v", err)
		}
		if life := cert.NotAfter.Sub(cert.NotBefore) - Backdate; life < DefaultMinTTL-time.Second || life > DefaultMaxTTL+time.Second {
			t.Fatalf("lifetime %s outside [%s, %s]", life, DefaultMinTTL, DefaultMaxTTL)
		}
	})
}
