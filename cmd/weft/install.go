package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/weft-dev/weft/environments/deploy"
)

func newInstallCmd() *cobra.Command {
	var (
		export           bool
		namespace, image string
	)
	cmd := &cobra.Command{
		Use:   "install --export",
		Short: "Print the Kubernetes manifests of weft's control plane",
		Long: `install --export prints, as one YAML stream, everything weft's control plane
needs in a cluster: the namespace (Pod Security "restricted"), the Mesh CRD
(mesh.weft.dev/v1alpha1), the controller's ServiceAccount and least-privilege
RBAC, its Deployment (2 replicas, leader election), Service and
PodDisruptionBudget, and the sidecar injector's MutatingWebhookConfiguration
(namespaces labelled weft.dev/inject=enabled; docs/kubernetes.md). They are the kustomize base environments/deploy, embedded
in this binary and rendered with kustomize, with the namespace and the image
set by the flags. The same flags always print the same bytes.

Apply them with kubectl (server-side apply keeps the CRD's large schema out of
the last-applied annotation), then a Flux source and a Mesh such as
environments/flux/shop.yaml. Applying directly from weft is not implemented:
--export is required.`,
		Example: `  weft install --export | kubectl apply --server-side -f -
  weft install --export --namespace mesh-system --image registry.example/weft:v0.1.0 > weft.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !export {
				return fmt.Errorf("install: only --export is implemented: weft install --export | kubectl apply --server-side -f -")
			}
			if image == "" {
				image = deploy.ImageName + ":" + imageTag(weftVersion())
			}
			out, err := deploy.Render(deploy.Options{Namespace: namespace, Image: image})
			if err != nil {
				return fmt.Errorf("install: %w", err)
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.BoolVar(&export, "export", false, "print the manifests on stdout instead of applying them")
	f.StringVarP(&namespace, "namespace", "n", deploy.DefaultNamespace, "namespace of the control plane")
	f.StringVar(&image, "image", "", `controller image, name[:tag][@digest] (default "`+deploy.ImageName+`:<weft's version>", "`+deploy.DefaultTag+`" for a development build)`)
	return cmd
}

// imageTag is the image tag of a weft version: the module version, or
// deploy.DefaultTag for a build from a work tree.
func imageTag(version string) string {
	if version == "" || version == "(devel)" {
		return deploy.DefaultTag
	}
	return version
}
