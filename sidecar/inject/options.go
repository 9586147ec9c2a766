package inject

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/weft-dev/weft/compiler"
)

// Labels and annotations. Namespaces opt in with the label InjectKey=Enabled;
// a pod opts out with the annotation InjectKey=Disabled.
const (
	InjectKey = "weft.dev/inject"
	Enabled   = "enabled"
	Disabled  = "disabled"

	// VersionAnnotation records the weft version that injected the pod
	// (Options.Version).
	VersionAnnotation = "weft.dev/injected-version"
	// ServiceAnnotation names the pod's mesh service when neither the
	// label mesh.weft.dev/service nor an app label does (ServiceName).
	ServiceAnnotation = "weft.dev/service"

	// The redirect's exclusions (comma-separated lists), Istio's
	// traffic.sidecar.istio.io/exclude* under weft.dev/:
	ExcludeInboundPortsAnnotation     = "weft.dev/exclude-inbound-ports"      // "8081,9000"
	ExcludeOutboundPortsAnnotation    = "weft.dev/exclude-outbound-ports"     // "5432"
	ExcludeInboundIPRangesAnnotation  = "weft.dev/exclude-inbound-ip-ranges"  // source CIDRs
	ExcludeOutboundIPRangesAnnotation = "weft.dev/exclude-outbound-ip-ranges" // destination CIDRs, "169.254.169.254/32"

	// RewriteProbesAnnotation "false" keeps the app's HTTP, TCP and gRPC
	// probes as written (they then reach the proxy's inbound listener,
	// which refuses kubelet's plaintext requests on mTLS ports).
	RewriteProbesAnnotation = "weft.dev/rewrite-app-probes"
)

// The names of what Pod adds. Pod removes anything of these names before
// adding its own, which makes injecting twice the same as once.
const (
	InitContainerName  = "weft-init"
	ProxyContainerName = "weft-proxy"
	RunVolume          = "weft-run"     // emptyDir (memory): the agent's sockets and Envoy's bootstrap
	TokenVolume        = "weft-token"   // projected service-account token, audience Options.TokenAudience
	PodInfoVolume      = "weft-podinfo" // downward API: the pod's labels
	XtablesVolume      = "weft-xtables" // emptyDir for netinit's /run (iptables' lock file)
)

// Paths and ports inside the proxy image and container: the image contract
// (docs/kubernetes.md).
const (
	WeftBinary  = "/usr/local/bin/weft"
	EnvoyBinary = "/usr/local/bin/envoy"
	RunDir      = "/var/run/weft"
	TokenDir    = "/var/run/secrets/weft/tokens"
	TokenFile   = TokenDir + "/token"
	PodInfoDir  = "/etc/weft/podinfo"
	// ProxyUID is the uid and gid of the proxy container; netinit does not
	// redirect its connections.
	ProxyUID = 1337
	// HealthPort is the agent's /ready, /healthz and /app-health port;
	// StatsPort is Envoy's Prometheus listener. Neither is redirected.
	HealthPort = compiler.DefaultAgentHealthPort
	StatsPort  = compiler.DefaultStatsPort
)

// Defaults of Options.
const (
	DefaultControlPlaneNamespace = compiler.DefaultControlPlaneNamespace
	DefaultControllerService     = "weft-controller"
	DefaultCAPort                = 15012
	DefaultXDSPort               = 15010
	DefaultTokenAudience         = "weft"
	// DefaultTokenExpirationSeconds: the kubelet refreshes the token at
	// 80% of this (48 min); the agent reads it for each CSR (at start and
	// at every renewal, about every 12 h).
	DefaultTokenExpirationSeconds = 3600
	DefaultProxyImageName         = "localhost/weft-proxy"
	// DevTag is the image tag of a development build ("(devel)" version).
	DevTag = "dev"
)

// SystemNamespaces are never injected, whatever their labels say.
var SystemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// Options say what to inject. The zero value, with a TrustBundle, injects
// the images of a development build talking to the controller that
// environments/deploy installs.
type Options struct {
	// Version is weft's version, recorded in VersionAnnotation and the
	// tag of the default images ("" or "(devel)": DevTag).
	Version string
	// ProxyImage runs `weft agent` and Envoy (default
	// localhost/weft-proxy:<tag>); InitImage runs `weft netinit` and
	// needs iptables (default ProxyImage).
	ProxyImage, InitImage string
	// PullPolicy of both images (default IfNotPresent).
	PullPolicy corev1.PullPolicy
	// ControlPlaneNamespace is the controller's namespace (default
	// weft-system): never injected, and the host of the default addresses.
	ControlPlaneNamespace string
	// CAAddress and XDSAddress are the controller's CA and xDS
	// (host:port; default weft-controller.<ControlPlaneNamespace>.svc:15012
	// and :15010). The agent verifies the controller's certificate for
	// their host name.
	CAAddress, XDSAddress string
	// TrustDomain is passed to the agent (--trust-domain); empty: the
	// agent reads it from the trust bundle's root.
	TrustDomain string
	// TrustBundle is the mesh CA's roots (PEM), required: the agent
	// verifies the CA and the xDS server with them before it has a
	// certificate. It travels in the proxy's environment
	// (WEFT_TRUST_BUNDLE), as Linkerd's trust anchors do; a new root
	// reaches pods injected after it.
	TrustBundle []byte
	// TokenAudience and TokenExpirationSeconds of the projected
	// service-account token (defaults "weft", 3600; the kubelet refuses
	// less than 600).
	TokenAudience          string
	TokenExpirationSeconds int64
	// ProxyResources and InitResources (defaults DefaultProxyResources,
	// DefaultInitResources).
	ProxyResources, InitResources *corev1.ResourceRequirements
}

// DefaultProxyResources: Envoy with 2 workers and the agent. No CPU limit
// (a throttled proxy adds latency to every request); the memory limit
// bounds a leak.
func DefaultProxyResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
}

// DefaultInitResources: iptables-restore, once.
func DefaultInitResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
	}
}

// ImageTag is the image tag of a weft version: the version, or DevTag for
// a development build.
func ImageTag(version string) string {
	if version == "" || version == "(devel)" {
		return DevTag
	}
	return version
}

// withDefaults fills in o's defaults and checks what it cannot default.
func (o Options) withDefaults() (Options, error) {
	if o.Version == "" || o.Version == "(devel)" {
		o.Version = DevTag
	}
	if o.ProxyImage == "" {
		o.ProxyImage = DefaultProxyImageName + ":" + ImageTag(o.Version)
	}
	if o.InitImage == "" {
		o.InitImage = o.ProxyImage
	}
	if o.PullPolicy == "" {
		o.PullPolicy = corev1.PullIfNotPresent
	}
	if o.ControlPlaneNamespace == "" {
		o.ControlPlaneNamespace = DefaultControlPlaneNamespace
	}
	host := DefaultControllerService + "." + o.ControlPlaneNamespace + ".svc"
	if o.CAAddress == "" {
		o.CAAddress = fmt.Sprintf("%s:%d", host, DefaultCAPort)
	}
	if o.XDSAddress == "" {
		o.XDSAddress = fmt.Sprintf("%s:%d", host, DefaultXDSPort)
	}
	if o.TokenAudience == "" {
		o.TokenAudience = DefaultTokenAudience
	}
	if o.TokenExpirationSeconds == 0 {
		o.TokenExpirationSeconds = DefaultTokenExpirationSeconds
	}
	if o.ProxyResources == nil {
		r := DefaultProxyResources()
		o.ProxyResources = &r
	}
	if o.InitResources == nil {
		r := DefaultInitResources()
		o.InitResources = &r
	}
	var errs []error
	if !strings.Contains(string(o.TrustBundle), "-----BEGIN CERTIFICATE-----") {
		errs = append(errs, errors.New("no trust bundle: the mesh CA's roots (PEM) are required"))
	}
	if o.TokenExpirationSeconds < 600 {
		errs = append(errs, fmt.Errorf("token expiration %ds: the kubelet refuses less than 600", o.TokenExpirationSeconds))
	}
	for _, img := range []string{o.ProxyImage, o.InitImage} {
		if strings.ContainsAny(img, " \t\r\n") {
			errs = append(errs, fmt.Errorf("image %q has white space", img))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("inject: %w", err)
	}
	return o, nil
}
