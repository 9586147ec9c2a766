package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weft-dev/weft/policies"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/schema"
)

func newVetCmd() *cobra.Command {
	var (
		env, output, explain, revision string
		gate                           pipeline.Gate
	)
	cmd := &cobra.Command{
		Use:   "vet DIR",
		Short: "Validate a mesh definition and check it against the policies",
		Long: `vet loads DIR, unifies it with an environment and validates it: the CUE
schema (types, bounds, unknown fields, conflicts between base and
environment) and the cross references CUE cannot check (split weights, route
versions, routes that an earlier route always wins over, calls, authz
callers, mirror targets). Then it evaluates the
policies on the model: weft's default Rego rules, the rules and data of the
repository's policies/ folder and of every --policy folder. A deny fails the
vet, a warn is reported. Last, it compiles each environment with its static
endpoints: the compiler's acceptance gate refuses any value Envoy would
reject (a regex over Envoy's RE2 program size, a header Envoy does not let
a route change, a value with a line break...), reported like a schema error. Every problem is printed with its file:line:column;
the exit code is 1 if anything fails (a broken policy file included).

The loader reads only regular files inside the CUE module, at most
--max-file-size per file and --max-source-size in all; the whole vet must
finish within --revision-timeout. docs/local-mode.md lists the limits.

Without --env, the base and every environment are vetted.

--output text (default) prints findings grouped by file on stderr and "ok"
per passing environment on stdout; json, sarif (SARIF 2.1.0, for GitHub code
scanning) and github (workflow annotations) write to stdout. --explain RULE
prints a rule's documentation and configuration. See docs/policies.md.`,
		Example: `  weft vet environments --env prod
  weft vet environments            # base and every environment
  weft vet environments --output sarif > weft.sarif
  weft vet . --output github       # in a GitHub Actions step
  weft vet . --policy ../org-policies
  weft vet --explain retry_budget`,
		Args: func(cmd *cobra.Command, args []string) error {
			if explain != "" {
				return cobra.MaximumNArgs(1)(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if explain != "" {
				dir := ""
				if len(args) == 1 {
					dir = args[0]
				}
				if err := policies.Explain(cmd.OutOrStdout(), dir, gate.PolicyDirs, explain); err != nil {
					if policies.IsErrors(err) {
						fmt.Fprintln(cmd.ErrOrStderr(), err)
						return exitError{1}
					}
					return err
				}
				return nil
			}
			format, err := policies.ParseFormat(output)
			if err != nil {
				return err
			}
			if revision == "" {
				revision = gitRevision(args[0])
			}
			rep, err := gate.Vet(cmd.Context(), args[0], pipeline.VetOptions{Env: env, Revision: revision})
			if err != nil {
				return err
			}
			err = rep.Write(format, policies.WriteOptions{
				Stdout:  cmd.OutOrStdout(),
				Stderr:  cmd.ErrOrStderr(),
				Base:    displayBase(args[0]),
				Color:   colorful(cmd.ErrOrStderr()),
				Version: weftVersion(),
			})
			if err != nil {
				return err
			}
			if rep.Failed() {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment to unify with the base (DIR/environments/ENV or DIR/ENV)")
	cmd.Flags().StringVar(&output, "output", "text", "output format: text, json, sarif or github")
	cmd.Flags().StringVar(&explain, "explain", "", "print the documentation of a rule (with DIR: its configuration there) and exit")
	cmd.Flags().StringArrayVar(&gate.PolicyDirs, "policy", nil, "folder of Rego and data files compiled with the default policies (repeatable)")
	cmd.Flags().StringVar(&revision, "revision", "", "revision given to the policies (default: the git commit of DIR)")
	gate.Limits.BindFlags(cmd.Flags())
	return cmd
}

// weftVersion is weft's module version as the Go build recorded it
// ("(devel)" for a build from a work tree), for SARIF.
func weftVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}

// colorful reports whether w is a terminal that wants colours.
func colorful(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func envLabel(env string) string {
	if env == "" {
		return "base"
	}
	return env
}

// displayBase is the mesh repository's module root as seen from the
// working directory; schema positions are relative to it.
func displayBase(dir string) string {
	root := schema.ModuleRoot(dir)
	wd, err := os.Getwd()
	if err != nil {
		return root
	}
	if rel, err := filepath.Rel(wd, root); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return root
}
