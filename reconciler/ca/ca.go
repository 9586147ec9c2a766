package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

// Defaults of Config.
const (
	DefaultTTL     = 24 * time.Hour
	DefaultMinTTL  = 10 * time.Minute
	DefaultMaxTTL  = 7 * 24 * time.Hour
	DefaultRootTTL = 10 * 365 * 24 * time.Hour
	// Backdate is subtracted from NotBefore to absorb clock skew between
	// the CA and the workloads.
	Backdate = time.Minute
)

// Files the CA keeps in Config.StateDir.
const (
	RootCertFileName = "root.pem"
	RootKeyFileName  = "root-key.pem"
)

// Config configures a CA. Exactly one of StateDir or the pair
// RootCertFile/RootKeyFile names where the root comes from.
type Config struct {
	// TrustDomain is the mesh's SPIFFE trust domain; the CA signs ids of
	// this domain only.
	TrustDomain string
	// StateDir holds the root (root.pem, root-key.pem). On first start the
	// CA generates an ECDSA P-256 root there (directory 0700, key 0600);
	// later starts load it.
	StateDir string
	// RootCertFile and RootKeyFile load an existing root instead (e.g. from
	// a Kubernetes Secret). The key may be PKCS#8, SEC 1 (EC) or PKCS#1.
	RootCertFile, RootKeyFile string
	// RootCertPEM and RootKeyPEM give the root itself (the controller reads
	// them from the Secret weft-ca-root through the API; GenerateRoot
	// makes a new pair). A root whose SPIFFE URI names another trust
	// domain is refused.
	RootCertPEM, RootKeyPEM []byte
	// DefaultTTL is the lifetime of a workload certificate when the CSR
	// asks for none (default 24h). Requests are clamped to [MinTTL, MaxTTL]
	// (defaults 10m and 7d); tests lower MinTTL to exercise rotation.
	DefaultTTL, MinTTL, MaxTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// AllowInsecureKeyPermissions loads a root key file that group or
	// others may read (mode & 0077 != 0) with a warning on Log; without
	// it such a key is refused (ssh's rule for private keys). A key from
	// a Kubernetes Secret volume needs defaultMode 0400 (or this).
	AllowInsecureKeyPermissions bool
	// Log receives warnings (nil: none).
	Log *slog.Logger
}

// CA is the mesh CA: it holds the root and signs workload and serving
// certificates. It is safe for concurrent use.
type CA struct {
	cfg    Config
	root   *x509.Certificate
	key    crypto.Signer
	bundle []byte // PEM of the trust bundle
	pool   *x509.CertPool

	mu sync.Mutex // serialises serving-certificate renewal
}

// New loads or creates the root as cfg says.
func New(cfg Config) (*CA, error) {
	if cfg.TrustDomain == "" {
		return nil, errors.New("ca: no trust domain")
	}
	if err := (cav1.Identity{TrustDomain: cfg.TrustDomain, Namespace: "x", ServiceAccount: "x"}).Validate(); err != nil {
		return nil, fmt.Errorf("ca: trust domain %q is invalid", cfg.TrustDomain)
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = DefaultTTL
	}
	if cfg.MinTTL == 0 {
		cfg.MinTTL = DefaultMinTTL
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.MinTTL > cfg.MaxTTL || cfg.DefaultTTL < cfg.MinTTL || cfg.DefaultTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("ca: want MinTTL <= DefaultTTL <= MaxTTL, have %s, %s, %s", cfg.MinTTL, cfg.DefaultTTL, cfg.MaxTTL)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	c := &CA{cfg: cfg}
	var err error
	switch {
	case len(cfg.RootCertPEM) > 0 || len(cfg.RootKeyPEM) > 0:
		if len(cfg.RootCertPEM) == 0 || len(cfg.RootKeyPEM) == 0 || cfg.StateDir != "" || cfg.RootCertFile != "" || cfg.RootKeyFile != "" {
			return nil, errors.New("ca: give both RootCertPEM and RootKeyPEM, and no StateDir or root files")
		}
		c.root, c.key, err = parseRoot(cfg.RootCertPEM, cfg.RootKeyPEM, "the root certificate", "the root key")
		if err == nil {
			err = checkRootDomain(c.root, cfg.TrustDomain)
		}
	case cfg.RootCertFile != "" || cfg.RootKeyFile != "":
		if cfg.RootCertFile == "" || cfg.RootKeyFile == "" || cfg.StateDir != "" {
			return nil, errors.New("ca: give both RootCertFile and RootKeyFile, and no StateDir")
		}
		c.root, c.key, err = c.loadRoot(cfg.RootCertFile, cfg.RootKeyFile)
	case cfg.StateDir != "":
		c.root, c.key, err = c.loadOrCreate(cfg.StateDir)
	default:
		return nil, errors.New("ca: no StateDir and no root files")
	}
	if err != nil {
		return nil, err
	}
	if !c.root.IsCA || c.root.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("ca: root %q is not a CA certificate (basic constraints / certSign)", c.root.Subject)
	}
	if now := cfg.Now(); now.After(c.root.NotAfter) {
		return nil, fmt.Errorf("ca: root %q expired on %s", c.root.Subject, c.root.NotAfter.UTC().Format(time.RFC3339))
	}
	c.bundle = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.root.Raw})
	c.pool = x509.NewCertPool()
	c.pool.AddCert(c.root)
	return c, nil
}

// TrustDomain is the CA's trust domain.
func (c *CA) TrustDomain() string { return c.cfg.TrustDomain }

// Root is the root certificate.
func (c *CA) Root() *x509.Certificate { return c.root }

// TrustBundlePEM is the PEM of the roots that workloads verify peers with.
// It is public: the agent is given it as a file to verify the CA server.
//
// TODO(rotation): staged trust-bundle rotation (add the new root to the
// bundle, reissue every workload certificate from it, then drop the old
// root) needs a bundle of several roots and a "signing root" pointer; the
// bundle is one root today.
func (c *CA) TrustBundlePEM() []byte { return append([]byte(nil), c.bundle...) }

// TrustPool is the trust bundle as a pool (e.g. tls.Config.ClientCAs of a
// server that workloads connect to with their certificates).
func (c *CA) TrustPool() *x509.CertPool { return c.pool }

// clampTTL turns a requested lifetime into the one the CA grants.
func (c *CA) clampTTL(ttl time.Duration) time.Duration {
	switch {
	case ttl <= 0:
		return c.cfg.DefaultTTL
	case ttl < c.cfg.MinTTL:
		return c.cfg.MinTTL
	case ttl > c.cfg.MaxTTL:
		return c.cfg.MaxTTL
	}
	return ttl
}

// Issued is a signed certificate.
type Issued struct {
	Cert           *x509.Certificate
	ChainPEM       []byte // leaf (the root is not included: peers have it)
	TrustBundlePEM []byte
}

// SignCSR checks csrPEM against owner — a valid signature, an acceptable
// key (ECDSA P-256 or RSA >= 2048), exactly one SAN, the URI of owner's
// SPIFFE id — and signs a workload certificate for ttl (clamped; 0 means
// the default). A CSR for another identity is a *ForbiddenError; any
// other refusal is a *BadRequestError.
func (c *CA) SignCSR(csrPEM []byte, owner cav1.Identity, ttl time.Duration) (*Issued, error) {
	if owner.TrustDomain != c.cfg.TrustDomain {
		return nil, &ForbiddenError{Owner: owner, Requested: owner.String(), Reason: "trust domain is not " + c.cfg.TrustDomain}
	}
	if err := owner.Validate(); err != nil {
		// Authenticators validate what they register; a credential that
		// maps to an ambiguous id is refused here all the same.
		return nil, &ForbiddenError{Owner: owner, Requested: owner.String(), Reason: err.Error()}
	}
	block, rest := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" || len(trimSpace(rest)) != 0 {
		return nil, badRequest("csr_pem is not one PEM CERTIFICATE REQUEST block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, badRequest("parse CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, badRequest("CSR signature: %v", err)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses) != 0 || len(csr.URIs) != 1 {
		return nil, badRequest("CSR must carry exactly one SAN, the workload's SPIFFE URI (has %d URI, %d DNS, %d email, %d IP)",
			len(csr.URIs), len(csr.DNSNames), len(csr.EmailAddresses), len(csr.IPAddresses))
	}
	if got := csr.URIs[0].String(); got != owner.String() {
		return nil, &ForbiddenError{Owner: owner, Requested: got}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{c.cfg.TrustDomain}},
		URIs:        []*url.URL{owner.URL()},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	cert, err := c.sign(csr.PublicKey, tmpl, c.clampTTL(ttl))
	if err != nil {
		return nil, err
	}
	return &Issued{
		Cert:           cert,
		ChainPEM:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		TrustBundlePEM: c.TrustBundlePEM(),
	}, nil
}

// sign fills in the serial and validity of tmpl and signs it with the root.
func (c *CA) sign(pub crypto.PublicKey, tmpl *x509.Certificate, ttl time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-Backdate)
	tmpl.NotAfter = now.Add(ttl)
	if tmpl.NotAfter.After(c.root.NotAfter) {
		tmpl.NotAfter = c.root.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.root, pub, c.key)
	if err != nil {
		return nil, fmt.Errorf("ca: sign: %w", err)
	}
	return x509.ParseCertificate(der)
}

// checkKey accepts ECDSA P-256 and RSA keys of 2048 bits or more.
func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return badRequest("CSR key is ECDSA %s; want P-256", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return badRequest("CSR key is RSA %d bits; want at least 2048", k.N.BitLen())
		}
	default:
		return badRequest("CSR key is %T; want ECDSA P-256 (or RSA >= 2048)", pub)
	}
	return nil
}

// ServingCertificate is a certificate for one of the control plane's own
// TLS listeners (the CA's gRPC listener, the xDS server): SANs dnsNames and
// ips, plus the SPIFFE id id if it is not zero; server and client auth. The
// key is a fresh ECDSA P-256 key that stays in this process.
func (c *CA) ServingCertificate(id cav1.Identity, dnsNames []string, ips []net.IP, ttl time.Duration) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if ttl <= 0 {
		ttl = c.cfg.DefaultTTL
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{Organization: []string{c.cfg.TrustDomain}, CommonName: "weft control plane"},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if id != (cav1.Identity{}) {
		if err := id.Validate(); err != nil {
			return nil, err
		}
		tmpl.URIs = []*url.URL{id.URL()}
	}
	cert, err := c.sign(&key.PublicKey, tmpl, ttl)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

// ServerTLS is a TLS configuration for a control-plane listener: it serves
// a certificate from ServingCertificate (renewed at half life, on the
// next handshake) and, with clientAuth tls.RequireAndVerifyClientCert,
// accepts clients with workload certificates of this CA (e.g. the agents
// connecting to the xDS server). The peer's SPIFFE id is then
// PeerIdentity(state).
func (c *CA) ServerTLS(id cav1.Identity, dnsNames []string, ips []net.IP, clientAuth tls.ClientAuthType) (*tls.Config, error) {
	first, err := c.ServingCertificate(id, dnsNames, ips, 0)
	if err != nil {
		return nil, err
	}
	cur := first
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: clientAuth,
		ClientCAs:  c.pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			leaf := cur.Leaf
			if c.cfg.Now().After(leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)) {
				next, err := c.ServingCertificate(id, dnsNames, ips, 0)
				if err != nil {
					return nil, err
				}
				cur = next
			}
			return cur, nil
		},
	}, nil
}

// PeerIdentity is the SPIFFE id in the verified peer certificate of a TLS
// connection.
func PeerIdentity(state tls.ConnectionState) (cav1.Identity, error) {
	if len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return cav1.Identity{}, errors.New("no verified peer certificate")
	}
	leaf := state.VerifiedChains[0][0]
	if len(leaf.URIs) != 1 {
		return cav1.Identity{}, fmt.Errorf("peer certificate has %d URI SANs, want 1", len(leaf.URIs))
	}
	return cav1.IdentityFromURL(leaf.URIs[0])
}

// loadOrCreate loads the root from dir, or generates and stores one.
func (c *CA) loadOrCreate(dir string) (*x509.Certificate, crypto.Signer, error) {
	certFile, keyFile := filepath.Join(dir, RootCertFileName), filepath.Join(dir, RootKeyFileName)
	_, certErr := os.Stat(certFile)
	_, keyErr := os.Stat(keyFile)
	switch {
	case certErr == nil && keyErr == nil:
		return c.loadRoot(certFile, keyFile)
	case !errors.Is(certErr, os.ErrNotExist) && certErr != nil:
		return nil, nil, fmt.Errorf("ca: %w", certErr)
	case !errors.Is(keyErr, os.ErrNotExist) && keyErr != nil:
		return nil, nil, fmt.Errorf("ca: %w", keyErr)
	case certErr == nil || keyErr == nil:
		return nil, nil, fmt.Errorf("ca: state dir %s has only one of %s and %s: restore the other or remove both to generate a new root (every workload certificate must then be reissued)",
			dir, RootCertFileName, RootKeyFileName)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	certPEM, keyPEM, err := GenerateRoot(c.cfg.TrustDomain, c.cfg.Now())
	if err != nil {
		return nil, nil, err
	}
	// The key first: a root certificate without its key is never left behind.
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	return parseRoot(certPEM, keyPEM, certFile, keyFile)
}

// GenerateRoot makes a new mesh CA root for trustDomain: an ECDSA P-256
// key and a self-signed CA certificate (URI SAN spiffe://<trustDomain>,
// path length 0, certSign and CRLSign, valid from now less Backdate for
// DefaultRootTTL), both PEM ("CERTIFICATE", and "PRIVATE KEY" in
// PKCS#8). The controller stores them in its Secret; a state directory
// in its two files.
func GenerateRoot(trustDomain string, now time.Time) (certPEM, keyPEM []byte, err error) {
	if err := (cav1.Identity{TrustDomain: trustDomain, Namespace: "x", ServiceAccount: "x"}).Validate(); err != nil {
		return nil, nil, fmt.Errorf("ca: trust domain %q is invalid", trustDomain)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"weft"}, CommonName: "weft mesh CA " + trustDomain},
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: trustDomain}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(DefaultRootTTL),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// checkRootDomain refuses a root whose SPIFFE URI SAN names another trust
// domain than the CA's (a root without one is accepted: it may come from
// another tool).
func checkRootDomain(root *x509.Certificate, trustDomain string) error {
	for _, u := range root.URIs {
		if u.Scheme == "spiffe" && u.Host != trustDomain {
			return fmt.Errorf("ca: the root %q is the CA of trust domain %q, not %q: the trust domain cannot change without a new root (and every workload certificate reissued)",
				root.Subject.CommonName, u.Host, trustDomain)
		}
	}
	return nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// checkKeyMode refuses a root key file that group or others may read,
// unless the configuration allows it (then it warns).
func (c *CA) checkKeyMode(keyFile string) error {
	fi, err := os.Stat(keyFile)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		if !c.cfg.AllowInsecureKeyPermissions {
			return fmt.Errorf("ca: root key %s has mode %#o: group or others can read the mesh CA's private key; "+
				"chmod 600 it (and check who copied it), or allow it explicitly (--allow-insecure-key-permissions)", keyFile, perm)
		}
		c.cfg.Log.Warn("the mesh CA's root key is readable by group or others (allowed by --allow-insecure-key-permissions); chmod 600 it",
			"file", keyFile, "mode", fmt.Sprintf("%#o", perm))
	}
	return nil
}

// loadRoot reads a root certificate and its private key (see
// checkKeyMode).
func (c *CA) loadRoot(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	if err := c.checkKeyMode(keyFile); err != nil {
		return nil, nil, err
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %w", err)
	}
	return parseRoot(certPEM, keyPEM, certFile, keyFile)
}

// parseRoot parses a root certificate and its private key (PKCS#8, SEC 1
// or PKCS#1 PEM); certName and keyName name them in errors.
func parseRoot(certPEM, keyPEM []byte, certName, keyName string) (*x509.Certificate, crypto.Signer, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("ca: %s: no PEM CERTIFICATE block", certName)
	}
	root, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %s: %w", certName, err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, fmt.Errorf("ca: %s: no PEM block", keyName)
	}
	var key any
	switch kb.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	default:
		err = fmt.Errorf("unsupported PEM block %q", kb.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ca: %s: %w", keyName, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("ca: %s: key %T cannot sign", keyName, key)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := signer.Public().(equaler); !ok || !pub.Equal(root.PublicKey) {
		return nil, nil, fmt.Errorf("ca: %s is not the key of %s", keyName, certName)
	}
	return root, signer, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\r' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
