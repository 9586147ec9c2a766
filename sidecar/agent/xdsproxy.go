package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// adsProxy serves Envoy's ADS streams on the agent's socket and relays
// each one, message by message, over its own stream to the control plane
// (mTLS with the workload certificate). It does not interpret the
// messages: the node, versions, nonces, ACKs and NACKs are Envoy's.
//
// When the upstream stream breaks, the downstream stream is ended with
// Unavailable: Envoy keeps its last accepted config, reconnects with its
// own backoff and sends its current versions, which re-ACKs what it has.
// A new downstream stream waits for the upstream connection to be ready
// (gRPC wait-for-ready) rather than failing while the control plane is
// away.
type adsProxy struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	upstream discoveryv3.AggregatedDiscoveryServiceClient
	log      *slog.Logger
	streams  atomic.Int64 // upstream streams opened (for tests and status)
}

// dialXDS is the lazy mTLS connection to the control plane. cert returns
// the current workload certificate at every handshake, so a reconnection
// after a renewal presents the new one.
func dialXDS(cfg *Config, roots *x509.CertPool, cert func() *tls.Certificate) (*grpc.ClientConn, error) {
	creds := credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    roots,
		ServerName: serverName(cfg.XDSServerName, cfg.XDSAddress),
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := cert(); c != nil {
				return c, nil
			}
			return nil, errors.New("no workload certificate yet")
		},
	})
	// Reconnect quickly when the control plane comes back (local mode
	// restarts it on the same address): at most 5s between attempts.
	bo := backoff.DefaultConfig
	bo.BaseDelay, bo.MaxDelay = 250*time.Millisecond, 5*time.Second
	return grpc.NewClient(cfg.XDSAddress, grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 5 * time.Second}))
}

func (p *adsProxy) StreamAggregatedResources(down discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	ctx, cancel := context.WithCancel(down.Context())
	defer cancel()
	up, err := p.upstream.StreamAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return p.upstreamErr("sotw", err)
	}
	p.streams.Add(1)
	return pump(ctx, cancel, p, "sotw",
		func() (*discoveryv3.DiscoveryRequest, error) { return down.Recv() }, up.Send, up.CloseSend,
		up.Recv, down.Send)
}

func (p *adsProxy) DeltaAggregatedResources(down discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	ctx, cancel := context.WithCancel(down.Context())
	defer cancel()
	up, err := p.upstream.DeltaAggregatedResources(ctx, grpc.WaitForReady(true))
	if err != nil {
		return p.upstreamErr("delta", err)
	}
	p.streams.Add(1)
	return pump(ctx, cancel, p, "delta",
		func() (*discoveryv3.DeltaDiscoveryRequest, error) { return down.Recv() }, up.Send, up.CloseSend,
		up.Recv, down.Send)
}

// pump relays requests Envoy -> control plane and responses back until
// either side ends. It returns nil when Envoy ended the stream and an
// Unavailable error when the control plane did.
func pump[Req, Resp any](ctx context.Context, cancel context.CancelFunc, p *adsProxy, kind string,
	downRecv func() (Req, error), upSend func(Req) error, upClose func() error,
	upRecv func() (Resp, error), downSend func(Resp) error) error {
	downDone := make(chan error, 1)
	go func() {
		for {
			req, err := downRecv()
			if err != nil {
				// Envoy closed its side (or went away): end the upstream stream.
				_ = upClose()
				downDone <- err
				cancel()
				return
			}
			if err := upSend(req); err != nil {
				// The upstream error surfaces in upRecv below.
				downDone <- nil
				return
			}
		}
	}()
	for {
		resp, err := upRecv()
		if err != nil {
			select {
			case derr := <-downDone:
				if derr != nil && (errors.Is(derr, io.EOF) || ctx.Err() != nil || status.Code(derr) == codes.Canceled) {
					return nil // Envoy ended the stream
				}
			default:
			}
			return p.upstreamErr(kind, err)
		}
		if err := downSend(resp); err != nil {
			return err
		}
	}
}

func (p *adsProxy) upstreamErr(kind string, err error) error {
	if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
		return status.Error(codes.Canceled, "stream ended")
	}
	p.log.Warn("agent: xDS upstream stream ended; closing Envoy's stream so it reconnects", "api", kind, "err", err)
	return status.Errorf(codes.Unavailable, "xDS upstream: %v", err)
}
