package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weft-dev/weft/schema"
)

func newVetCmd() *cobra.Command {
	var env string
	cmd := &cobra.Command{
		Use:   "vet DIR",
		Short: "Validate a mesh definition",
		Long: `vet loads DIR, unifies it with an environment and validates it: the CUE
schema (types, bounds, unknown fields, conflicts between base and
environment) and the cross references CUE cannot check (split weights, route
versions, calls, authz callers, mirror targets). Every problem is printed
with its file:line:column, the field path and a fix; the exit code is 1 if
there is any.

Without --env, the base and every environment are vetted.`,
		Example: `  weft vet environments --env prod
  weft vet environments            # base and every environment`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			envs := []string{env}
			if env == "" {
				envs = append([]string{""}, schema.Environments(args[0])...)
			}
			failed := false
			for _, e := range envs {
				if _, err := loadModel(args[0], e, ""); err != nil {
					failed = true
					printLoadError(cmd.ErrOrStderr(), args[0], e, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "ok\t%s\n", envLabel(e))
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&env, "env", "", "environment to unify with the base (DIR/environments/ENV or DIR/ENV)")
	return cmd
}

func envLabel(env string) string {
	if env == "" {
		return "base"
	}
	return env
}

// printLoadError prints definition errors with paths relative to the
// working directory, so that editors and terminals can open them.
func printLoadError(w io.Writer, dir, env string, err error) {
	var es schema.Errors
	if errorsAs(err, &es) {
		base := displayBase(dir)
		fmt.Fprintf(w, "%s: %d problem(s)\n%v\n", envLabel(env), len(es), es.WithBase(base))
		return
	}
	fmt.Fprintf(w, "%s: %v\n", envLabel(env), err)
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
