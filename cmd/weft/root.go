package main

import (
	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "weft",
		Short: "weft compiles a service mesh written in CUE into Envoy configuration",
		Long: `weft is a GitOps mesh compiler. You describe services, traffic rules,
identities and authorization in CUE, in git; weft validates the definition
(CUE schema, cross references) and compiles it into Envoy xDS resources.`,
		Example: `  weft init ./mesh
  weft vet ./mesh --env prod
  weft build ./mesh --env prod -o out/
  weft diff --git main..HEAD ./mesh`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInitCmd(), newVetCmd(), newBuildCmd(), newUpCmd(), newStatusCmd(), newDemoAppCmd(), newInstallCmd(), newGraphCmd(), newDiffCmd(),
		newControllerCmd(), newGetCmd(), newReconcileCmd(), newInjectCmd(), newAgentCmd(), newNetinitCmd())
	return root
}
