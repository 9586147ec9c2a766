package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
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

	mu    sync.Mutex
	state XDSState
}

// XDSState is what the agent knows of its xDS stream to the control
// plane.
type XDSState struct {
	// Connected: the control plane has answered on the current stream.
	Connected bool `json:"connected"`
	// Refused is the control plane's reason for refusing the last stream
	// (PermissionDenied or Unauthenticated: e.g. the pod matches no
	// version of its service), until a stream is answered.
	Refused string `json:"refused,omitempty"`
	// Error is why the last stream ended otherwise (the control plane
	// unreachable, restarting).
	Error string `json:"error,omitempty"`
	// Since is when this state began.
	Since time.Time `json:"since"`
}

// String is the state in a few words: "connected", "refused: <reason>",
// "unavailable: <error>" or "connecting".
func (s XDSState) String() string {
	switch {
	case s.Connected:
		return "connected"
	case s.Refused != "":
		return "refused: " + s.Refused
	case s.Error != "":
		return "unavailable: " + s.Error
	}
	return "connecting"
}

func (p *adsProxy) State() XDSState {
	if p == nil {
		return XDSState{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// setState records a new state; a refusal is logged as an error once per
// reason, a connection after a refusal or an error once.
func (p *adsProxy) setState(next XDSState) {
	p.mu.Lock()
	prev := p.state
	same := prev.Connected == next.Connected && prev.Refused == next.Refused && prev.Error == next.Error
	if !same {
		next.Since = time.Now()
		p.state = next
	}
	p.mu.Unlock()
	if same {
		return
	}
	switch {
	case next.Refused != "":
		p.log.Error("agent: the control plane refused this proxy's xDS stream: Envoy gets no configuration until this is fixed",
			"reason", next.Refused)
	case next.Connected && (prev.Refused != "" || prev.Error != ""):
		p.log.Info("agent: xDS stream to the control plane answered", "previously", prev.String())
	}
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
	answered := false
	for {
		resp, err := upRecv()
		if err == nil && !answered {
			answered = true
			p.setState(XDSState{Connected: true})
		}
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
	switch st := status.Convert(err); st.Code() {
	case codes.PermissionDenied, codes.Unauthenticated:
		// reconciler/xds says "xDS stream refused: <reason>"; the agent
		// says the first part itself.
		p.setState(XDSState{Refused: strings.TrimPrefix(st.Message(), "xDS stream refused: ")})
		// Envoy retries with its own backoff; the control plane may accept
		// the pod later (a new revision, relabelled pod).
		return status.Error(st.Code(), st.Message())
	default:
		p.setState(XDSState{Error: st.Message()})
	}
	p.log.Warn("agent: xDS upstream stream ended; closing Envoy's stream so it reconnects", "api", kind, "err", err)
	return status.Errorf(codes.Unavailable, "xDS upstream: %v", err)
}
