package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	corev1 "k8s.io/api/core/v1"
)

// The service-account key pair, in Env.Dir.
const (
	saPrivateKeyFile = "sa.key" // --service-account-signing-key-file (PEM "EC PRIVATE KEY")
	saPublicKeyFile  = "sa.pub" // --service-account-key-file (PEM "PUBLIC KEY")
)

// writeServiceAccountKeys generates the ECDSA P-256 key that the apiserver
// signs service-account tokens with (ES256) and writes both halves into dir.
func writeServiceAccountKeys(dir string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	priv, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	files := map[string]*pem.Block{
		saPrivateKeyFile: {Type: "EC PRIVATE KEY", Bytes: priv},
		saPublicKeyFile:  {Type: "PUBLIC KEY", Bytes: pub},
	}
	for name, block := range files {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, fmt.Errorf("service-account key: %w", err)
		}
	}
	return key, nil
}

// TokenClaims are the claims of a service-account token that
// [Env.SignServiceAccountToken] signs.
type TokenClaims struct {
	// ServiceAccount is the account the token names (namespace, name and
	// UID must match the stored object, as the apiserver checks).
	ServiceAccount *corev1.ServiceAccount
	// Audiences is `aud`.
	Audiences []string
	// NotBefore is `nbf` and `iat`; Expiry is `exp`. The apiserver allows
	// one minute of clock skew on both (go-jose's DefaultLeeway).
	NotBefore, Expiry time.Time
}

// SignServiceAccountToken signs c with the apiserver's own service-account
// key, exactly as the apiserver's TokenRequest would (issuer [Issuer],
// subject system:serviceaccount:NS:NAME, the kubernetes.io private claims,
// the key id the apiserver derives from its key). It exists for the tokens
// TokenRequest will not issue — one that has already expired (TokenRequest
// refuses expirationSeconds below 600) or is not valid yet; anything else
// should come from the real TokenRequest API.
func (e *Env) SignServiceAccountToken(c TokenClaims) (string, error) {
	kid, err := keyID(&e.saKey.PublicKey)
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: e.saKey},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	if err != nil {
		return "", fmt.Errorf("service-account token signer: %w", err)
	}
	sa := c.ServiceAccount
	public := jwt.Claims{
		Issuer:    Issuer,
		Subject:   "system:serviceaccount:" + sa.Namespace + ":" + sa.Name,
		Audience:  jwt.Audience(c.Audiences),
		NotBefore: jwt.NewNumericDate(c.NotBefore),
		IssuedAt:  jwt.NewNumericDate(c.NotBefore),
		Expiry:    jwt.NewNumericDate(c.Expiry),
	}
	type ref struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	}
	private := map[string]any{"kubernetes.io": map[string]any{
		"namespace":      sa.Namespace,
		"serviceaccount": ref{Name: sa.Name, UID: string(sa.UID)},
	}}
	token, err := jwt.Signed(signer).Claims(public).Claims(private).Serialize()
	if err != nil {
		return "", fmt.Errorf("service-account token: %w", err)
	}
	return token, nil
}

// keyID is the `kid` the apiserver puts on the tokens it signs: the
// unpadded base64url SHA-256 of the PKIX public key (k8s.io/kubernetes
// pkg/serviceaccount, keyIDFromPublicKey).
func keyID(pub *ecdsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("service-account key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}
