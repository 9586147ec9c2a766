package agent

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

// The environment of `weft agent` in a pod, as the injector
// (sidecar/inject) sets it: the downward API for the pod, the mesh CA's
// roots, and the app probes it rewrote.
const (
	EnvPodName      = "POD_NAME"          // metadata.name
	EnvPodNamespace = "POD_NAMESPACE"     // metadata.namespace
	EnvService      = "WEFT_SERVICE"      // metadata.labels['mesh.weft.dev/service']
	EnvTrustBundle  = "WEFT_TRUST_BUNDLE" // PEM
	EnvAppProbes    = "WEFT_APP_PROBES"   // JSON of AppProbes
)

// Pod is what `weft agent` knows about the pod it runs in.
type Pod struct {
	// Name and Namespace come from the downward API.
	Name, Namespace string
	// Service is the pod's mesh service (its label mesh.weft.dev/service):
	// Envoy's node.cluster and the stats' source_service. It is not the
	// class: the control plane derives that from the pod's labels.
	Service string
	// TrustDomain of the mesh; empty: the trust bundle root's SPIFFE id
	// (TrustDomainOf).
	TrustDomain string
}

// ForPod completes cfg for a pod: the node id "<pod>.<namespace>", the
// cluster (the pod's service, no class), and the identity that the CA
// will find in the service-account token of cfg.TokenFile: its subject
// system:serviceaccount:<namespace>:<name>, in the trust domain. cfg's
// trust bundle (TrustBundleFile or TrustBundlePEM) gives the trust domain
// when p has none. The CA checks the token again (TokenReview) and signs
// only for the identity it finds; the control plane checks the node id
// against the pod and the certificate. Errors: a missing pod name or
// namespace, a token that is not a service-account JWT, a token for
// another namespace or pod than the downward API says.
func ForPod(cfg Config, p Pod) (Config, error) {
	if p.Name == "" || p.Namespace == "" {
		return cfg, fmt.Errorf("agent: the pod's name and namespace are unknown (set %s and %s from the downward API)", EnvPodName, EnvPodNamespace)
	}
	if p.Service == "" {
		return cfg, fmt.Errorf("agent: the pod has no mesh service (%s, from the pod's label mesh.weft.dev/service)", EnvService)
	}
	td := p.TrustDomain
	if td == "" {
		bundle := cfg.TrustBundlePEM
		if len(bundle) == 0 {
			b, err := os.ReadFile(cfg.TrustBundleFile)
			if err != nil {
				return cfg, fmt.Errorf("agent: trust bundle: %w", err)
			}
			bundle = b
		}
		var err error
		if td, err = TrustDomainOf(bundle); err != nil {
			return cfg, err
		}
	}
	claims, err := readTokenClaims(cfg.TokenFile)
	if err != nil {
		return cfg, err
	}
	if claims.namespace != p.Namespace {
		return cfg, fmt.Errorf("agent: the token in %s is for namespace %s; the pod runs in %s", cfg.TokenFile, claims.namespace, p.Namespace)
	}
	if claims.pod != "" && claims.pod != p.Name {
		return cfg, fmt.Errorf("agent: the token in %s is bound to pod %s; this is pod %s", cfg.TokenFile, claims.pod, p.Name)
	}
	cfg.Identity = cav1.Identity{TrustDomain: td, Namespace: claims.namespace, ServiceAccount: claims.serviceAccount}
	if err := cfg.Identity.Validate(); err != nil {
		return cfg, fmt.Errorf("agent: %w", err)
	}
	cfg.NodeID = p.Name + "." + p.Namespace
	cfg.Class = ""
	cfg.Service = p.Service
	return cfg, nil
}

// tokenClaims are what the agent reads, unverified, from its own token:
// the CA verifies it.
type tokenClaims struct {
	namespace, serviceAccount, pod string
}

// readTokenClaims reads the subject (and the bound pod, when there is
// one) of the Kubernetes service-account JWT in file.
func readTokenClaims(file string) (tokenClaims, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return tokenClaims{}, fmt.Errorf("agent: token: %w", err)
	}
	parts := strings.Split(strings.TrimSpace(string(b)), ".")
	notJWT := fmt.Errorf("agent: the token in %s is not a JWT: want the pod's projected service-account token", file)
	if len(parts) != 3 {
		return tokenClaims{}, notJWT
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return tokenClaims{}, notJWT
	}
	var c struct {
		Sub string `json:"sub"`
		K8s struct {
			Namespace string `json:"namespace"`
			Pod       struct {
				Name string `json:"name"`
			} `json:"pod"`
		} `json:"kubernetes.io"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return tokenClaims{}, notJWT
	}
	rest, ok := strings.CutPrefix(c.Sub, "system:serviceaccount:")
	ns, sa, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || sa == "" || strings.Contains(sa, ":") {
		return tokenClaims{}, fmt.Errorf("agent: the token in %s has the subject %q, not a service account (system:serviceaccount:<namespace>:<name>)", file, c.Sub)
	}
	if c.K8s.Namespace != "" && c.K8s.Namespace != ns {
		return tokenClaims{}, fmt.Errorf("agent: the token in %s names namespace %s in its subject and %s in its claims", file, ns, c.K8s.Namespace)
	}
	return tokenClaims{namespace: ns, serviceAccount: sa, pod: c.K8s.Pod.Name}, nil
}

// TrustDomainOf is the trust domain of a trust bundle: the host of the
// spiffe:// URI SAN of its first root that has one (the mesh CA's roots
// carry spiffe://<trust domain>).
func TrustDomainOf(bundle []byte) (string, error) {
	rest := bundle
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			continue
		}
		for _, u := range c.URIs {
			if u.Scheme == "spiffe" && u.Host != "" {
				return u.Host, nil
			}
		}
	}
	return "", errors.New("agent: no root of the trust bundle carries a spiffe://<trust domain> URI: set the trust domain (--trust-domain)")
}
