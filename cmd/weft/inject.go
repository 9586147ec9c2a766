package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-dev/weft/sidecar/inject"
)

func newInjectCmd() *cobra.Command {
	var (
		file, bundle, pullPolicy string
		o                        inject.Options
	)
	cmd := &cobra.Command{
		Use:   "inject -f FILE",
		Short: "Add the sidecar proxy to the pods and pod templates of Kubernetes manifests",
		Long: `inject prints the manifests of FILE (- for stdin) with weft's sidecar added to
every Pod and pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet,
Job, CronJob, ReplicationController, also inside a List), exactly as the
controller's admission webhook adds it to pods created in a namespace labelled
weft.dev/inject=enabled:

  - the init container weft-init runs "weft netinit": iptables redirect of
    inbound TCP to 15006 and outbound TCP to 15001;
  - the native sidecar weft-proxy (an init container that restarts always)
    runs "weft agent" and Envoy; the app starts once it is ready;
  - the pod label mesh.weft.dev/service (from the label itself, the
    annotation weft.dev/service, or the label app.kubernetes.io/name or app),
    a projected service-account token (audience weft), and the annotation
    weft.dev/injected-version.

Pods annotated weft.dev/inject: disabled, pods with hostNetwork and pods
without a service name are left as they are (stderr says why). Other objects
and documents pass through byte for byte; injected ones are rewritten with
sorted keys. Injecting the output again changes nothing.

--trust-bundle is required: the mesh CA's roots, which the proxy verifies the
controller with before it has a certificate, e.g.
  kubectl -n weft-system get secret weft-ca-root -o jsonpath='{.data.tls\.crt}' | base64 -d > roots.pem
See docs/kubernetes.md.`,
		Example: `  weft inject -f deploy.yaml --trust-bundle roots.pem | kubectl apply -f -
  kubectl get deploy web -o yaml | weft inject -f - --trust-bundle roots.pem | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return fmt.Errorf("inject: -f FILE is required (- for stdin)")
			}
			if bundle == "" {
				return fmt.Errorf("inject: --trust-bundle FILE is required: the mesh CA's roots (PEM), e.g. kubectl -n %s get secret weft-ca-root -o jsonpath='{.data.tls\\.crt}' | base64 -d > roots.pem", o.ControlPlaneNamespace)
			}
			var err error
			if o.TrustBundle, err = os.ReadFile(bundle); err != nil {
				return fmt.Errorf("inject: --trust-bundle: %w", err)
			}
			o.PullPolicy = corev1.PullPolicy(pullPolicy)
			if o.Version == "" {
				o.Version = weftVersion()
			}
			in, name, err := readInput(cmd, file)
			if err != nil {
				return fmt.Errorf("inject: %w", err)
			}
			out, outcomes, err := inject.Stream(in, name, o)
			if err != nil {
				return fmt.Errorf("inject: %w", err)
			}
			for _, oc := range outcomes {
				fmt.Fprintf(cmd.ErrOrStderr(), "weft inject: %s:%s\n", name, oc)
				for _, w := range oc.Warnings {
					fmt.Fprintf(cmd.ErrOrStderr(), "weft inject: %s:%d: warning: %s\n", name, oc.Line, w)
				}
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "filename", "f", "", "manifests to inject (- for stdin)")
	f.StringVar(&bundle, "trust-bundle", "", "file with the mesh CA's roots (PEM)")
	f.StringVar(&o.TrustDomain, "trust-domain", "", "the mesh's trust domain (default: the agent reads it from the trust bundle)")
	f.StringVar(&o.ProxyImage, "proxy-image", "", `image of weft-proxy (default "localhost/weft-proxy:<weft's version>", "dev" for a development build)`)
	f.StringVar(&o.InitImage, "init-image", "", "image of weft-init (default: --proxy-image)")
	f.StringVar(&pullPolicy, "pull-policy", string(corev1.PullIfNotPresent), "imagePullPolicy of both images")
	f.StringVar(&o.ControlPlaneNamespace, "control-plane-namespace", inject.DefaultControlPlaneNamespace, "namespace of weft's controller")
	f.StringVar(&o.CAAddress, "ca-address", "", "the mesh CA (default weft-controller.<control plane namespace>.svc:15012)")
	f.StringVar(&o.XDSAddress, "xds-address", "", "the xDS server (default weft-controller.<control plane namespace>.svc:15010)")
	f.StringVar(&o.Version, "version", "", "the version recorded in weft.dev/injected-version (default: weft's)")
	return cmd
}

// readInput reads file, or stdin for "-"; the name is for messages.
func readInput(cmd *cobra.Command, file string) ([]byte, string, error) {
	if file == "-" {
		b, err := io.ReadAll(cmd.InOrStdin())
		return b, "<stdin>", err
	}
	b, err := os.ReadFile(file)
	return b, file, err
}
