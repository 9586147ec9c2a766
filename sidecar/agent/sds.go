package agent

import (
	"context"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weft-dev/weft/compiler"
)

// oneNode maps every node to one cache entry: the SDS socket serves only
// this pod's Envoy.
type oneNode struct{}

func (oneNode) ID(*corev3.Node) string { return "envoy" }

// newSecretCache is the snapshot cache behind the agent's SDS server.
func newSecretCache() cache.SnapshotCache {
	return cache.NewSnapshotCache(false, oneNode{}, nil)
}

// publish replaces the secrets Envoy gets: "default" (the workload
// certificate and key) and "ROOTCA" (the trust bundle). The version is the
// certificate's serial, so every renewal is a new version and Envoy's
// listeners and clusters pick it up without a restart.
func publish(ctx context.Context, c cache.SnapshotCache, w *workloadCert) error {
	inline := func(b []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
	}
	secrets := []types.Resource{
		&tlsv3.Secret{Name: compiler.CertSecretName, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(w.chainPEM),
			PrivateKey:       inline(w.keyPEM),
		}}},
		&tlsv3.Secret{Name: compiler.RootCASecretName, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(w.bundle),
		}}},
	}
	snap, err := cache.NewSnapshot(w.leaf.SerialNumber.Text(16), map[resource.Type][]types.Resource{resource.SecretType: secrets})
	if err != nil {
		return err
	}
	return c.SetSnapshot(ctx, "envoy", snap)
}
