package caroot

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/reconciler/ca"
)

// Defaults of Options.
const (
	DefaultSecretName   = "weft-ca-root"
	DefaultPollInterval = time.Second
)

// Keys of the Secret (those of a kubernetes.io/tls Secret).
const (
	CertKey = corev1.TLSCertKey       // tls.crt: the root certificate, PEM
	KeyKey  = corev1.TLSPrivateKeyKey // tls.key: its private key, PEM (PKCS#8)
)

// TrustDomainAnnotation on the Secret records the trust domain the root
// was made for (informative: the certificate's URI SAN is what counts).
const TrustDomainAnnotation = "mesh.weft.dev/trust-domain"

// Options say where the root lives.
type Options struct {
	// Namespace is the controller's namespace; Name the Secret's
	// (default weft-ca-root).
	Namespace, Name string
	// TrustDomain is the mesh's: a new root is made for it.
	TrustDomain string
	// PollInterval is how often a replica that waits for the leader reads
	// the Secret again (default 1s).
	PollInterval time.Duration
	// Now is the clock of a new root (default time.Now).
	Now func() time.Time
	// Logger (default: discard).
	Logger *slog.Logger
}

// Root is the root's PEM, as the Secret holds it.
type Root struct {
	CertPEM, KeyPEM []byte
	// Created: this replica generated the root and created the Secret.
	Created bool
}

// Load returns the root from the Secret, creating it if this replica is
// the leader (elected is closed) and the Secret is absent, or waiting for
// it otherwise; see the package documentation. api reads uncached (the
// manager's APIReader); w creates the Secret (the manager's client). It
// returns when it has the root, or with ctx's error.
func Load(ctx context.Context, api client.Reader, w client.Writer, elected <-chan struct{}, opts Options) (*Root, error) {
	opts = opts.withDefaults()
	key := client.ObjectKey{Namespace: opts.Namespace, Name: opts.Name}
	waiting := false
	for {
		root, err := read(ctx, api, key)
		if err == nil {
			return root, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, err
		}
		select {
		case <-elected:
			root, err := create(ctx, api, w, key, opts)
			if err != nil {
				return nil, err
			}
			return root, nil
		default:
		}
		if !waiting {
			waiting = true
			opts.Logger.Info("waiting for the leader to create the mesh CA root", "secret", key.String())
		}
		t := time.NewTimer(opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("waiting for Secret %s (the mesh CA root, created by the elected leader): %w", key, ctx.Err())
		case <-elected:
			t.Stop()
		case <-t.C:
		}
	}
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = DefaultSecretName
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// read gets the Secret; a NotFound error is returned as is.
func read(ctx context.Context, api client.Reader, key client.ObjectKey) (*Root, error) {
	s := &corev1.Secret{}
	if err := api.Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, err
		}
		return nil, fmt.Errorf("reading Secret %s (the mesh CA root): %w", key, err)
	}
	cert, k := s.Data[CertKey], s.Data[KeyKey]
	if len(cert) == 0 || len(k) == 0 {
		return nil, fmt.Errorf("Secret %s (the mesh CA root) lacks %s or %s: restore them, or delete the Secret to have the leader make a new root (every workload certificate must then be reissued)",
			key, CertKey, KeyKey)
	}
	return &Root{CertPEM: cert, KeyPEM: k}, nil
}

// create makes a root and creates the Secret; if another replica created
// it meanwhile, that root is read instead.
func create(ctx context.Context, api client.Reader, w client.Writer, key client.ObjectKey, opts Options) (*Root, error) {
	cert, k, err := ca.GenerateRoot(opts.TrustDomain, opts.Now())
	if err != nil {
		return nil, err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   key.Namespace,
			Name:        key.Name,
			Labels:      map[string]string{"app.kubernetes.io/managed-by": "weft", "app.kubernetes.io/component": "ca"},
			Annotations: map[string]string{TrustDomainAnnotation: opts.TrustDomain},
		},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{CertKey: cert, KeyKey: k},
	}
	err = w.Create(ctx, s)
	if apierrors.IsAlreadyExists(err) {
		opts.Logger.Info("another replica created the mesh CA root first; using it", "secret", key.String())
		return read(ctx, api, key)
	}
	if err != nil {
		return nil, fmt.Errorf("creating Secret %s (the mesh CA root): %w", key, err)
	}
	opts.Logger.Info("created the mesh CA root", "secret", key.String(), "trustDomain", opts.TrustDomain)
	return &Root{CertPEM: cert, KeyPEM: k, Created: true}, nil
}
