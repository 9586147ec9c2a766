package cav1

import (
	"fmt"
	"net/url"
	"strings"
)

// Identity is a workload identity: the SPIFFE id
// spiffe://<TrustDomain>/ns/<Namespace>/sa/<ServiceAccount>.
type Identity struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// String is the SPIFFE id.
func (i Identity) String() string {
	return "spiffe://" + i.TrustDomain + "/ns/" + i.Namespace + "/sa/" + i.ServiceAccount
}

// URL is the SPIFFE id as a URL, the form of an X.509 URI SAN.
func (i Identity) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: i.TrustDomain, Path: "/ns/" + i.Namespace + "/sa/" + i.ServiceAccount}
}

// Validate reports whether every part is non-empty and free of the
// characters that would make the id ambiguous.
func (i Identity) Validate() error {
	for _, p := range []struct{ name, v string }{
		{"trust domain", i.TrustDomain}, {"namespace", i.Namespace}, {"service account", i.ServiceAccount},
	} {
		if p.v == "" {
			return fmt.Errorf("identity %s: empty %s", i, p.name)
		}
		if strings.ContainsAny(p.v, "/?#%@: ") {
			return fmt.Errorf("identity %s: invalid character in %s %q", i, p.name, p.v)
		}
	}
	return nil
}

// ParseIdentity parses spiffe://<td>/ns/<ns>/sa/<sa>.
func ParseIdentity(s string) (Identity, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Identity{}, fmt.Errorf("SPIFFE id %q: %w", s, err)
	}
	return IdentityFromURL(u)
}

// IdentityFromURL is ParseIdentity for a parsed URL (e.g. a URI SAN).
func IdentityFromURL(u *url.URL) (Identity, error) {
	if u.Scheme != "spiffe" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return Identity{}, fmt.Errorf("SPIFFE id %q: want spiffe://<trust domain>/ns/<namespace>/sa/<service account>", u)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return Identity{}, fmt.Errorf("SPIFFE id %q: want spiffe://<trust domain>/ns/<namespace>/sa/<service account>", u)
	}
	id := Identity{TrustDomain: u.Host, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.Validate(); err != nil {
		return Identity{}, err
	}
	return id, nil
}
