package agent

import (
	"crypto/x509"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/tooltest"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
)

func testConfig(t *testing.T) Config {
	dir := t.TempDir()
	return Config{
		Identity:        cav1.Identity{TrustDomain: "shop.example", Namespace: "shop", ServiceAccount: "orders"},
		Class:           "orders-v1",
		NodeID:          "orders-v1~pod",
		NodeMetadata:    map[string]string{"zone": "a"},
		CAAddress:       "127.0.0.1:15012",
		TrustBundleFile: filepath.Join(dir, "bundle.pem"),
		TokenFile:       filepath.Join(dir, "token"),
		XDSAddress:      "127.0.0.1:15010",
		Socket:          filepath.Join(dir, "agent.sock"),
		BootstrapPath:   filepath.Join(dir, "envoy.yaml"),
	}
}

// TestBootstrapValidates: the bootstrap the agent writes is accepted by a
// real Envoy (--mode validate), for SotW and delta ADS.
func TestBootstrapValidates(t *testing.T) {
	envoy := tooltest.Envoy(t)
	for _, delta := range []bool{false, true} {
		cfg := testConfig(t)
		cfg.DeltaXDS = delta
		if err := cfg.setDefaults(); err != nil {
			t.Fatal(err)
		}
		b, err := Bootstrap(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeBootstrap(cfg.BootstrapPath, b); err != nil {
			t.Fatal(err)
		}
		y, _ := os.ReadFile(cfg.BootstrapPath)
		want := "apiType: GRPC"
		if delta {
			want = "apiType: DELTA_GRPC"
		}
		for _, s := range []string{want, "cluster: orders-v1", "id: orders-v1~pod", "weft.identity: spiffe://shop.example/ns/shop/sa/orders",
			"zone: a", "clusterName: xds-grpc", "name: sds-grpc", "path: " + cfg.Socket, "path: " + cfg.AdminSocket, "mode: 384"} {
			if !strings.Contains(string(y), s) {
				t.Errorf("bootstrap lacks %q:\n%s", s, y)
			}
		}
		out, err := exec.Command(envoy, "--mode", "validate", "-c", cfg.BootstrapPath, "--disable-hot-restart").CombinedOutput()
		if err != nil {
			t.Errorf("envoy --mode validate (delta=%v): %v\n%s\n%s", delta, err, out, y)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg := testConfig(t)
	cfg.NodeID, cfg.Socket, cfg.BootstrapPath = "", "", ""
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	if cfg.AdminSocket != filepath.Join(filepath.Dir(DefaultSocket), AdminSocketName) || cfg.Socket != DefaultSocket || cfg.HealthAddress != DefaultHealthAddress ||
		cfg.RenewJitter != 0.1 || !strings.HasPrefix(cfg.NodeID, "orders-v1~") {
		t.Errorf("defaults: %+v", cfg)
	}
	bad := testConfig(t)
	bad.Identity.ServiceAccount = ""
	if err := bad.setDefaults(); err == nil {
		t.Error("config without a service account accepted")
	}
}

// TestEnvoyArgs: Envoy runs DefaultConcurrency (2) workers unless told
// otherwise; a --concurrency among EnvoyArgs replaces Concurrency (Envoy
// refuses an option given twice); a negative one is refused.
func TestEnvoyArgs(t *testing.T) {
	cases := []struct {
		concurrency int
		extra       []string
		want        string
	}{
		{0, nil, "--concurrency 2"},
		{4, []string{"--component-log-level", "upstream:debug"}, "--concurrency 4 --component-log-level upstream:debug"},
		{4, []string{"--concurrency=1"}, "--log-level warning --concurrency=1"},
		{4, []string{"--concurrency", "1"}, "--log-level warning --concurrency 1"},
	}
	for _, c := range cases {
		cfg := testConfig(t)
		cfg.Concurrency, cfg.EnvoyArgs = c.concurrency, c.extra
		if err := cfg.setDefaults(); err != nil {
			t.Fatal(err)
		}
		got := strings.Join(envoyArgs(&cfg), " ")
		if !strings.HasSuffix(got, c.want) || strings.Count(got, "--concurrency") != 1 {
			t.Errorf("Concurrency %d, EnvoyArgs %q: %s, want it to end with %q", c.concurrency, c.extra, got, c.want)
		}
	}
	bad := testConfig(t)
	bad.Concurrency = -1
	if err := bad.setDefaults(); err == nil || !strings.Contains(err.Error(), "Concurrency -1") {
		t.Errorf("Concurrency -1: %v", err)
	}
}

// TestRenewDelay: renewal at half the remaining life, earlier by at most
// the jitter share of it.
func TestRenewDelay(t *testing.T) {
	now := time.Now()
	c := &workloadCert{received: now, leaf: &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: now.Add(30 * time.Second)}}
	lo, hi := time.Hour, time.Duration(0)
	for i := 0; i < 200; i++ {
		d := renewDelay(c, 0.1)
		lo, hi = min(lo, d), max(hi, d)
	}
	if lo < 12*time.Second || hi > 15*time.Second || hi-lo < time.Second {
		t.Errorf("30s certificate renews between %s and %s, want spread within [12s, 15s]", lo, hi)
	}
	expired := &workloadCert{received: now, leaf: &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: now.Add(-time.Second)}}
	if d := renewDelay(expired, 0.1); d != 0 {
		t.Errorf("expired certificate: renew in %s, want now", d)
	}
}

func TestCertsShow(t *testing.T) {
	body := []byte(`{"certificates":[{"ca_cert":[{"serial_number":"1"}],"cert_chain":[{"serial_number":"ab","subject_alt_names":[{"uri":"spiffe://shop.example/ns/shop/sa/orders"}]}]}]}`)
	if !certsShow(body, "spiffe://shop.example/ns/shop/sa/orders") {
		t.Error("certificate not found")
	}
	if certsShow(body, "spiffe://shop.example/ns/shop/sa/payments") || certsShow([]byte(`{"certificates":[]}`), "x") {
		t.Error("false positive")
	}
}
