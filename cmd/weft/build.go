package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/compiler/monitoring"
	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/schema"
)

func newBuildCmd() *cobra.Command {
	var (
		env, out, revision string
		gate               pipeline.Gate
		boot               compiler.BootstrapOptions
		netpol             compiler.NetworkPolicyOptions
	)
	cmd := &cobra.Command{
		Use:   "build DIR -o OUT",
		Short: "Compile a mesh into Envoy configuration files",
		Long: `build vets DIR exactly like weft vet (schema, cross references, policies,
the compiler's acceptance gate: any failure stops it and nothing is written; the
same limits) and compiles it into one configuration per proxy class (a service
version). For each class it writes to OUT/<class>/:

  listeners.yaml routes.yaml clusters.yaml endpoints.yaml   the xDS resources
  provenance.yaml  the file:line that defined each resource, filter chain,
                   virtual host and route
  bootstrap.yaml   a complete static Envoy bootstrap holding them all,
                   runnable with "envoy -c" (certificates still come from
                   the agent's SDS socket)

and at the root:

  summary.txt            the classes, resource counts and snapshot versions
  networkpolicies.yaml   one Kubernetes NetworkPolicy per service, from calls
                         and authz: the L3 firewall of the L7 rules (ingress
                         only; pods are selected by mesh.weft.dev/service)
  monitoring/            for monitoring (docs/observability.md):
    dashboards/<service>.json   a Grafana dashboard per service: its inbound
                                traffic, its callers and each dependency
                                (requests/s, error %, p50 and p99 latency)
    rules/<service>.yaml        Prometheus recording and alerting rules for
                                the service's slo block (burn-rate alerts)

Endpoints are the static endpoints of the definition. The same input always
gives the same bytes. OUT is replaced if it holds a previous build; any other
non-empty directory is refused.`,
		Example: `  weft build environments --env prod -o out/prod
  envoy --mode validate -c out/prod/reviews-v2/bootstrap.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("build: -o OUT is required")
			}
			if revision == "" {
				revision = gitRevision(args[0])
			}
			// The same gate as weft vet and the reconciler: a revision that
			// fails the schema, a deny policy or the acceptance checks is
			// not written.
			rep, res, err := gate.Build(cmd.Context(), args[0], pipeline.VetOptions{Env: env, Revision: revision})
			if err != nil {
				return err
			}
			if res == nil {
				if err := rep.Write(policies.Text, policies.WriteOptions{
					Stdout: io.Discard, Stderr: cmd.ErrOrStderr(), Base: displayBase(args[0]), Color: colorful(cmd.ErrOrStderr()),
				}); err != nil {
					return err
				}
				return exitError{1}
			}
			files, err := compiler.Tree(res, boot)
			if err != nil {
				return fmt.Errorf("compile: %w", err)
			}
			nps, err := compiler.NetworkPolicies(rep.Envs[0].Model, netpol)
			if err != nil {
				return fmt.Errorf("compile: %w", err)
			}
			if files[compiler.NetworkPoliciesFile], err = compiler.NetworkPoliciesYAML(nps); err != nil {
				return fmt.Errorf("compile: %w", err)
			}
			mon, err := monitoring.Files(rep.Envs[0].Model)
			if err != nil {
				return fmt.Errorf("monitoring: %w", err)
			}
			for name, b := range mon {
				files[path.Join(monitoringDir, name)] = b
			}
			if err := writeTree(out, files); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revision %s, environment %s -> %s\n\n%s", revision, rep.Envs[0].Name, out, files[compiler.SummaryFile])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&env, "env", "", "environment to unify with the base (DIR/environments/ENV or DIR/ENV)")
	f.StringVarP(&out, "output", "o", "", "output directory")
	f.StringVar(&revision, "revision", "", `source revision recorded in versions and provenance (default: git HEAD of DIR, "-dirty" if modified, or "local")`)
	f.StringArrayVar(&gate.PolicyDirs, "policy", nil, "folder of Rego and data files compiled with the default policies (repeatable), as in weft vet")
	gate.Limits.BindFlags(f)
	f.Uint32Var(&boot.AdminPort, "admin-port", compiler.DefaultAdminPort, "Envoy admin port in the bootstraps (127.0.0.1)")
	f.StringVar(&boot.SDSSocket, "sds-socket", compiler.DefaultSDSSocket, "unix socket of the agent's SDS server in the bootstraps")
	f.StringVar(&netpol.ControlPlaneNamespace, "control-plane-namespace", compiler.DefaultControlPlaneNamespace,
		"namespace of weft's controller, whose pods the NetworkPolicies admit")
	return cmd
}

// monitoringDir is the folder of the dashboards and rules in OUT.
const monitoringDir = "monitoring"

// writeTree writes files into a fresh sibling directory and swaps it in,
// so that OUT never holds a mix of two builds.
func writeTree(out string, files map[string][]byte) error {
	if entries, err := os.ReadDir(out); err == nil && len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(out, compiler.SummaryFile)); err != nil {
			return fmt.Errorf("build: %s is not empty and holds no previous build (no %s); choose another -o", out, compiler.SummaryFile)
		}
	}
	parent := filepath.Dir(filepath.Clean(out))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, ".weft-build-")
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, name := range schema.SortedNames(files) {
		p := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("build: %w", err)
		}
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return fmt.Errorf("build: %w", err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	if err := os.RemoveAll(out); err != nil {
		return fmt.Errorf("build: replace %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	return nil
}
