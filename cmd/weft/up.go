package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-dev/weft/reconciler/meshctl"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/sidecar/agent"
	"github.com/weft-dev/weft/up"
	"github.com/weft-dev/weft/up/demoapp"
)

func newUpCmd() *cobra.Command {
	var (
		o       up.Options
		verbose bool
		gate    pipeline.Gate
	)
	cmd := &cobra.Command{
		Use:   "up DIR",
		Short: "Run the mesh locally: control plane, and every workload with its agent and Envoy",
		Long: `up runs DIR as a local mesh with no Kubernetes (docs/local-mode.md).

It follows DIR — a git repository: every new commit of --branch; or a plain
directory: every change of its files — and runs each revision through
load -> vet (the policies of weft vet) -> compile -> publish, within the limits
of weft vet (--max-file-size, --max-source-size, --revision-timeout). A
failing revision leaves the previous one serving (see weft status); a source
that fails (git, an export, an unreadable directory) is retried with backoff
and the error printed once.

It starts the mesh CA, the xDS server on 127.0.0.1 (mTLS) and the status
endpoint — GET /status, GET /metrics and the live service map at /map/
(its URL is printed; --prometheus URL makes it read its signals from a
Prometheus, else it reads the proxies' stats listeners) — and for every
replica of every service version: a loopback address 127.0.X.Y, a token
file (0600), an agent + a real Envoy, and the app (the service's
local.command, else "weft demo-app"). Apps reach their dependencies
with HTTP_PROXY and plain http://<service>:<port>/ URLs. Ctrl-C stops
everything.

The state (CA root key, tokens, logs, git exports) is kept outside the
repository: --state-dir, by default $XDG_STATE_HOME/weft/<repo>-<hash> (or
~/.local/state/weft/...). A --state-dir inside a git work tree that git does
not ignore is refused, and so is a CA root key readable by group or others
(unless --allow-insecure-key-permissions).`,
		Example: `  weft up environments/dev
  weft up ./mesh --env prod --branch main`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Dir = args[0]
			o.BranchSet = cmd.Flags().Changed("branch")
			o.Out = cmd.OutOrStdout()
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			o.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			if o.Envoy == "" {
				o.Envoy = findEnvoy()
			}
			o.Gate = &gate
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			m, err := up.Start(ctx, o)
			if err != nil {
				if ctx.Err() != nil { // interrupted while waiting for a revision that loads
					return nil
				}
				return err
			}
			fmt.Fprintf(o.Out, "weft up: status at http://%s/status (weft status %s); Ctrl-C stops\n", m.StatusAddr(), statusHint(args[0], o.Env, m))
			<-ctx.Done()
			fmt.Fprintln(o.Out, "weft up: stopping")
			return m.Stop()
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Env, "env", "", "environment overlay")
	f.StringVar(&o.Branch, "branch", "main", "branch to follow when DIR is a git repository")
	f.StringVar(&o.StateDir, "state-dir", "", "CA root, tokens, logs (default: $XDG_STATE_HOME/weft/<repo>-<hash>, outside the repository)")
	f.BoolVar(&o.AllowInsecureKeyPermissions, "allow-insecure-key-permissions", false, "load a CA root key readable by group or others (with a warning) instead of refusing it")
	f.DurationVar(&o.Poll, "poll", time.Second, "how often to look for a new commit or change")
	f.StringVar(&o.IPBase, "ip-base", "127.0.1.1", "first loopback address of the instances")
	f.StringVar(&o.StatusAddr, "status-addr", "127.0.0.1:0", "status endpoint address")
	f.StringVar(&o.Envoy, "envoy", "", "envoy binary (default: .tools/bin/envoy, else envoy on PATH)")
	f.DurationVar(&o.CertTTL, "cert-ttl", 0, "workload certificate lifetime (default: the CA's, 24h)")
	f.BoolVar(&o.DeltaXDS, "delta", false, "Envoys use incremental xDS")
	f.IntVar(&o.Concurrency, "concurrency", agent.DefaultConcurrency, "worker threads of every Envoy (Envoy's --concurrency)")
	f.StringVar(&o.Prometheus, "prometheus", "", "Prometheus base URL the service map reads its signals from (default: straight from the proxies' stats listeners)")
	f.DurationVar(&o.MapWindow, "map-window", 0, "span of the service map's rates and error percentages (default 30s from the proxies, 1m from Prometheus)")
	f.BoolVarP(&verbose, "verbose", "v", false, "log control-plane and agent events")
	f.StringArrayVar(&gate.PolicyDirs, "policy", nil, "extra policy folder for the gate, as weft vet --policy (repeatable)")
	f.BoolVar(&gate.NoPolicies, "no-policies", false, "serve revisions without the policy gate of weft vet")
	gate.Limits.BindFlags(f)
	return cmd
}

// findEnvoy prefers the project's pinned Envoy.
func findEnvoy() string {
	if d := os.Getenv("WEFT_TOOLS_BIN"); d != "" {
		return filepath.Join(d, "envoy")
	}
	if _, err := os.Stat(".tools/bin/envoy"); err == nil {
		p, _ := filepath.Abs(".tools/bin/envoy")
		return p
	}
	return "envoy"
}

// statusHint is how to run weft status for the weft up of dir.
func statusHint(dir, env string, m *up.Mesh) string {
	if def, err := up.DefaultStateDir(dir, env); err == nil && def == m.StateDir() {
		if env != "" {
			return dir + " --env " + env
		}
		return dir
	}
	return "--state-dir " + m.StateDir()
}

func newStatusCmd() *cobra.Command {
	var (
		addr, stateDir, env string
		kube                meshctl.KubeFlags
	)
	cmd := &cobra.Command{
		Use:   "status [DIR | --kubeconfig/--namespace [MESH]]",
		Short: "Show the served revision, the last error and the proxies of a running weft up, or of a Mesh in a cluster",
		Long: `status asks a running weft up (its status endpoint, found in the state
directory of DIR, default ".": the same default state directory weft up DIR
uses) for the revision it serves, the last revision it attempted with its
step and error (file:line) if it failed — a source that cannot fetch or
export shows here too — and every proxy: its class, whether it has ACKed
the served version (per xDS type), its last NACK with Envoy's message and
the resource's file:line, and its certificate's expiry.

With --kubeconfig, --context or --namespace it reads a Mesh in a cluster
instead (MESH, or every Mesh of the namespace): its Ready condition, the
applied and attempted revisions, the proxies in sync and their NACKs, and
the last failure with each problem's file:line and fix.`,
		Example: `  weft status                       # the weft up of the mesh repository in this directory
  weft status environments/dev      # weft up environments/dev
  weft status --state-dir /tmp/mesh-state
  weft status --addr 127.0.0.1:40123
  weft status --namespace weft-system shop        # the Mesh shop in the current kubeconfig's cluster`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f := cmd.Flags(); f.Changed("kubeconfig") || f.Changed("context") || f.Changed("namespace") {
				c, ns, err := kube.Client()
				if err != nil {
					return err
				}
				name := ""
				if len(args) == 1 {
					name = args[0]
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
				defer cancel()
				return meshctl.Status(ctx, c, ns, name, time.Now(), cmd.OutOrStdout())
			}
			if addr == "" {
				if stateDir == "" {
					dir := "."
					if len(args) == 1 {
						dir = args[0]
					}
					var err error
					if stateDir, err = up.DefaultStateDir(dir, env); err != nil {
						return err
					}
				}
				var err error
				if addr, err = up.StatusAddr(stateDir); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			st, err := up.FetchStatus(ctx, addr)
			if err != nil {
				return err
			}
			up.PrintStatus(cmd.OutOrStdout(), st, time.Now())
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "status endpoint host:port (default: read from the state directory)")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "state directory of weft up (default: the one of DIR)")
	cmd.Flags().StringVar(&env, "env", "", "environment weft up was given (--env)")
	kube.BindFlags(cmd.Flags())
	return cmd
}

func newDemoAppCmd() *cobra.Command {
	c := demoapp.ConfigFromEnv()
	cmd := &cobra.Command{
		Use:   "demo-app",
		Short: "The demo workload of weft up: echoes itself and the request, calls dependencies on ?call=",
		Long: `demo-app is the workload weft up runs for services without local.command.
It answers every request with JSON: its service, version and instance, the
request's method, host, path and headers (x-forwarded-client-cert shows the
caller's SPIFFE id). With ?call=SERVICE[/PATH] (repeatable) it calls those
services through its HTTP_PROXY (its Envoy) and includes their answers.
See docs/local-mode.md for the knobs that make it fail or slow down.`,
		Example: `  weft demo-app --addr 127.0.0.1:8080 --service reviews --version v2
  curl 'http://127.0.0.1:8080/?call=ratings'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return demoapp.ListenAndServe(ctx, c)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Addr, "addr", c.Addr, "listen address (env WEFT_APP_ADDR, else 127.0.0.1:$PORT)")
	f.StringVar(&c.Service, "service", c.Service, "service name (env WEFT_SERVICE)")
	f.StringVar(&c.Version, "version", c.Version, "version (env WEFT_VERSION)")
	f.StringVar(&c.Instance, "instance", c.Instance, "instance (env WEFT_INSTANCE)")
	return cmd
}
