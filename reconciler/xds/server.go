package xds

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/reconciler/api/status"
)

// ClassMetadataKey is the node metadata field that names a node's proxy
// class; without it, node.cluster does.
const ClassMetadataKey = "weft.class"

// PerNodeFunc returns the variant of class c that the node with the given
// id is served, e.g. c with the listener ports of one local instance. The
// placement must come from the control plane's own records (the node id
// is the bound one, see Authorizer), never from the node's metadata. It
// must not modify c (clone what it changes) and should return c itself
// when it changes nothing. The returned class's SnapshotVersion is the
// version served to the node. An error affects that node only: it keeps
// what it was served, shows the error in its status, and is retried with
// backoff (up to 30s) and at the next publish.
type PerNodeFunc func(nodeID string, c *compiler.Class) (*compiler.Class, error)

// Options configure a Server. The zero value serves plaintext gRPC with
// no per-node variants and trusts the node that each stream claims.
type Options struct {
	// Logger receives connection, publish and NACK events (default:
	// slog.Default()).
	Logger *slog.Logger
	// TLS, when set, is the server's TLS configuration (mTLS: set
	// ClientAuth to tls.RequireAndVerifyClientCert and ClientCAs: the
	// Authorizer sees only verified certificates). GRPCOptions are added
	// to the gRPC server's options (credentials may be given there
	// instead).
	TLS         *tls.Config
	GRPCOptions []grpc.ServerOption
	// Authorizer decides which node and class each stream is, from the
	// client certificate's SPIFFE id (nil: TrustClaims, which believes
	// the client — plaintext tests only).
	Authorizer Authorizer
	// PerNode, when set, makes each node's variant of its class.
	PerNode PerNodeFunc
	// ForgetAfter is how long a disconnected proxy stays in the status
	// (default 1h).
	ForgetAfter time.Duration
	// WarnInterval: of the warnings about one proxy (NACKs, variant
	// failures) or one refused identity, the first of each interval is
	// logged and the rest summarized at its end (default 1m).
	WarnInterval time.Duration
	// Now is the clock (default time.Now); tests may replace it.
	Now func() time.Time
	// TestOnlyBeforePublish, when set, replaces each result given to
	// Publish by what it returns, before anything is checked. It exists
	// so that tests can serve values that pass every check of weft but
	// that Envoy rejects (to exercise NACK handling once the compiler's
	// acceptance gate catches the ones known today). Production code must
	// leave it nil.
	TestOnlyBeforePublish func(rev string, res *compiler.Result) *compiler.Result
}

// Server serves compiled revisions over xDS (ADS, SotW and delta) and
// keeps the status of the revisions and of every proxy.
type Server struct {
	opts  Options
	log   *slog.Logger
	warn  *warnLimiter
	cache cache.SnapshotCache
	xds   serverv3.Server
	grpc  *grpc.Server
	ctx   context.Context
	stop  context.CancelFunc

	pubMu sync.Mutex // serializes Publish

	mu          sync.Mutex
	revision    string
	servedSince time.Time
	classes     map[string]*served // class name -> current snapshot
	// rolling: revision is served but not yet ACKed by every connected
	// proxy (since rolloutSince); good is the last applied revision, the
	// one a rejected rollout falls back to.
	rolling      bool
	rolloutSince time.Time
	good         *goodRevision
	attempted    string
	attempt      *status.Attempt
	// rejected: snapshot versions some proxy NACKed, never served again
	// (at most maxRejected, oldest forgotten first).
	rejected      map[string]*status.NACK
	rejectedOrder []string
	refused       []status.RefusedStream
	nodes         map[string]*node  // by node id
	streams       map[int64]*stream // by stream id (SotW and delta ids are separate counters)
	deltas        map[int64]*stream
	parked        map[string][]*parkedWatch // by node id: watches opened before the node's snapshot, or while it is held
	changed       chan struct{}             // closed on every status change
}

// served is a class of the served revision with its checked snapshot.
type served struct {
	class *compiler.Class
	snap  *cache.Snapshot
}

// goodRevision is an applied revision: every connected proxy ACKed it.
type goodRevision struct {
	rev     string
	classes map[string]*served
	at      time.Time
}

// New returns a Server. Serve it on a listener with Serve; register
// further gRPC services (the CA) on GRPC() before that.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ForgetAfter == 0 {
		opts.ForgetAfter = time.Hour
	}
	if opts.WarnInterval == 0 {
		opts.WarnInterval = time.Minute
	}
	if opts.Authorizer == nil {
		if opts.TLS != nil {
			opts.Logger.Warn("xDS server with TLS but no Authorizer: every stream is served the node it claims")
		}
		opts.Authorizer = TrustClaims
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:     opts,
		log:      opts.Logger,
		warn:     newWarnLimiter(opts.Logger, opts.WarnInterval),
		classes:  map[string]*served{},
		rejected: map[string]*status.NACK{},
		nodes:    map[string]*node{},
		streams:  map[int64]*stream{},
		deltas:   map[int64]*stream{},
		parked:   map[string][]*parkedWatch{},
		changed:  make(chan struct{}),
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.cache = cache.NewSnapshotCache(true, cache.IDHash{}, nil)
	s.xds = serverv3.NewServer(s.ctx, watchCache{s.cache, s}, callbacks{s})
	gopts := append([]grpc.ServerOption(nil), opts.GRPCOptions...)
	if opts.TLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	s.grpc = grpc.NewServer(gopts...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, s.xds)
	return s
}

// GRPC is the gRPC server that carries ADS; other control-plane services
// may be registered on it before Serve.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Serve serves gRPC on ln until Stop. It returns nil after Stop.
func (s *Server) Serve(ln net.Listener) error {
	err := s.grpc.Serve(ln)
	if err == grpc.ErrServerStopped {
		return nil
	}
	return err
}

// Stop closes every stream and listener.
func (s *Server) Stop() {
	s.stop()
	s.grpc.Stop()
}

// Revision is the revision being served.
func (s *Server) Revision() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revision
}

// AppliedRevision is the last applied revision: the one every connected
// proxy ACKed, which a rejected rollout falls back to ("" before the
// first).
func (s *Server) AppliedRevision() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.good == nil {
		return ""
	}
	return s.good.rev
}

// Changed returns a channel that is closed at the next change of the
// status (publish, attempt, connection, ACK, NACK).
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// notify wakes Changed waiters; s.mu is held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// WaitSynced blocks until every connected proxy whose class is served has
// ACKed the version it is served, or ctx ends; its error then names the
// proxies not in sync and what each still owes. A proxy held after a NACK
// (served nothing new) is not waited for.
func (s *Server) WaitSynced(ctx context.Context) error {
	for {
		s.mu.Lock()
		ch := s.changed
		synced := true
		for _, n := range s.nodes {
			if n.streams > 0 && n.version != "" && !n.held && !n.inSync() {
				synced = false
				break
			}
		}
		s.mu.Unlock()
		if synced {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for proxies to ACK: %w; %s", ctx.Err(), s.unsynced())
		}
	}
}

// unsynced describes the connected proxies that are not in sync.
func (s *Server) unsynced() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, n := range s.nodes {
		if n.streams == 0 || n.version == "" || n.held || n.inSync() {
			continue
		}
		d := fmt.Sprintf("%s (class %s) serving %s, ACKed %q", n.id, n.class, n.version, n.ackedVersion)
		if len(n.pending) > 0 {
			types := make([]string, 0, len(n.pending))
			for t := range n.pending {
				types = append(types, fmt.Sprintf("%s (ACKed %q)", t, n.ackedType[t]))
			}
			sort.Strings(types)
			d += ", pending " + strings.Join(types, ", ")
		}
		if n.nack != nil && n.nackFor == n.version {
			d += fmt.Sprintf(", NACKed %s: %s", n.nack.TypeURL, n.nack.Message)
		}
		out = append(out, d)
	}
	sort.Strings(out)
	const limit = 5
	if len(out) > limit {
		out = append(out[:limit], fmt.Sprintf("and %d more", len(out)-limit))
	}
	return fmt.Sprintf("not in sync: %s", strings.Join(out, "; "))
}

// SetCertExpiry records when the workload certificate of a node expires
// (reported by its agent). It creates no node: an unknown id is ignored.
func (s *Server) SetCertExpiry(nodeID string, expiry time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.nodes[nodeID]; n != nil {
		n.certExpiry = expiry
		s.notify()
	}
}

// Status is the status of the served revision, the last attempt and every
// proxy.
func (s *Server) Status() status.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forget()
	st := status.Status{
		Revision:              s.revision,
		ServedSince:           s.servedSince,
		LastAttemptedRevision: s.attempted,
		Proxies:               []status.Proxy{},
		RefusedStreams:        s.refusedStreams(),
	}
	if s.good != nil {
		st.LastAppliedRevision, st.LastAppliedAt = s.good.rev, s.good.at
	}
	if s.rolling {
		st.Rollout = s.rollout()
	}
	if len(s.classes) > 0 {
		st.Classes = make(map[string]string, len(s.classes))
		for name, c := range s.classes {
			st.Classes[name] = c.class.SnapshotVersion
		}
	}
	if s.attempt != nil {
		a := *s.attempt
		a.Problems = append([]status.Problem(nil), a.Problems...)
		if a.NACK != nil {
			a.NACK = copyNACK(a.NACK)
		}
		st.LastAttempt = &a
	}
	for _, n := range s.nodes {
		st.Proxies = append(st.Proxies, n.status())
	}
	sort.Slice(st.Proxies, func(i, j int) bool { return st.Proxies[i].NodeID < st.Proxies[j].NodeID })
	return st
}

// forget drops proxies disconnected for longer than ForgetAfter; s.mu is
// held.
func (s *Server) forget() {
	now := s.opts.Now()
	for id, n := range s.nodes {
		if n.streams == 0 && !n.disconnectedAt.IsZero() && now.Sub(n.disconnectedAt) > s.opts.ForgetAfter {
			delete(s.nodes, id)
		}
	}
}

// recordAttempt stores the outcome of one attempt; s.mu is held.
func (s *Server) recordAttempt(a *status.Attempt) {
	s.attempt = a
	s.notify()
}

// RecordFailure records a failed attempt of a revision at a step that
// happened outside the server (the pipeline's load, vet, compile, or a
// caller's own step). The served revision is unchanged.
func (s *Server) RecordFailure(rev, step string, err error) {
	a := &status.Attempt{Revision: rev, At: s.opts.Now(), Step: step, Error: err.Error(), Problems: Problems(err)}
	s.mu.Lock()
	s.attempted = rev
	s.recordAttempt(a)
	s.mu.Unlock()
	s.log.Warn("revision rejected", "revision", rev, "step", step, "error", err)
}
