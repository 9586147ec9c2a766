package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/reconciler/meshctl"
)

func newGetCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get",
		Short: "Show the Meshes of a cluster",
	}
	var (
		k   meshctl.KubeFlags
		all bool
	)
	meshes := &cobra.Command{
		Use:     "meshes",
		Aliases: []string{"mesh"},
		Short:   "List Meshes with their applied revision and readiness, as flux get kustomizations does",
		Example: `  weft get meshes
  weft get meshes -n weft-system
  weft get meshes -A`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := k.Client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			return meshctl.GetMeshes(ctx, c, ns, all, cmd.OutOrStdout())
		},
	}
	k.BindFlags(meshes.Flags())
	meshes.Flags().BoolVarP(&all, "all-namespaces", "A", false, "list the Meshes of every namespace")
	cmd.AddCommand(meshes)
	return cmd
}

func newReconcileCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Ask the controller to reconcile a Mesh now",
	}
	var (
		k meshctl.KubeFlags
		o meshctl.ReconcileOptions
	)
	mesh := &cobra.Command{
		Use:   "mesh NAME",
		Short: "Reconcile a Mesh now (reconcile.fluxcd.io/requestedAt) and wait until it is Ready",
		Long: `reconcile mesh annotates the Mesh with reconcile.fluxcd.io/requestedAt, as
flux reconcile does, and waits until the controller has handled the request:
it prints the applied revision, or the Ready condition's message (with the
file:line of the problem) and exits 1. With --with-source the Mesh's Flux
source is reconciled first, so that a commit just pushed is fetched.`,
		Example: `  weft reconcile mesh shop -n weft-system
  weft reconcile mesh shop --with-source`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, ns, err := k.Client()
			if err != nil {
				return err
			}
			return meshctl.ReconcileMesh(cmd.Context(), c, client.ObjectKey{Namespace: ns, Name: args[0]}, o, cmd.OutOrStdout())
		},
	}
	k.BindFlags(mesh.Flags())
	mesh.Flags().BoolVar(&o.WithSource, "with-source", false, "reconcile the Mesh's source first")
	mesh.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait")
	cmd.AddCommand(mesh)
	return cmd
}
