package mesh

import (
	"testing"
	"time"
)

func TestResolve(t *testing.T) {
	d := Defaults{Namespace: "shop", MTLS: MTLSPermissive, Timeout: Duration{5 * time.Second}, Retries: Retries{Attempts: 2}}
	own := Duration{time.Second}
	tests := []struct {
		name string
		in   Service
		d    Defaults
		ns   string
		sa   string
		mtls MTLSMode
		tmo  time.Duration
	}{
		{"mesh defaults", Service{}, d, "shop", "orders", MTLSPermissive, 5 * time.Second},
		{"service's own values win", Service{Namespace: "pay", ServiceAccount: "api", MTLS: MTLSStrict, Timeout: &own}, d, "pay", "api", MTLSStrict, time.Second},
		{"no defaults at all", Service{}, Defaults{}, "default", "orders", MTLSStrict, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Ports = map[string]Port{"http": {Port: 80}}
			tt.in.Versions = map[string]*Version{"v1": {}}
			got := Resolve("orders", tt.in, tt.d)
			if got.Name != "orders" || got.Namespace != tt.ns || got.ServiceAccount != tt.sa || got.MTLS != tt.mtls {
				t.Errorf("got name=%q ns=%q sa=%q mtls=%q", got.Name, got.Namespace, got.ServiceAccount, got.MTLS)
			}
			if tmo := time.Duration(0); got.Timeout != nil {
				if tmo = got.Timeout.Duration; tmo != tt.tmo {
					t.Errorf("timeout = %v, want %v", tmo, tt.tmo)
				}
			} else if tt.tmo != 0 {
				t.Errorf("timeout unset, want %v", tt.tmo)
			}
			if got.Ports["http"].Name != "http" || got.Versions["v1"].Name != "v1" {
				t.Errorf("port/version names not set")
			}
			if tt.in.Versions["v1"].Name != "" {
				t.Errorf("Resolve modified its input")
			}
			if again := Resolve("orders", got, tt.d); again.Namespace != got.Namespace || again.MTLS != got.MTLS {
				t.Errorf("not idempotent")
			}
		})
	}
}
