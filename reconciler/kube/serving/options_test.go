package serving

import (
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/reconciler/ca"
)

// TestCertLifetimes: --cert-ttl and --cert-min-ttl default to the CA's
// defaults, and a lifetime outside [min, ca.DefaultMaxTTL] is refused
// with both flags named, before the CA is built.
func TestCertLifetimes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ttl, min time.Duration
		want     string // error; "" for none
	}{
		{name: "defaults", ttl: 0, min: 0},
		{name: "short, with a lower minimum", ttl: 30 * time.Second, min: 10 * time.Second},
		{name: "short, default minimum", ttl: 30 * time.Second, want: "--cert-ttl 30s must be between --cert-min-ttl 10m0s and 168h0m0s"},
		{name: "too long", ttl: 8 * 24 * time.Hour, want: "--cert-ttl 192h0m0s must be between"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Options{Namespace: "weft-system", TrustDomain: "shop.example", CertTTL: tc.ttl, CertMinTTL: tc.min}.withDefaults()
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.ttl == 0 && (o.CertTTL != ca.DefaultTTL || o.CertMinTTL != ca.DefaultMinTTL) {
				t.Errorf("defaults: %s, %s", o.CertTTL, o.CertMinTTL)
			}
		})
	}
}
