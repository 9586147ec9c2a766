package cav1

import (
	"context"
	"strings"

	"google.golang.org/grpc/metadata"
)

// AuthorizationKey is the gRPC metadata key of the caller's credential,
// "Bearer <token>".
const AuthorizationKey = "authorization"

// WithToken returns ctx with token attached as the outgoing
// "authorization: Bearer <token>" metadata.
func WithToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, AuthorizationKey, "Bearer "+token)
}

// TokenFromContext is the bearer token of an incoming call, "" if there
// is none (no metadata, another scheme, or several values).
func TokenFromContext(ctx context.Context) string {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ""
	}
	v := md.Get(AuthorizationKey)
	if len(v) != 1 {
		return ""
	}
	scheme, token, ok := strings.Cut(v[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
