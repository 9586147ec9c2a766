package ca

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

// Authenticator maps a workload's credential to the identity it owns.
// Local mode uses TokenAuthenticator; in Kubernetes,
// reconciler/kube/identity's TokenReviewAuthenticator checks projected
// service-account tokens with the TokenReview API.
type Authenticator interface {
	// Authenticate returns the identity that token owns, or an error
	// wrapping ErrUnauthenticated when the token is unknown or invalid.
	Authenticate(ctx context.Context, token string) (cav1.Identity, error)
}

// ErrUnauthenticated is wrapped by an Authenticator's errors for a token
// that proves nothing.
var ErrUnauthenticated = errors.New("unauthenticated")

// TokenAuthenticator is the local mode's Authenticator: a registry of
// per-workload random tokens, each owning one identity. `weft up` makes a
// token per workload (NewToken), registers it (Add) and hands it to the
// workload's agent in a file of mode 0600 (WriteTokenFile). Only the
// SHA-256 of each token is kept. Safe for concurrent use.
type TokenAuthenticator struct {
	mu  sync.RWMutex
	ids map[[sha256.Size]byte]cav1.Identity
}

// NewTokenAuthenticator is an empty registry.
func NewTokenAuthenticator() *TokenAuthenticator {
	return &TokenAuthenticator{ids: map[[sha256.Size]byte]cav1.Identity{}}
}

// Add registers token as owning id (replacing what it owned before).
func (a *TokenAuthenticator) Add(token string, id cav1.Identity) error {
	if len(token) < 16 {
		return errors.New("token too short: use NewToken")
	}
	if err := id.Validate(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids[sha256.Sum256([]byte(token))] = id
	return nil
}

// Remove forgets token.
func (a *TokenAuthenticator) Remove(token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.ids, sha256.Sum256([]byte(token)))
}

// Authenticate implements Authenticator. It compares the token's SHA-256
// with every registered digest in constant time and without stopping
// early, so the time taken says nothing about which token, or how much of
// one, matched. (Local mode registers one token per workload: tens.)
func (a *TokenAuthenticator) Authenticate(_ context.Context, token string) (cav1.Identity, error) {
	if token == "" {
		return cav1.Identity{}, fmt.Errorf("%w: no token", ErrUnauthenticated)
	}
	h := sha256.Sum256([]byte(token))
	a.mu.RLock()
	defer a.mu.RUnlock()
	var found cav1.Identity
	match := 0
	for stored, id := range a.ids {
		if subtle.ConstantTimeCompare(stored[:], h[:]) == 1 {
			found, match = id, 1
		}
	}
	if match == 0 {
		return cav1.Identity{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	return found, nil
}

// NewToken is a fresh random token (256 bits, URL-safe base64).
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// WriteTokenFile writes token to path with mode 0600 (its directory is
// created 0700 if missing), replacing any previous file atomically.
func WriteTokenFile(path, token string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return writeFileAtomic(path, []byte(token+"\n"), 0o600)
}
