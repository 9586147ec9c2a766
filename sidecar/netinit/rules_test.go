package netinit_test

import (
	"flag"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/weft-dev/weft/sidecar/netinit"
)

var update = flag.Bool("update", false, "rewrite testdata/ from the current output")

func fullConfig() netinit.Config {
	c := netinit.DefaultConfig()
	c.ExcludeInboundPorts = []uint16{15090, 15021, 9000, 15021}
	c.ExcludeOutboundPorts = []uint16{5432}
	c.ExcludeInboundCIDRs = []netip.Prefix{netip.MustParsePrefix("192.168.7.1/16")}
	c.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32"), netip.MustParsePrefix("10.96.0.0/12")}
	return c
}

// TestRulesGolden: the iptables-restore input of a configuration with
// every kind of exclusion (lists sorted and deduplicated, CIDRs masked).
func TestRulesGolden(t *testing.T) {
	rs, err := netinit.Rules(fullConfig())
	if err != nil {
		t.Fatal(err)
	}
	golden := "testdata/rules.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(rs.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(want), rs.String()); d != "" {
		t.Errorf("rules differ from %s (-want +got):\n%s", golden, d)
	}
}

// TestArgsRoundTrip: the flags the injector renders (Args) parse back into
// the same configuration through the command's flags (BindFlags).
func TestArgsRoundTrip(t *testing.T) {
	c := fullConfig()
	got := netinit.DefaultConfig()
	fs := pflag.NewFlagSet("netinit", pflag.ContinueOnError)
	got.BindFlags(fs)
	if err := fs.Parse(c.Args()); err != nil {
		t.Fatal(err)
	}
	a, _ := netinit.Rules(c)
	b, _ := netinit.Rules(got)
	if a.String() != b.String() {
		t.Errorf("args %q parse to other rules:\n%s\nwant\n%s", c.Args(), b, a)
	}
	if want := "--exclude-inbound-ports=9000,15021,15090"; !strings.Contains(strings.Join(c.Args(), " "), want) {
		t.Errorf("args %q lack %s", c.Args(), want)
	}
}

// TestBadConfig: errors name the value and what is expected.
func TestBadConfig(t *testing.T) {
	for in, want := range map[string]string{
		"80,http":       `"http" is not a port (1-65535)`,
		"0":             `"0" is not a port`,
		"65536":         `"65536" is not a port`,
		" 80 , , 443 ,": "",
	} {
		_, err := netinit.ParsePorts(in)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("ParsePorts(%q): %v, want %q", in, err, want)
		}
	}
	for in, want := range map[string]string{
		"10.0.0.0/33":     `"10.0.0.0/33" is not an IPv4 CIDR`,
		"::1":             `"::1" is IPv6`,
		"10.0.0.1, 1.2.3": `"1.2.3" is not an IPv4 CIDR`,
		"10.1.2.3/8":      "",
	} {
		_, err := netinit.ParseCIDRs(in)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("ParseCIDRs(%q): %v, want %q", in, err, want)
		}
	}
	c := netinit.DefaultConfig()
	c.OutboundPort = c.InboundPort
	if _, err := netinit.Rules(c); err == nil || !strings.Contains(err.Error(), "inbound and outbound port are both 15006") {
		t.Errorf("same ports: %v", err)
	}
	if _, err := netinit.ParseBackend("iptables"); err == nil || !strings.Contains(err.Error(), "want auto, nft or legacy") {
		t.Errorf("backend: %v", err)
	}
}

// TestCheck: Check finds a missing jump and a chain that differs.
func TestCheck(t *testing.T) {
	rs, _ := netinit.Rules(netinit.DefaultConfig())
	table := rs.String()
	if err := netinit.Check(rs, table); err != nil {
		t.Fatalf("its own rules: %v", err)
	}
	noJump := strings.Replace(table, "-A OUTPUT -p tcp -j WEFT_OUTBOUND\n", "", 1)
	if err := netinit.Check(rs, noJump); err == nil || !strings.Contains(err.Error(), "missing jump: -A OUTPUT -p tcp -j WEFT_OUTBOUND") {
		t.Errorf("missing jump: %v", err)
	}
	extra := strings.Replace(table, "COMMIT", "-A WEFT_INBOUND -p tcp -j RETURN\nCOMMIT", 1)
	if err := netinit.Check(rs, extra); err == nil || !strings.Contains(err.Error(), "chain WEFT_INBOUND holds") {
		t.Errorf("extra rule: %v", err)
	}
}
