package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/weft-dev/weft/reconciler/controller"
)

func newControllerCmd() *cobra.Command {
	var (
		o       controller.Options
		pending pendingFlags
		verbose bool
	)
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run weft's Kubernetes controller: reconcile Meshes from Flux sources and serve them over xDS",
		Long: `controller is the control plane in a cluster (environments/deploy runs it).

It watches Meshes (mesh.weft.dev/v1alpha1) and the Flux sources they name
(GitRepository, OCIRepository, Bucket): every new artifact is downloaded from
source-controller, its digest verified, and run through the pipeline of
weft vet/build/up (load -> vet -> compile -> publish) in the Mesh's
environment; what passes is served to the proxies over xDS, what fails is
reported on the Mesh (Ready=False, Stalled, file:line) while the last good
revision keeps serving. The NetworkPolicies compiled from calls and authz
are applied once a revision is applied. One Mesh is served per control
plane (the oldest).

Every replica serves xDS; with --leader-elect one replica writes status,
events and NetworkPolicies. Metrics at --metrics-bind-address /metrics.`,
		Example: `  weft controller --xds-address=:15010 --leader-elect
  KUBECONFIG=~/.kube/config weft controller --namespace weft-system --metrics-bind-address=127.0.0.1:8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			o.Logger = slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			ctrl.SetLogger(logr.FromSlogHandler(o.Logger.Handler()))
			pending.warn(cmd, o.Logger)
			cfg, err := ctrl.GetConfig()
			if err != nil {
				return fmt.Errorf("controller: %w", err)
			}
			c, err := controller.New(cfg, o)
			if err != nil {
				return fmt.Errorf("controller: %w", err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Logger.Info("weft controller starting", "xds", c.Addr(), "metrics", c.MetricsAddr(), "version", weftVersion())
			return c.Start(ctx)
		},
	}
	f := cmd.Flags()
	o.BindFlags(f)
	pending.bindFlags(cmd)
	f.BoolVarP(&verbose, "verbose", "v", false, "debug logs")
	return cmd
}

// pendingFlags are the flags of environments/deploy's contract whose
// components (the mesh CA, the sidecar injector's trust bundle) are not
// part of this build yet: they are accepted, so that the Deployment
// runs, and reported once. The components bind them when they land.
type pendingFlags struct {
	caAddress, caSecret, injectorWebhook string
}

func (p *pendingFlags) bindFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&p.caAddress, "ca-address", ":15012", "address of the mesh CA (not served by this build yet)")
	f.StringVar(&p.caSecret, "ca-secret", "weft-ca-root", "Secret holding the mesh CA's root (not used by this build yet)")
	f.StringVar(&p.injectorWebhook, "injector-webhook", "weft-injector", "MutatingWebhookConfiguration given the trust bundle (not used by this build yet)")
}

func (p *pendingFlags) warn(cmd *cobra.Command, log *slog.Logger) {
	for _, name := range []string{"ca-address", "ca-secret", "injector-webhook"} {
		if cmd.Flags().Changed(name) {
			log.Warn("flag accepted but its component is not in this build: proxies are served without the mesh CA", "flag", "--"+name)
		}
	}
}
