package kubetesting

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/internal/tooltest"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

func init() { ctrllog.SetLogger(logr.Discard()) }

// ManagerOptions are a test's manager options: no metrics or health
// listener, the cache options given, leader election on Lease leaseName
// in namespace leaseNS when leaseName is set (short durations: 4s lease,
// 2s renew deadline, 500ms retry; released on a clean stop).
func ManagerOptions(cacheOpts cache.Options, leaseNS, leaseName string) manager.Options {
	opts := manager.Options{
		Scheme:                 kubetest.DefaultScheme(),
		Cache:                  cacheOpts,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	}
	if leaseName != "" {
		opts.LeaderElection = true
		opts.LeaderElectionID = leaseName
		opts.LeaderElectionNamespace = leaseNS
		opts.LeaseDuration = ptr.To(4 * time.Second)
		opts.RenewDeadline = ptr.To(2 * time.Second)
		opts.RetryPeriod = ptr.To(500 * time.Millisecond)
		opts.LeaderElectionReleaseOnCancel = true
	}
	return opts
}

// NewManager makes a manager on cfg with ManagerOptions.
func NewManager(t testing.TB, cfg *rest.Config, cacheOpts cache.Options, leaseNS, leaseName string) manager.Manager {
	t.Helper()
	mgr, err := manager.New(cfg, ManagerOptions(cacheOpts, leaseNS, leaseName))
	if err != nil {
		t.Fatal(err)
	}
	return mgr
}

// Run starts mgr until the test ends (or stop is called) and waits for
// its cache to sync.
func Run(t testing.TB, mgr manager.Manager) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if !mgr.GetCache().WaitForCacheSync(wctx) {
		t.Fatal("the manager's cache did not sync")
	}
	return stop
}

// Namespace creates a namespace (if absent).
func Namespace(t testing.TB, cs kubernetes.Interface, name string) {
	t.Helper()
	_, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// ServiceAccount creates a service account.
func ServiceAccount(t testing.TB, cs kubernetes.Interface, ns, name string) *corev1.ServiceAccount {
	t.Helper()
	sa, err := cs.CoreV1().ServiceAccounts(ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sa
}

// Pod is a pod to create: nothing runs it (no kubelet), so the test gives
// it a node and a running status with an IP.
type Pod struct {
	Namespace, Name, ServiceAccount string
	Labels                          map[string]string
	IP                              string // status.podIP ("" : none)
	Node                            string // spec.nodeName (default "node-1"; "-" for none)
}

// CreatePod creates p and sets its status Running with its IP.
func CreatePod(t testing.TB, cs kubernetes.Interface, p Pod) *corev1.Pod {
	t.Helper()
	node := p.Node
	switch node {
	case "":
		node = "node-1"
	case "-":
		node = ""
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels},
		Spec: corev1.PodSpec{
			ServiceAccountName:           p.ServiceAccount,
			AutomountServiceAccountToken: ptr.To(false),
			NodeName:                     node,
			Containers:                   []corev1.Container{{Name: "app", Image: "localhost/app:dev"}},
		},
	}
	ctx := context.Background()
	created, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.IP == "" {
		return created
	}
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.IP, PodIPs: []corev1.PodIP{{IP: p.IP}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	updated, err := cs.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return updated
}

// SetPodPhase sets a pod's status.phase.
func SetPodPhase(t testing.TB, cs kubernetes.Interface, ns, name string, phase corev1.PodPhase) {
	t.Helper()
	patch := fmt.Sprintf(`{"status":{"phase":%q}}`, phase)
	if _, err := cs.CoreV1().Pods(ns).Patch(context.Background(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
}

// Endpoint is one endpoint of an EndpointSlice.
type Endpoint struct {
	IP, Pod  string
	NotReady bool
}

// Slice is the EndpointSlice name of Service service in ns, with the
// endpoints, as the EndpointSlice controller writes it (port http 8080).
func Slice(ns, service, name string, eps ...Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{Addresses: []string{e.IP}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(!e.NotReady)}}
		if e.Pod != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: e.Pod}
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

// ApplySlice creates s, or replaces the endpoints of the existing slice.
func ApplySlice(t testing.TB, cs kubernetes.Interface, s *discoveryv1.EndpointSlice) {
	t.Helper()
	ctx := context.Background()
	api := cs.DiscoveryV1().EndpointSlices(s.Namespace)
	cur, err := api.Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if _, err := api.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	cur.Endpoints = s.Endpoints
	if _, err := api.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Token is a projected service-account token of ns/sa from the real
// TokenRequest API for audience, bound to pod when pod is set (10
// minutes, the shortest TokenRequest issues).
func Token(t testing.TB, cs kubernetes.Interface, ns, sa, audience string, pod *corev1.Pod) string {
	t.Helper()
	spec := authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To(int64(600))}
	if pod != nil {
		spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// CSR is a fresh ECDSA P-256 key and a CSR for id (its only SAN), PEM.
func CSR(t testing.TB, id string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// CAClient dials the CA's gRPC service at addr over TLS, verifying it
// with bundle (PEM) for serverName.
func CAClient(t testing.TB, addr string, bundle []byte, serverName string) cav1.CertificateServiceClient {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("no certificate in the trust bundle")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: serverName})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return cav1.NewCertificateServiceClient(conn)
}

// Sign asks the CA for a certificate of id with token, and returns it
// with its key as a tls.Certificate, and the response.
func Sign(ctx context.Context, t testing.TB, cl cav1.CertificateServiceClient, token, id string) (*tls.Certificate, *cav1.SignResponse, error) {
	t.Helper()
	key, csr := CSR(t, id)
	resp, err := cl.Sign(cav1.WithToken(ctx, token), &cav1.SignRequest{CsrPem: csr})
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(resp.GetCertChainPem())
	if block == nil {
		t.Fatal("the CA answered no certificate")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: key, Leaf: leaf}, resp, nil
}

// MTLS is the client TLS configuration of a workload with cert, trusting
// bundle, for serverName.
func MTLS(cert *tls.Certificate, bundle []byte, serverName string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(bundle)
	return &tls.Config{Certificates: []tls.Certificate{*cert}, RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// WriteFiles writes files (path relative to dir -> content) under dir.
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// LongToken is a service-account token of ns/sa for the apiserver's own
// audience, valid for d: a controller's credentials in a kubeconfig.
func LongToken(t testing.TB, cs kubernetes.Interface, ns, sa string, d time.Duration) string {
	t.Helper()
	spec := authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(d.Seconds()))}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authenticationv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	return tr.Status.Token
}

// ControllerKubeconfig writes a kubeconfig that authenticates as the
// controller's service account (a TokenRequest token), after applying
// environments/deploy's RBAC: the replicas run with the least privilege
// of a real install.
func ControllerKubeconfig(t testing.TB, env *kubetest.Env) string {
	t.Helper()
	Namespace(t, env.Clientset, "weft-system")
	rbac := tooltest.RepoRoot() + "/environments/deploy/rbac.yaml"
	kubectl := kubetest.Assets(t) + "/kubectl"
	if out, err := exec.Command(kubectl, "--kubeconfig", env.Kubeconfig, "apply", "-n", "weft-system", "-f", rbac).CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply %s: %v\n%s", rbac, err, out)
	}
	tok := LongToken(t, env.Clientset, "weft-system", "weft-controller", time.Hour)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: env.Host, CertificateAuthorityData: env.Config.CAData}
	kc.AuthInfos["weft-controller"] = &clientcmdapi.AuthInfo{Token: tok}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "weft-controller"}
	kc.CurrentContext = "test"
	path := t.TempDir() + "/controller.kubeconfig"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}
