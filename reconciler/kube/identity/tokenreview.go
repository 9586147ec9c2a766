package identity

import (
	"context"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/ca"
)

// DefaultAudience is the audience of the projected service-account token
// that the agent presents to the CA (the injector's projected volume asks
// for it).
const DefaultAudience = "weft"

// serviceAccountPrefix starts the user name of a service-account token.
const serviceAccountPrefix = "system:serviceaccount:"

// TokenReviewAuthenticator authenticates a workload's projected
// service-account token with the TokenReview API. It implements
// ca.Authenticator.
type TokenReviewAuthenticator struct {
	// Client creates TokenReviews (the manager's client: creates go to
	// the apiserver). RBAC: create tokenreviews.authentication.k8s.io.
	Client client.Writer
	// Audience the token must be for (default DefaultAudience).
	Audience string
	// TrustDomain of the identities (the mesh's).
	TrustDomain string
}

// Authenticate implements ca.Authenticator. Errors wrap
// ca.ErrUnauthenticated when the apiserver does not authenticate the
// token for the audience (with the apiserver's reason), when the token is
// not a service account's, or when the review does not echo the audience
// (an apiserver that ignores audiences); an error talking to the
// apiserver does not (the CA answers Unavailable: the agent retries).
func (a *TokenReviewAuthenticator) Authenticate(ctx context.Context, token string) (cav1.Identity, error) {
	if token == "" {
		return cav1.Identity{}, fmt.Errorf("%w: no token", ca.ErrUnauthenticated)
	}
	aud := a.Audience
	if aud == "" {
		aud = DefaultAudience
	}
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{aud}}}
	if err := a.Client.Create(ctx, review); err != nil {
		return cav1.Identity{}, fmt.Errorf("TokenReview: %w", err)
	}
	st := review.Status
	if !st.Authenticated {
		why := st.Error
		if why == "" {
			why = "not authenticated"
		}
		return cav1.Identity{}, fmt.Errorf("%w: the apiserver refused the token: %s", ca.ErrUnauthenticated, why)
	}
	// A client that sets spec.audiences must check that the reviewer
	// echoes a compatible one (k8s.io/api authentication/v1).
	if !slices.Contains(st.Audiences, aud) {
		return cav1.Identity{}, fmt.Errorf("%w: the TokenReview did not confirm audience %q (got %v)", ca.ErrUnauthenticated, aud, st.Audiences)
	}
	ns, sa, ok := strings.Cut(strings.TrimPrefix(st.User.Username, serviceAccountPrefix), ":")
	if !strings.HasPrefix(st.User.Username, serviceAccountPrefix) || !ok {
		return cav1.Identity{}, fmt.Errorf("%w: %q is not a service account", ca.ErrUnauthenticated, st.User.Username)
	}
	id := cav1.Identity{TrustDomain: a.TrustDomain, Namespace: ns, ServiceAccount: sa}
	if err := id.Validate(); err != nil {
		return cav1.Identity{}, fmt.Errorf("%w: %v", ca.ErrUnauthenticated, err)
	}
	return id, nil
}
