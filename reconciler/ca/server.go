package ca

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

// Server is the gRPC CertificateService: it authenticates the caller's
// bearer token with an Authenticator and signs its CSR with a CA.
type Server struct {
	cav1.UnimplementedCertificateServiceServer
	ca   *CA
	auth Authenticator
	log  *slog.Logger
	obs  Observer
}

// NewServer serves ca's signing to callers that auth authenticates. log
// may be nil.
func NewServer(ca *CA, auth Authenticator, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{ca: ca, auth: auth, log: log}
}

// Observe makes the server tell o the outcome of every CSR (e.g.
// Metrics). Call it before Register.
func (s *Server) Observe(o Observer) *Server {
	s.obs = o
	return s
}

// refused tells the observer about a refusal and returns err.
func (s *Server) refused(err error) error {
	if s.obs != nil {
		s.obs.Refused(status.Code(err))
	}
	return err
}

// Register adds the service to gs.
func (s *Server) Register(gs grpc.ServiceRegistrar) { cav1.RegisterCertificateServiceServer(gs, s) }

// Sign implements cav1.CertificateServiceServer. Status codes:
// Unauthenticated (no or unknown token), PermissionDenied (a CSR for
// another identity; the message names both), InvalidArgument (a bad CSR),
// Internal otherwise.
func (s *Server) Sign(ctx context.Context, req *cav1.SignRequest) (*cav1.SignResponse, error) {
	token := cav1.TokenFromContext(ctx)
	if token == "" {
		return nil, s.refused(status.Error(codes.Unauthenticated, "no bearer token in the authorization metadata"))
	}
	id, err := s.auth.Authenticate(ctx, token)
	if err != nil {
		s.log.Warn("ca: refused CSR", "reason", err)
		if errors.Is(err, ErrUnauthenticated) {
			return nil, s.refused(status.Error(codes.Unauthenticated, err.Error()))
		}
		return nil, s.refused(status.Errorf(codes.Unavailable, "authenticate: %v", err))
	}
	issued, err := s.ca.SignCSR(req.GetCsrPem(), id, req.GetRequestedTtl().AsDuration())
	var forbidden *ForbiddenError
	var bad *BadRequestError
	switch {
	case errors.As(err, &forbidden):
		s.log.Warn("ca: refused CSR", "identity", id.String(), "reason", err)
		return nil, s.refused(status.Error(codes.PermissionDenied, err.Error()))
	case errors.As(err, &bad):
		s.log.Warn("ca: refused CSR", "identity", id.String(), "reason", err)
		return nil, s.refused(status.Error(codes.InvalidArgument, err.Error()))
	case err != nil:
		return nil, s.refused(status.Error(codes.Internal, err.Error()))
	}
	s.log.Info("ca: signed", "identity", id.String(), "serial", issued.Cert.SerialNumber.Text(16), "notAfter", issued.Cert.NotAfter)
	if s.obs != nil {
		s.obs.Signed(id, issued.Cert)
	}
	return &cav1.SignResponse{
		CertChainPem:   issued.ChainPEM,
		TrustBundlePem: issued.TrustBundlePEM,
		NotAfter:       timestamppb.New(issued.Cert.NotAfter),
	}, nil
}
