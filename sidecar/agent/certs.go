package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/durationpb"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

// workloadCert is a certificate with its key (in memory only).
type workloadCert struct {
	tls      tls.Certificate // chain + key, for the agent's own mTLS
	leaf     *x509.Certificate
	chainPEM []byte
	keyPEM   []byte // PKCS#8, handed to Envoy over SDS (same process boundary as the key's owner: the pod)
	bundle   []byte // trust bundle from the CA
	received time.Time
}

// readTrustBundle reads the mesh roots the agent verifies servers with:
// pemBytes if set, else file.
func readTrustBundle(file string, pemBytes []byte) (*x509.CertPool, []byte, error) {
	b, from := pemBytes, "given"
	if len(b) == 0 {
		var err error
		if b, err = os.ReadFile(file); err != nil {
			return nil, nil, fmt.Errorf("agent: trust bundle: %w", err)
		}
		from = file
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, nil, fmt.Errorf("agent: the trust bundle (%s) has no PEM certificate", from)
	}
	return pool, b, nil
}

func serverName(explicit, addr string) string {
	if explicit != "" {
		return explicit
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// dialCA opens the (lazy) connection to the CA, verified with the trust
// bundle; no client certificate (the token authenticates).
func dialCA(cfg *Config, roots *x509.CertPool) (*grpc.ClientConn, error) {
	creds := credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		ServerName: serverName(cfg.CAServerName, cfg.CAAddress),
	})
	return grpc.NewClient(cfg.CAAddress, grpc.WithTransportCredentials(creds))
}

// issue makes a fresh key, sends its CSR and returns the certificate.
func issue(ctx context.Context, cfg *Config, client cav1.CertificateServiceClient) (*workloadCert, error) {
	tokenBytes, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	token := strings.TrimSpace(string(tokenBytes))
	if token == "" {
		return nil, fmt.Errorf("token file %s is empty", cfg.TokenFile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{cfg.Identity.URL()}}, key)
	if err != nil {
		return nil, err
	}
	req := &cav1.SignRequest{CsrPem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})}
	if cfg.CertTTL > 0 {
		req.RequestedTtl = durationpb.New(cfg.CertTTL)
	}
	resp, err := client.Sign(cav1.WithToken(ctx, token), req)
	if err != nil {
		return nil, err
	}
	var chain [][]byte
	rest := resp.GetCertChainPem()
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			chain = append(chain, b.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, errors.New("CA returned no certificate")
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, err
	}
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("CA returned a certificate for another key")
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != cfg.Identity.String() {
		return nil, fmt.Errorf("CA returned a certificate for %v, want %s", leaf.URIs, cfg.Identity)
	}
	bundle := x509.NewCertPool()
	if !bundle.AppendCertsFromPEM(resp.GetTrustBundlePem()) {
		return nil, errors.New("CA returned no trust bundle")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: bundle, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("CA's certificate does not verify against its trust bundle: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &workloadCert{
		tls:      tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf},
		leaf:     leaf,
		chainPEM: resp.GetCertChainPem(),
		keyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		bundle:   resp.GetTrustBundlePem(),
		received: time.Now(),
	}, nil
}

// renewDelay is when to renew c: at half of its remaining life, less a
// random share of up to jitter of that life, so that a fleet issued at
// once does not renew at once.
func renewDelay(c *workloadCert, jitter float64) time.Duration {
	life := c.leaf.NotAfter.Sub(c.received)
	if life <= 0 {
		return 0
	}
	j := time.Duration(0)
	if n := int64(float64(life) * jitter); n > 0 {
		r, err := rand.Int(rand.Reader, big.NewInt(n))
		if err == nil {
			j = time.Duration(r.Int64())
		}
	}
	return life/2 - j
}
