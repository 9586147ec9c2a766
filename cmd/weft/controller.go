package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/controller"
	"github.com/weft-dev/weft/reconciler/kube/serving"
	"github.com/weft-dev/weft/reconciler/xds"
)

func newControllerCmd() *cobra.Command {
	var (
		o       controlPlaneOptions
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run weft's control plane in a cluster: reconcile Meshes from Flux sources, serve them over mTLS xDS, sign workload certificates, inject sidecars",
		Long: `controller is the control plane in a cluster (environments/deploy runs it).

It watches Meshes (mesh.weft.dev/v1alpha1) and the Flux sources they name
(GitRepository, OCIRepository, Bucket): every new artifact is downloaded from
source-controller, its digest verified, and run through the pipeline of
weft vet/build/up (load -> vet -> compile -> publish) in the Mesh's
environment; what passes is served to the proxies over xDS, what fails is
reported on the Mesh (Ready=False, Stalled, file:line) while the last good
revision keeps serving. A revision whose trustDomain is not --trust-domain
is refused. The NetworkPolicies compiled from calls and authz are applied
once a revision is applied. One Mesh is served per control plane (the
oldest).

Every replica serves, once the mesh CA's root is loaded from --ca-secret
(the leader creates it when absent):
  - xDS on --xds-address over mTLS: each stream is bound to the pod its
    certificate and node id name; the endpoints come from the cluster's
    EndpointSlices and follow them without a new revision;
  - the mesh CA on --ca-address: CSRs authenticated by the workload's
    projected service-account token (TokenReview);
  - the sidecar injector's admission webhook on --webhook-address, whose
    certificate the leader keeps in --webhook-secret and in the caBundle
    of --injector-webhook.
With --leader-elect one replica writes status, events and NetworkPolicies.
Metrics at --metrics-bind-address /metrics; /readyz at
--health-probe-bind-address once xDS, the CA and the webhook serve.`,
		Example: `  weft controller --trust-domain=shop.example --leader-elect
  KUBECONFIG=~/.kube/config weft controller --namespace weft-system --metrics-bind-address=127.0.0.1:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			o.Controller.Logger = slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctrl.SetLogger(logr.FromSlogHandler(o.Controller.Logger.Handler()))
			cfg, err := ctrl.GetConfig()
			if err != nil {
				return fmt.Errorf("controller: %w", err)
			}
			c, err := newControlPlane(cfg, o)
			if err != nil {
				return fmt.Errorf("controller: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Controller.Logger.Info("weft controller starting", "xds", o.Controller.XDSAddress, "ca", o.Serving.CAAddress,
				"webhook", o.Injector.WebhookAddress, "metrics", c.MetricsAddr(), "trustDomain", o.Serving.TrustDomain, "version", weftVersion())
			return c.Start(ctx)
		},
	}
	f := cmd.Flags()
	o.bindFlags(f)
	f.BoolVarP(&verbose, "verbose", "v", false, "debug logs")
	return cmd
}

// controlPlaneOptions are the flags of `weft controller`: the
// reconciler's, the serving side's and the injector's
// (environments/deploy/controller.yaml sets them).
type controlPlaneOptions struct {
	Controller controller.Options
	Serving    serving.Options
	Injector   injectorOptions
}

func (o *controlPlaneOptions) bindFlags(f *pflag.FlagSet) {
	o.Controller.BindFlags(f)
	o.Serving.BindFlags(f)
	o.Injector.bindFlags(f)
	f.StringSliceVar(&o.Injector.ExtraHosts, "webhook-extra-hosts", nil,
		"more DNS names or IPs of the webhook's serving certificate (an API server that calls the webhook by URL rather than through the Service)")
}

// newControlPlane composes `weft controller` on cfg's cluster: the Mesh
// reconciler (package reconciler/controller) whose one xDS server is the
// serving side's (package reconciler/kube/serving: mTLS with the mesh
// CA, pod-bound streams, the CA's gRPC service, EndpointSlices as EDS),
// the pipeline publishing through the serving side's Publisher with its
// Endpoints and trust-domain Check, and the sidecar injector with the
// mesh CA's trust bundle. Every metric is on one registry, served at
// /metrics.
func newControlPlane(cfg *rest.Config, o controlPlaneOptions) (*controller.Controller, error) {
	co := o.Controller
	if co.Logger == nil {
		co.Logger = slog.Default()
	}
	if co.Metrics == nil {
		co.Metrics = prometheus.NewRegistry()
	}
	ns := co.Namespace
	if ns == "" {
		ns = compiler.DefaultControlPlaneNamespace
	}
	manage := co.Manager
	co.Manager = func(mo *manager.Options) {
		serving.CacheOptions(&mo.Cache)
		if manage != nil {
			manage(mo)
		}
	}
	var s *serving.Serving
	co.Serve = func(mgr manager.Manager, xo xds.Options) (*controller.Serving, error) {
		so := o.Serving
		so.Namespace, so.XDSAddress, so.ServiceName = ns, co.XDSAddress, o.Injector.ServiceName
		so.Logger, so.Registerer, so.XDS = co.Logger, co.Metrics, xo
		var err error
		if s, err = serving.Setup(mgr, so); err != nil {
			return nil, err
		}
		return &controller.Serving{XDS: s.XDS, Publisher: s.Publisher, Endpoints: s.Feed.Endpoints, Check: s.CheckTrustDomain}, nil
	}
	co.Components = append(co.Components, controller.Component{Name: "injector", Setup: func(rt *controller.Runtime) error {
		_, err := setupInjector(rt.Manager, o.Injector, injectorDeps{
			Namespace: ns, TrustDomain: o.Serving.TrustDomain, Version: weftVersion(), Log: co.Logger,
			TrustBundle: func(context.Context) ([]byte, error) { return trustBundle(s) },
		})
		return err
	}})
	return controller.New(cfg, co)
}

// trustBundle is the mesh CA's roots (PEM) once the serving side loaded
// them.
func trustBundle(s *serving.Serving) ([]byte, error) {
	if s == nil {
		return nil, errors.New("the serving side is not set up")
	}
	c := s.CA()
	if c == nil {
		return nil, errors.New("the mesh CA's root is not loaded yet (the leader creates its Secret)")
	}
	return c.TrustBundlePEM(), nil
}
