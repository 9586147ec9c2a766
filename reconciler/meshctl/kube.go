package meshctl

import (
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
)

// KubeFlags say which cluster and namespace a command talks to, as
// kubectl and flux read them: --kubeconfig (else $KUBECONFIG, else
// ~/.kube/config), --context, --namespace (else the context's, else
// DefaultNamespace).
type KubeFlags struct {
	Kubeconfig, Context, Namespace string
}

// DefaultNamespace is where a Mesh is looked for when neither
// --namespace nor the kubeconfig context names one: the control plane's
// namespace, where environments/flux/shop.yaml puts its Mesh.
const DefaultNamespace = "weft-system"

// BindFlags registers the flags on fs.
func (k *KubeFlags) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&k.Kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, else ~/.kube/config)")
	fs.StringVar(&k.Context, "context", "", "kubeconfig context (default: the current one)")
	fs.StringVarP(&k.Namespace, "namespace", "n", "", "namespace of the Mesh (default: the context's, else "+DefaultNamespace+")")
}

// Client returns a client for the cluster and the namespace to use.
func (k KubeFlags) Client() (client.Client, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k.Kubeconfig != "" {
		rules.ExplicitPath = k.Kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.Context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig: %w", err)
	}
	ns := k.Namespace
	if ns == "" {
		if n, overridden, err := cc.Namespace(); err == nil && overridden && n != "" {
			ns = n
		} else if raw, err := cc.RawConfig(); err == nil {
			ctx := raw.Contexts[raw.CurrentContext]
			if k.Context != "" {
				ctx = raw.Contexts[k.Context]
			}
			if ctx != nil && ctx.Namespace != "" {
				ns = ctx.Namespace
			}
		}
	}
	if ns == "" {
		ns = DefaultNamespace
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		return nil, "", err
	}
	return c, ns, nil
}

// Scheme knows client-go's kinds and Mesh.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(meshv1.AddToScheme(s))
	return s
}
