package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/weft-dev/weft/schema"
)

func newInitCmd() *cobra.Command {
	var module string
	cmd := &cobra.Command{
		Use:   "init DIR",
		Short: "Scaffold a mesh repository",
		Long: `init writes a new mesh repository into DIR: cue.mod carrying the weft
schema (so that plain "cue vet ./..." validates it with no weft installed),
a base mesh.cue, dev and prod environments, and a GitHub Actions workflow
(.github/workflows/weft.yml) that runs cue vet, weft vet (SARIF to code
scanning) and weft diff against the base branch as a pull-request comment
(docs/ci.md). It never overwrites files.`,
		Example: `  weft init ./mesh
  cd mesh && cue vet -c ./... && weft vet .`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := schema.Scaffold(args[0], module); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created mesh repository %s (environments: dev, prod)\nnext: weft vet %s\n", args[0], args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&module, "module", "example.com/mesh", "CUE module path written to cue.mod/module.cue")
	return cmd
}
