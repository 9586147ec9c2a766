package webhookcert

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Defaults of Options.
const (
	DefaultSecretName     = "weft-webhook-tls"
	DefaultWebhookName    = "weft-injector"
	DefaultCAValidity     = 365 * 24 * time.Hour
	DefaultCertValidity   = 90 * 24 * time.Hour
	DefaultInterval       = time.Minute
	DefaultReloadInterval = 10 * time.Second
)

// The Secret's keys besides corev1.TLSCertKey and corev1.TLSPrivateKeyKey.
const (
	CACertKey = "ca.crt"
	CAKeyKey  = "ca.key"
)

// Options of Certs.
type Options struct {
	// Namespace of the Secret (the controller's), required.
	Namespace string
	// SecretName (default weft-webhook-tls) and WebhookName, the
	// MutatingWebhookConfiguration whose webhooks get the caBundle
	// (default weft-injector).
	SecretName, WebhookName string
	// Hosts are the serving certificate's names: DNS names and IP
	// addresses (e.g. weft-controller.weft-system.svc), required.
	Hosts []string
	// CAValidity and CertValidity (defaults 1 year and 90 days); each is
	// replaced when less than a third of its life is left.
	CAValidity, CertValidity time.Duration
	// Interval of the leader's rotation pass (default 1 min) and
	// ReloadInterval of every replica's read of the Secret (default 10 s).
	Interval, ReloadInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log (default: discard).
	Log *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Namespace == "" {
		return o, errors.New("webhookcert: no namespace")
	}
	if len(o.Hosts) == 0 {
		return o, errors.New("webhookcert: no hosts for the serving certificate")
	}
	if o.SecretName == "" {
		o.SecretName = DefaultSecretName
	}
	if o.WebhookName == "" {
		o.WebhookName = DefaultWebhookName
	}
	if o.CAValidity == 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.CertValidity == 0 {
		o.CertValidity = DefaultCertValidity
	}
	if o.CertValidity > o.CAValidity {
		return o, fmt.Errorf("webhookcert: certificate validity %s exceeds the CA's %s", o.CertValidity, o.CAValidity)
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.ReloadInterval == 0 {
		o.ReloadInterval = DefaultReloadInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	o.Hosts = slices.Clone(o.Hosts)
	slices.Sort(o.Hosts)
	o.Hosts = slices.Compact(o.Hosts)
	return o, nil
}

// Certs keeps the webhook's serving certificate (see the package
// documentation).
type Certs struct {
	read  client.Reader
	write client.Client
	opts  Options

	mu      sync.Mutex
	cert    *tls.Certificate
	loadErr error
}

// New is a Certs that reads with read (uncached: the API reader of a
// manager) and writes with write.
func New(read client.Reader, write client.Client, opts Options) (*Certs, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Certs{read: read, write: write, opts: o, loadErr: errors.New("the Secret has not been read yet")}, nil
}

// GetCertificate is for the webhook server's tls.Config: the serving
// certificate last read from the Secret.
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil {
		return nil, fmt.Errorf("webhookcert: no serving certificate yet: %w", c.loadErr)
	}
	return c.cert, nil
}

// Checker fails until a serving certificate is loaded (for the manager's
// readiness checks).
func (c *Certs) Checker() healthz.Checker {
	return func(*http.Request) error {
		_, err := c.GetCertificate(nil)
		return err
	}
}

// Rotator is the leader's runnable: Rotate every Interval.
func (c *Certs) Rotator() manager.Runnable { return &loop{c: c, leader: true} }

// Loader is every replica's runnable: Load every ReloadInterval.
func (c *Certs) Loader() manager.Runnable { return &loop{c: c} }

type loop struct {
	c      *Certs
	leader bool
}

func (l *loop) NeedLeaderElection() bool { return l.leader }

func (l *loop) Start(ctx context.Context) error {
	every, pass, what := l.c.opts.ReloadInterval, l.c.Load, "loading the webhook's serving certificate"
	if l.leader {
		every, pass, what = l.c.opts.Interval, l.c.Rotate, "rotating the webhook's certificates"
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := pass(ctx); err != nil && ctx.Err() == nil {
			l.c.opts.Log.Error("webhookcert: "+what, "err", err, "retry", every)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Load reads the Secret and serves its certificate.
func (c *Certs) Load(ctx context.Context) error {
	sec := &corev1.Secret{}
	err := c.read.Get(ctx, client.ObjectKey{Namespace: c.opts.Namespace, Name: c.opts.SecretName}, sec)
	if err == nil {
		err = c.adopt(sec)
	} else if apierrors.IsNotFound(err) {
		err = fmt.Errorf("Secret %s/%s does not exist yet (the leader creates it)", c.opts.Namespace, c.opts.SecretName)
	}
	if err != nil {
		c.mu.Lock()
		c.loadErr = err
		c.mu.Unlock()
	}
	return err
}

// adopt serves the Secret's certificate when it is a valid one.
func (c *Certs) adopt(sec *corev1.Secret) error {
	cert, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return fmt.Errorf("Secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	if now := c.opts.Now(); now.After(cert.Leaf.NotAfter) {
		return fmt.Errorf("Secret %s/%s: the serving certificate expired at %s", sec.Namespace, sec.Name, cert.Leaf.NotAfter.Format(time.RFC3339))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil || !bytes.Equal(c.cert.Certificate[0], cert.Certificate[0]) {
		c.opts.Log.Info("webhookcert: serving certificate loaded", "serial", cert.Leaf.SerialNumber.Text(16), "notAfter", cert.Leaf.NotAfter)
	}
	c.cert, c.loadErr = &cert, nil
	return nil
}

// state is what the Secret holds, parsed.
type state struct {
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	bundle  []*x509.Certificate // current CA first
	leaf    *x509.Certificate
	leafKey *ecdsa.PrivateKey
}

// Rotate is one pass of the leader (see the package documentation).
func (c *Certs) Rotate(ctx context.Context) error {
	now := c.opts.Now()
	key := client.ObjectKey{Namespace: c.opts.Namespace, Name: c.opts.SecretName}
	sec := &corev1.Secret{}
	exists := true
	if err := c.read.Get(ctx, key, sec); apierrors.IsNotFound(err) {
		exists = false
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name,
				Labels: map[string]string{"app.kubernetes.io/managed-by": "weft", "app.kubernetes.io/component": "webhook"}},
			Type: corev1.SecretTypeTLS,
		}
	} else if err != nil {
		return fmt.Errorf("reading Secret %s: %w", key, err)
	}
	st := parse(sec.Data)

	// 1. The CA.
	caChanged := false
	if st.ca == nil || renewDue(st.ca, now) {
		ca, caKey, err := newCA(now, c.opts.CAValidity)
		if err != nil {
			return err
		}
		why := "none"
		if st.ca != nil {
			why = "the current one expires at " + st.ca.NotAfter.Format(time.RFC3339)
		}
		c.opts.Log.Info("webhookcert: new CA", "why", why, "notAfter", ca.NotAfter)
		st.bundle = append([]*x509.Certificate{ca}, st.bundle...)
		st.ca, st.caKey, caChanged = ca, caKey, true
	}
	st.bundle = slices.DeleteFunc(st.bundle, func(b *x509.Certificate) bool { return now.After(b.NotAfter) })
	bundlePEM := encodeCerts(st.bundle...)

	// 2. The CA bundle first: in the Secret, then in the webhooks. A new
	// Secret is written whole (the API server requires tls.crt and
	// tls.key in a kubernetes.io/tls Secret): nothing trusts or serves
	// it before the patch anyway.
	if !exists {
		if err := c.issue(&st, sec, now, "none"); err != nil {
			return err
		}
	}
	if !exists || caChanged || !bytes.Equal(sec.Data[CACertKey], bundlePEM) {
		caKeyPEM, err := encodeKey(st.caKey)
		if err != nil {
			return err
		}
		setData(sec, CACertKey, bundlePEM)
		setData(sec, CAKeyKey, caKeyPEM)
		if err := c.save(ctx, sec, &exists); err != nil {
			return err
		}
	}
	if err := c.patchCABundle(ctx, bundlePEM); err != nil {
		return err
	}

	// 3. The serving certificate.
	if why := c.leafDue(st, now); why != "" {
		if err := c.issue(&st, sec, now, why); err != nil {
			return err
		}
		if err := c.save(ctx, sec, &exists); err != nil {
			return err
		}
	}
	return c.adopt(sec)
}

// issue puts a new serving certificate from st's CA into st and sec.
func (c *Certs) issue(st *state, sec *corev1.Secret, now time.Time, why string) error {
	leaf, leafKey, err := newLeaf(now, c.opts.CertValidity, c.opts.Hosts, st.ca, st.caKey)
	if err != nil {
		return err
	}
	keyPEM, err := encodeKey(leafKey)
	if err != nil {
		return err
	}
	setData(sec, corev1.TLSCertKey, encodeCerts(leaf, st.ca))
	setData(sec, corev1.TLSPrivateKeyKey, keyPEM)
	st.leaf, st.leafKey = leaf, leafKey
	c.opts.Log.Info("webhookcert: new serving certificate", "why", why, "hosts", c.opts.Hosts,
		"serial", leaf.SerialNumber.Text(16), "notAfter", leaf.NotAfter)
	return nil
}

// leafDue is why a new serving certificate is needed, "" if none is.
func (c *Certs) leafDue(st state, now time.Time) string {
	switch {
	case st.leaf == nil || st.leafKey == nil:
		return "none"
	case !st.leafKey.PublicKey.Equal(st.leaf.PublicKey):
		return "its key does not match"
	case st.leaf.CheckSignatureFrom(st.ca) != nil:
		return "not signed by the current CA"
	case !slices.Equal(hostsOf(st.leaf), c.opts.Hosts):
		return fmt.Sprintf("its hosts %v are not %v", hostsOf(st.leaf), c.opts.Hosts)
	case renewDue(st.leaf, now):
		return "it expires at " + st.leaf.NotAfter.Format(time.RFC3339)
	}
	return ""
}

// save creates or updates the Secret (with its resourceVersion: a
// conflict fails this pass).
func (c *Certs) save(ctx context.Context, sec *corev1.Secret, exists *bool) error {
	var err error
	if *exists {
		err = c.write.Update(ctx, sec)
	} else {
		err = c.write.Create(ctx, sec)
	}
	if err != nil {
		return fmt.Errorf("writing Secret %s/%s: %w", sec.Namespace, sec.Name, err)
	}
	*exists = true
	return nil
}

// patchCABundle sets every webhook's caBundle of the webhook
// configuration to bundle, when it is not already.
func (c *Certs) patchCABundle(ctx context.Context, bundle []byte) error {
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	if err := c.read.Get(ctx, client.ObjectKey{Name: c.opts.WebhookName}, mwc); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("MutatingWebhookConfiguration %s does not exist (environments/deploy installs it): pods are not injected", c.opts.WebhookName)
		}
		return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", c.opts.WebhookName, err)
	}
	orig := mwc.DeepCopy()
	changed := false
	for i := range mwc.Webhooks {
		if !bytes.Equal(mwc.Webhooks[i].ClientConfig.CABundle, bundle) {
			mwc.Webhooks[i].ClientConfig.CABundle = bundle
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := c.write.Patch(ctx, mwc, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patching the caBundle of MutatingWebhookConfiguration %s: %w", c.opts.WebhookName, err)
	}
	c.opts.Log.Info("webhookcert: caBundle patched", "webhookConfiguration", c.opts.WebhookName, "cas", bytes.Count(bundle, []byte("BEGIN CERTIFICATE")))
	return nil
}

// renewDue: less than a third of c's life is left.
func renewDue(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Sub(now) < life/3
}

// parse reads what it can of the Secret; anything unreadable is left nil
// and made again.
func parse(data map[string][]byte) state {
	var st state
	st.caKey, _ = decodeKey(data[CAKeyKey])
	for _, c := range decodeCerts(data[CACertKey]) {
		if st.ca == nil && st.caKey != nil && st.caKey.PublicKey.Equal(c.PublicKey) && c.IsCA {
			st.ca = c
			continue
		}
		st.bundle = append(st.bundle, c)
	}
	if st.ca == nil {
		st.caKey = nil
	} else {
		st.bundle = append([]*x509.Certificate{st.ca}, st.bundle...)
	}
	if certs := decodeCerts(data[corev1.TLSCertKey]); len(certs) > 0 {
		st.leaf = certs[0]
	}
	st.leafKey, _ = decodeKey(data[corev1.TLSPrivateKeyKey])
	if st.ca == nil {
		st.leaf, st.leafKey = nil, nil
	}
	return st
}

func setData(sec *corev1.Secret, k string, v []byte) {
	if sec.Data == nil {
		sec.Data = map[string][]byte{}
	}
	sec.Data[k] = v
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newCA(now time.Time, validity time.Duration) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{Organization: []string{"weft"}, CommonName: "weft webhook CA " + now.UTC().Format("2006-01-02T15:04:05Z")},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

func newLeaf(now time.Time, validity time.Duration, hosts []string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{Organization: []string{"weft"}, CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

// hostsOf is a certificate's DNS names and IPs, sorted.
func hostsOf(c *x509.Certificate) []string {
	out := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	slices.Sort(out)
	return out
}

func encodeCerts(cs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range cs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func decodeCerts(b []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(blk.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func decodeKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an ECDSA key")
	}
	return ek, nil
}
