package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/compiler/monitoring"
	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/reconciler/pipeline"
)

func newBuildCmd() *cobra.Command {
	var (
		env, out, revision string
		gate               pipeline.Gate
		tree               compiler.TreeOptions
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
  bootstrap.yaml   with --static-bootstrap only: a complete static Envoy
                   bootstrap holding them all, runnable with "envoy -c"
                   (certificates still come from the agent's SDS socket);
                   it repeats every resource of the class

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

--service writes only the classes of the services named (the whole mesh is
still vetted and compiled). The classes of one service hold the same
resources: their files are hard links to the same bytes.
Endpoints are the static endpoints of the definition. The same input always
gives the same bytes. OUT is replaced if it holds a previous build; any other
non-empty directory is refused.`,
		Example: `  weft build environments --env prod -o out/prod
  weft build environments --env prod -o out/prod --static-bootstrap
  weft build environments --env prod -o out/reviews --service reviews
  envoy --mode validate -c out/prod/reviews-v2/bootstrap.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("build: -o OUT is required")
			}
			batchGC()
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
			m, envName := rep.Envs[0].Model, rep.Envs[0].Name
			for _, svc := range tree.Services {
				if m.Services[svc] == nil {
					return fmt.Errorf("build: --service %s: no such service (services: %s)", svc, strings.Join(m.ServiceNames(), ", "))
				}
			}
			extra := map[string][]byte{}
			nps, err := compiler.NetworkPolicies(m, netpol)
			if err != nil {
				return fmt.Errorf("compile: %w", err)
			}
			if extra[compiler.NetworkPoliciesFile], err = compiler.NetworkPoliciesYAML(nps); err != nil {
				return fmt.Errorf("compile: %w", err)
			}
			mon, err := monitoring.Files(m)
			if err != nil {
				return fmt.Errorf("monitoring: %w", err)
			}
			for name, b := range mon {
				extra[path.Join(monitoringDir, name)] = b
			}
			rep = nil // the compiled result is all build needs now
			if err := writeTree(out, func(dir string) error {
				w := &treeWriter{dir: dir}
				for name, b := range extra {
					if err := w.write(name, b); err != nil {
						return err
					}
				}
				extra = nil // written: not held while the classes are
				return writeFiles(w, res, tree)
			}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revision %s, environment %s -> %s\n\n%s", revision, envName, out, compiler.Summary(res))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&env, "env", "", "environment to unify with the base (DIR/environments/ENV or DIR/ENV)")
	f.StringVarP(&out, "output", "o", "", "output directory")
	f.StringVar(&revision, "revision", "", `source revision recorded in versions and provenance (default: git HEAD of DIR, "-dirty" if modified, or "local")`)
	f.StringArrayVar(&gate.PolicyDirs, "policy", nil, "folder of Rego and data files compiled with the default policies (repeatable), as in weft vet")
	gate.Limits.BindFlags(f)
	f.BoolVar(&tree.StaticBootstrap, "static-bootstrap", false, "also write each class's complete static bootstrap.yaml (every resource inlined)")
	f.StringSliceVar(&tree.Services, "service", nil, "write only the classes of these services (repeatable, or comma separated; summary.txt lists every class)")
	f.Uint32Var(&tree.Bootstrap.AdminPort, "admin-port", compiler.DefaultAdminPort, "Envoy admin port in the static bootstraps (127.0.0.1)")
	f.StringVar(&tree.Bootstrap.SDSSocket, "sds-socket", compiler.DefaultSDSSocket, "unix socket of the agent's SDS server in the static bootstraps")
	f.StringVar(&netpol.ControlPlaneNamespace, "control-plane-namespace", compiler.DefaultControlPlaneNamespace,
		"namespace of weft's controller, whose pods the NetworkPolicies admit")
	return cmd
}

// monitoringDir is the folder of the dashboards and rules in OUT.
const monitoringDir = "monitoring"

// writeTree has fill write the files into a fresh sibling directory and
// swaps it in, so that OUT never holds a mix of two builds.
func writeTree(out string, fill func(dir string) error) error {
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
	if err := fill(tmp); err != nil {
		return fmt.Errorf("build: %w", err)
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

// treeWriter writes files below dir, making each folder once; it is safe
// for concurrent use (the compiler's workers write through it).
type treeWriter struct {
	dir  string
	mu   sync.Mutex
	made map[string]bool
}

// path is the local path of the slash-separated name, its folder made.
func (w *treeWriter) path(name string) (string, error) {
	p := filepath.Join(w.dir, filepath.FromSlash(name))
	d := filepath.Dir(p)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.made[d] {
		return p, nil
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", err
	}
	if w.made == nil {
		w.made = map[string]bool{}
	}
	w.made[d] = true
	return p, nil
}

func (w *treeWriter) write(name string, b []byte) error {
	p, err := w.path(name)
	if err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

// link makes name a hard link to target, written before.
func (w *treeWriter) link(name, target string) error {
	p, err := w.path(name)
	if err != nil {
		return err
	}
	return os.Link(filepath.Join(w.dir, filepath.FromSlash(target)), p)
}

// writeFiles writes the tree of res as the compiler makes its files, from
// the compiler's workers: the whole tree is never in memory. The classes
// that share their resources (the versions of a service) get the same
// bytes: the first is written, the others are hard links to it (written
// if linking fails), which halves the files the file system creates for a
// mesh whose services have two versions.
func writeFiles(w *treeWriter, res *compiler.Result, o compiler.TreeOptions) error {
	o.Link = w.link
	return compiler.WriteTree(res, o, w.write)
}

// batchGC makes weft build's garbage collector collect when the heap has
// grown by half rather than doubled (GOGC=50), unless GOGC or GOMEMLIMIT
// say otherwise: loading leaves much garbage behind. Measured with
// /usr/bin/time on the generated meshes: 1,000 services peak at ~217 MB
// instead of ~256 MB, 2,000 at ~393 MB instead of ~481 MB, for little CPU
// (weft diff, whose goal is time, keeps the default: there it cost 20%).
// A fixed soft memory limit, tried first, made the collector run without
// pause once a larger mesh's live data neared it: 2,000 services took
// 20 s of CPU instead of 4.
func batchGC() {
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(50)
	}
}
