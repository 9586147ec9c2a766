package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/weft-dev/weft/reconciler/kube/webhookcert"
	"github.com/weft-dev/weft/sidecar/inject"
	"github.com/weft-dev/weft/sidecar/webhook"
)

// injectorOptions are the flags of `weft controller` for the sidecar
// injector (environments/deploy/controller.yaml sets them).
type injectorOptions struct {
	// WebhookAddress is where the webhook is served over TLS
	// (--webhook-address, :9443; "" or port -1: no injector).
	WebhookAddress string
	// WebhookName is the MutatingWebhookConfiguration whose caBundle the
	// leader keeps (--injector-webhook).
	WebhookName string
	// WebhookSecret holds the webhook's CA and serving certificate
	// (--webhook-secret).
	WebhookSecret string
	// ServiceName is the controller's Service: the serving certificate's
	// DNS names are <service>.<namespace>.svc(.cluster.local), and the
	// agents' CA and xDS addresses <service>.<namespace>.svc:15012/:15010
	// (--webhook-service).
	ServiceName string
	// ProxyImage, InitImage and PullPolicy of the injected containers
	// (--proxy-image, --init-image, --proxy-pull-policy; default
	// localhost/weft-proxy:<weft's version>).
	ProxyImage, InitImage, PullPolicy string
	// ExtraHosts are more names of the serving certificate (tests: an IP).
	ExtraHosts []string
}

func (o *injectorOptions) bindFlags(f *pflag.FlagSet) {
	f.StringVar(&o.WebhookAddress, "webhook-address", ":9443", "TLS address of the sidecar injector's admission webhook (empty: no injector)")
	f.StringVar(&o.WebhookName, "injector-webhook", webhookcert.DefaultWebhookName, "MutatingWebhookConfiguration whose caBundle the leader keeps")
	f.StringVar(&o.WebhookSecret, "webhook-secret", webhookcert.DefaultSecretName, "Secret holding the webhook's CA and serving certificate")
	f.StringVar(&o.ServiceName, "webhook-service", inject.DefaultControllerService, "the controller's Service (the webhook certificate's names; the agents' CA and xDS host)")
	f.StringVar(&o.ProxyImage, "proxy-image", "", "image of the injected weft-proxy (default localhost/weft-proxy:<weft's version>)")
	f.StringVar(&o.InitImage, "init-image", "", "image of the injected weft-init (default: --proxy-image)")
	f.StringVar(&o.PullPolicy, "proxy-pull-policy", string(corev1.PullIfNotPresent), "imagePullPolicy of the injected containers")
}

// injectorDeps are what the rest of the controller gives the injector.
type injectorDeps struct {
	// Namespace is the controller's (POD_NAMESPACE).
	Namespace string
	// TrustDomain of the mesh (--trust-domain).
	TrustDomain string
	// TrustBundle is the mesh CA's roots; it fails until the root is
	// loaded (pods are then refused: failurePolicy Fail).
	TrustBundle func(context.Context) ([]byte, error)
	// Version is weft's (the injected version and the default image tag).
	Version string
	Log     *slog.Logger
}

// setupInjector adds the sidecar injector to mgr: the webhook
// certificate's rotation (leader only) and loading (every replica), the
// readiness check "webhook-cert", and the HTTPS server of the admission
// webhook (sidecar/webhook at webhook.Path) with that certificate. It
// returns the certificate keeper (tests read it).
func setupInjector(mgr manager.Manager, o injectorOptions, d injectorDeps) (*webhookcert.Certs, error) {
	if o.WebhookAddress == "" {
		return nil, nil
	}
	if d.Namespace == "" {
		return nil, errors.New("injector: no namespace (POD_NAMESPACE)")
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	host, portStr, err := net.SplitHostPort(o.WebhookAddress)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil {
		return nil, fmt.Errorf("injector: --webhook-address %q: want [host]:port", o.WebhookAddress)
	}
	svc := o.ServiceName + "." + d.Namespace
	certs, err := webhookcert.New(mgr.GetAPIReader(), mgr.GetClient(), webhookcert.Options{
		Namespace:   d.Namespace,
		SecretName:  o.WebhookSecret,
		WebhookName: o.WebhookName,
		Hosts:       append([]string{svc + ".svc", svc + ".svc.cluster.local"}, o.ExtraHosts...),
		Log:         d.Log,
	})
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(certs.Rotator()); err != nil {
		return nil, err
	}
	if err := mgr.Add(certs.Loader()); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook-cert", certs.Checker()); err != nil {
		return nil, err
	}
	base := inject.Options{
		Version:               d.Version,
		ProxyImage:            o.ProxyImage,
		InitImage:             o.InitImage,
		PullPolicy:            corev1.PullPolicy(o.PullPolicy),
		ControlPlaneNamespace: d.Namespace,
		CAAddress:             fmt.Sprintf("%s.svc:%d", svc, inject.DefaultCAPort),
		XDSAddress:            fmt.Sprintf("%s.svc:%d", svc, inject.DefaultXDSPort),
		TrustDomain:           d.TrustDomain,
	}
	handler := webhook.New(webhook.Config{
		Log: d.Log,
		Options: func(ctx context.Context) (inject.Options, error) {
			bundle, err := d.TrustBundle(ctx)
			if err != nil {
				return inject.Options{}, fmt.Errorf("the mesh CA's trust bundle is not available yet: %w", err)
			}
			o := base
			o.TrustBundle = bundle
			return o, nil
		},
	})
	srv := crwebhook.NewServer(crwebhook.Options{
		Host: host,
		Port: port,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.GetCertificate = certs.GetCertificate
			c.MinVersion = tls.VersionTLS12
		}},
	})
	srv.Register(webhook.Path, handler)
	if err := mgr.Add(srv); err != nil {
		return nil, err
	}
	return certs, nil
}
