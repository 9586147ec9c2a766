package kubetest

import (
	"crypto/ecdsa"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/weft-dev/weft/internal/tooltest"
)

// Issuer is the service-account token issuer (`iss`) of every control plane
// that kubetest starts: the in-cluster name a real cluster uses. It is also
// the apiserver's default API audience (`--api-audiences` is not set).
const Issuer = "https://kubernetes.default.svc.cluster.local"

// Options change what [Start] runs. The zero value is a plain control plane.
type Options struct {
	// APIServerFlags are extra kube-apiserver flags, name (without "--")
	// to values; they replace kubetest's and envtest's value of that flag.
	APIServerFlags map[string][]string
	// Scheme for [Env.Client]; default: client-go's scheme (built-in
	// kinds) plus apiextensions.k8s.io/v1.
	Scheme *runtime.Scheme
}

// Env is a running etcd + kube-apiserver. Everything is stopped by the
// t.Cleanup that [Start] registers.
type Env struct {
	// Config authenticates as an admin (group system:masters) with a client
	// certificate.
	Config *rest.Config
	// Clientset and Client use Config.
	Clientset kubernetes.Interface
	Client    client.Client
	// Kubeconfig is the path of a kubeconfig file with Config's
	// credentials, for child processes (kubectl, controllers).
	Kubeconfig string
	// Host is the apiserver's https://127.0.0.1:PORT.
	Host string
	// Dir is the test's folder holding etcd's data, the apiserver's
	// certificates, the service-account keys and the kubeconfig.
	Dir string

	t     testing.TB
	env   *envtest.Environment
	saKey *ecdsa.PrivateKey
}

// Start runs etcd and kube-apiserver, waits until the apiserver serves the
// `default` namespace, and registers their shutdown with t.Cleanup. It
// skips or fails the test when the binaries are missing (see [Assets]) and
// fails it when the control plane does not start (with both processes'
// output).
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	assets := Assets(t)
	e := &Env{t: t, Dir: t.TempDir()}

	key, err := writeServiceAccountKeys(e.Dir)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	e.saKey = key

	ports := tooltest.FreePorts(t, 3)
	etcdOut, apiOut := &tooltest.Output{}, &tooltest.Output{}
	etcd := &envtest.Etcd{
		URL:     &url.URL{Scheme: "http", Host: hostPort(ports[0])},
		DataDir: filepath.Join(e.Dir, "etcd"),
		Out:     etcdOut,
		Err:     etcdOut,
	}
	etcd.Configure().
		Set("listen-peer-urls", "http://"+hostPort(ports[1])).
		Set("initial-advertise-peer-urls", "http://"+hostPort(ports[1])).
		Set("initial-cluster", "default=http://"+hostPort(ports[1]))

	api := &envtest.APIServer{
		CertDir:       filepath.Join(e.Dir, "apiserver"),
		SecureServing: envtest.SecureServing{ListenAddr: envtest.ListenAddr{Address: "127.0.0.1", Port: strconv.Itoa(int(ports[2]))}},
		Out:           apiOut,
		Err:           apiOut,
	}
	// --advertise-address stays the apiserver's default (the host's
	// address): a loopback one is refused by the endpoint reconciler.
	args := api.Configure().
		Set("service-account-issuer", Issuer).
		Set("service-account-key-file", filepath.Join(e.Dir, saPublicKeyFile)).
		Set("service-account-signing-key-file", filepath.Join(e.Dir, saPrivateKeyFile))
	for name, values := range opts.APIServerFlags {
		args.Set(name, values...)
	}
	for _, d := range []string{etcd.DataDir, api.CertDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("kubetest: %v", err)
		}
	}

	e.env = &envtest.Environment{
		BinaryAssetsDirectory: assets,
		ControlPlane:          envtest.ControlPlane{Etcd: etcd, APIServer: api},
		// envtest's own defaults are 20 s; a shared 2-core CI machine
		// building other tests at the same time needs more.
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  20 * time.Second,
	}
	started := time.Now()
	cfg, err := e.env.Start()
	if err != nil {
		_ = e.env.Stop()
		t.Fatalf("kubetest: starting etcd + kube-apiserver from %s: %v\n--- etcd:\n%s\n--- kube-apiserver:\n%s",
			assets, err, tail(etcdOut.String()), tail(apiOut.String()))
	}
	t.Logf("kubetest: etcd + kube-apiserver ready at %s in %s", cfg.Host, time.Since(started).Round(time.Millisecond))
	t.Cleanup(func() {
		stopping := time.Now()
		err := e.env.Stop()
		t.Logf("kubetest: control plane stopped in %s", time.Since(stopping).Round(time.Millisecond))
		if err != nil {
			t.Errorf("kubetest: stopping the control plane: %v", err)
		}
		if t.Failed() {
			t.Logf("--- etcd output:\n%s\n--- kube-apiserver output:\n%s", tail(etcdOut.String()), tail(apiOut.String()))
		}
	})

	e.Config = cfg
	e.Host = cfg.Host
	e.Kubeconfig = filepath.Join(e.Dir, "admin.kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, e.env.KubeConfig, 0o600); err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	if e.Clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatalf("kubetest: clientset: %v", err)
	}
	scheme := opts.Scheme
	if scheme == nil {
		scheme = DefaultScheme()
	}
	if e.Client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		t.Fatalf("kubetest: client: %v", err)
	}
	return e
}

// DefaultScheme is client-go's scheme (every built-in kind) plus
// apiextensions.k8s.io/v1 (CustomResourceDefinition). A caller adds its own
// kinds to the returned scheme, which is new on every call.
func DefaultScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	return s
}

func hostPort(port uint32) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
}

// tail is the last 8 KiB of a process's output.
func tail(s string) string {
	const max = 8 << 10
	if len(s) <= max {
		return s
	}
	return fmt.Sprintf("[... %d bytes before]\n%s", len(s)-max, s[len(s)-max:])
}
