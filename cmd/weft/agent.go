package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-dev/weft/sidecar/agent"
)

func newAgentCmd() *cobra.Command {
	var (
		cfg                          agent.Config
		pod                          agent.Pod
		trustBundle, logFormat       string
		verbose                      bool
		drainTimeout, restartBackoff time.Duration
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the sidecar agent and its Envoy in a meshed pod (the injected weft-proxy container runs it)",
		Long: `agent is the proxy of a meshed pod. It:

  - makes a private key and gets the workload certificate from the mesh CA
    with a CSR authenticated by the pod's projected service-account token
    (--token-file, read again for every CSR: the kubelet rotates it); the
    identity is the one the CA finds in that token,
    spiffe://<trust domain>/ns/<namespace>/sa/<service account>;
  - serves the certificate to Envoy over SDS on a unix socket (--socket),
    renews it at half its life, and relays Envoy's xDS stream to the
    control plane over mTLS with node id <pod>.<namespace>; the control
    plane derives the proxy class from the pod's labels;
  - runs Envoy as its child (restarted if it dies; drained, then stopped,
    on SIGTERM, which the kubelet sends after the app has stopped);
  - answers on --health-address: /ready (200 once Envoy has its listeners
    and the certificate, else 503 and why: no certificate yet, the control
    plane refused the stream and its reason, ...), /healthz, /status (JSON)
    and the app probes the injector rewrote (/app-health/...).

The pod's name, namespace and service come from the downward API
(POD_NAME, POD_NAMESPACE, WEFT_SERVICE), the trust bundle from
WEFT_TRUST_BUNDLE unless --trust-bundle names a file. See docs/kubernetes.md.`,
		Example: `  weft agent --ca-address=weft-controller.weft-system.svc:15012 --xds-address=weft-controller.weft-system.svc:15010 \
    --token-file=/var/run/secrets/weft/tokens/token --health-address=0.0.0.0:15021`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := agentLogger(cmd, logFormat, verbose)
			if err != nil {
				return err
			}
			cfg.DrainTimeout, cfg.RestartBackoff = drainTimeout, restartBackoff
			cfg.TrustBundleFile = trustBundle
			if trustBundle == "" {
				cfg.TrustBundlePEM = []byte(os.Getenv(agent.EnvTrustBundle))
			}
			if v := os.Getenv(agent.EnvAppProbes); v != "" {
				if err := json.Unmarshal([]byte(v), &cfg.AppProbes); err != nil {
					return fmt.Errorf("agent: %s: %w", agent.EnvAppProbes, err)
				}
			}
			podCfg, err := agent.ForPod(cfg, pod)
			if err != nil {
				return err
			}
			podCfg.Log = log
			a, err := agent.New(podCfg)
			if err != nil {
				return err
			}
			log.Info("weft agent starting", "node", podCfg.NodeID, "identity", podCfg.Identity.String(), "service", podCfg.Service,
				"ca", podCfg.CAAddress, "xds", podCfg.XDSAddress, "health", a.HealthAddr(), "version", weftVersion())
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return a.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&pod.Name, "pod-name", os.Getenv(agent.EnvPodName), "the pod's name (default $"+agent.EnvPodName+")")
	f.StringVar(&pod.Namespace, "pod-namespace", os.Getenv(agent.EnvPodNamespace), "the pod's namespace (default $"+agent.EnvPodNamespace+")")
	f.StringVar(&pod.Service, "service", os.Getenv(agent.EnvService), "the pod's mesh service, its label mesh.weft.dev/service (default $"+agent.EnvService+")")
	f.StringVar(&pod.TrustDomain, "trust-domain", "", "the mesh's trust domain (default: the trust bundle root's spiffe:// URI)")
	f.StringVar(&cfg.PodInfoDir, "pod-info", "", "downward API volume with the pod's labels (shown in /status)")

	f.StringVar(&cfg.CAAddress, "ca-address", "", "the mesh CA (host:port)")
	f.StringVar(&cfg.CAServerName, "ca-server-name", "", "name the CA's certificate is verified for (default: the host of --ca-address)")
	f.StringVar(&trustBundle, "trust-bundle", "", "file with the mesh CA's roots, PEM (default: $"+agent.EnvTrustBundle+")")
	f.StringVar(&cfg.TokenFile, "token-file", "/var/run/secrets/weft/tokens/token", "the projected service-account token (audience weft)")
	f.DurationVar(&cfg.CertTTL, "cert-ttl", 0, "certificate lifetime to ask for (0: the CA's default, 24h)")
	f.StringVar(&cfg.XDSAddress, "xds-address", "", "the control plane's xDS (host:port)")
	f.StringVar(&cfg.XDSServerName, "xds-server-name", "", "name the xDS server's certificate is verified for (default: the host of --xds-address)")
	f.BoolVar(&cfg.DeltaXDS, "delta-xds", false, "incremental xDS instead of state of the world")

	f.StringVar(&cfg.Socket, "socket", agent.DefaultSocket, "unix socket of SDS and the xDS proxy, for Envoy")
	f.StringVar(&cfg.BootstrapPath, "bootstrap", agent.DefaultBootstrapPath, "where Envoy's bootstrap is written")
	f.StringVar(&cfg.AdminSocket, "admin-socket", "", "Envoy's admin unix socket (default: envoy-admin.sock next to --socket)")
	f.StringVar(&cfg.HealthAddress, "health-address", agent.DefaultHealthAddress, "address of /ready, /healthz, /status and /app-health/")
	f.StringVar(&cfg.StatsAddress, "stats-address", "", "Envoy's Prometheus stats listener, IP:port (empty: none)")
	f.StringVar(&cfg.EnvoyBinary, "envoy", "envoy", "the Envoy binary")
	f.StringArrayVar(&cfg.EnvoyArgs, "envoy-arg", nil, "extra Envoy argument (repeatable)")
	f.StringVar(&cfg.EnvoyLogLevel, "envoy-log-level", "warning", "Envoy's --log-level")
	f.IntVar(&cfg.Concurrency, "concurrency", agent.DefaultConcurrency, "Envoy's worker threads")
	f.DurationVar(&drainTimeout, "drain-timeout", 5*time.Second, "on SIGTERM, how long Envoy's listeners drain before it stops")
	f.DurationVar(&restartBackoff, "restart-backoff", agent.DefaultRestartBackoff, "first delay before restarting an Envoy that died")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	f.BoolVarP(&verbose, "verbose", "v", false, "debug logs")
	return cmd
}

func agentLogger(cmd *cobra.Command, format string, verbose bool) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if verbose {
		opts.Level = slog.LevelDebug
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), opts)), nil
	}
	return nil, fmt.Errorf("agent: --log-format %q: want text or json", format)
}
