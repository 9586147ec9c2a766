package netinit

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/weft-dev/weft/compiler"
)

// Defaults of Config.
const (
	// DefaultProxyUID is the uid the proxy container runs as: its own
	// outbound traffic is never redirected (Istio's convention).
	DefaultProxyUID = 1337
	// InboundChain and OutboundChain are the nat chains netinit owns.
	InboundChain  = "WEFT_INBOUND"
	OutboundChain = "WEFT_OUTBOUND"
	// Table is the iptables table of every rule.
	Table = "nat"
)

// Config is what to redirect. Every field has a flag of `weft netinit`
// (BindFlags; the injector renders them with Args).
type Config struct {
	// ProxyUID: connections made by this uid are not redirected
	// (--proxy-uid, default 1337).
	ProxyUID int64
	// InboundPort receives every inbound TCP connection not excluded
	// (--inbound-port, default compiler.DefaultInboundPort, 15006).
	InboundPort uint16
	// OutboundPort receives every outbound TCP connection not excluded
	// (--outbound-port, default compiler.DefaultOutboundPort, 15001).
	OutboundPort uint16
	// ExcludeInboundPorts are destination ports of inbound connections
	// that reach the pod untouched (--exclude-inbound-ports 15021,15090).
	// The injector always lists the agent's health port and Envoy's stats
	// port.
	ExcludeInboundPorts []uint16
	// ExcludeOutboundPorts are destination ports of outbound connections
	// that leave untouched (--exclude-outbound-ports).
	ExcludeOutboundPorts []uint16
	// ExcludeInboundCIDRs are source ranges whose inbound connections
	// reach the pod untouched (--exclude-inbound-cidrs).
	ExcludeInboundCIDRs []netip.Prefix
	// ExcludeOutboundCIDRs are destination ranges that outbound
	// connections reach untouched (--exclude-outbound-cidrs).
	ExcludeOutboundCIDRs []netip.Prefix
}

// DefaultConfig is the Config of the flags' defaults: no exclusions.
func DefaultConfig() Config {
	return Config{ProxyUID: DefaultProxyUID, InboundPort: compiler.DefaultInboundPort, OutboundPort: compiler.DefaultOutboundPort}
}

// Validate reports a Config that would redirect nowhere or loop.
func (c Config) Validate() error {
	var errs []error
	if c.ProxyUID < 0 {
		errs = append(errs, fmt.Errorf("proxy uid %d: want 0 or more", c.ProxyUID))
	}
	if c.InboundPort == 0 || c.OutboundPort == 0 {
		errs = append(errs, fmt.Errorf("inbound port %d, outbound port %d: both must be set (1-65535)", c.InboundPort, c.OutboundPort))
	}
	if c.InboundPort == c.OutboundPort && c.InboundPort != 0 {
		errs = append(errs, fmt.Errorf("inbound and outbound port are both %d", c.InboundPort))
	}
	for _, p := range c.ExcludeInboundPorts {
		if p == 0 {
			errs = append(errs, errors.New("excluded inbound port 0"))
		}
	}
	for _, p := range c.ExcludeOutboundPorts {
		if p == 0 {
			errs = append(errs, errors.New("excluded outbound port 0"))
		}
	}
	for _, pr := range slices.Concat(c.ExcludeInboundCIDRs, c.ExcludeOutboundCIDRs) {
		if !pr.IsValid() || !pr.Addr().Is4() {
			errs = append(errs, fmt.Errorf("CIDR %s: only IPv4 ranges are redirected, so only they can be excluded", pr))
		}
	}
	return errors.Join(errs...)
}

// normalized is c with every list sorted, without duplicates, and every
// CIDR masked (10.1.2.3/8 is 10.0.0.0/8), so that equal configurations
// give equal rules and arguments.
func (c Config) normalized() Config {
	ports := func(in []uint16) []uint16 {
		out := slices.Clone(in)
		slices.Sort(out)
		return slices.Compact(out)
	}
	cidrs := func(in []netip.Prefix) []netip.Prefix {
		out := make([]netip.Prefix, 0, len(in))
		for _, p := range in {
			out = append(out, p.Masked())
		}
		slices.SortFunc(out, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		return slices.Compact(out)
	}
	c.ExcludeInboundPorts, c.ExcludeOutboundPorts = ports(c.ExcludeInboundPorts), ports(c.ExcludeOutboundPorts)
	c.ExcludeInboundCIDRs, c.ExcludeOutboundCIDRs = cidrs(c.ExcludeInboundCIDRs), cidrs(c.ExcludeOutboundCIDRs)
	return c
}

// Args are the `weft netinit` flags of c, in a fixed order, lists sorted
// and without duplicates; empty lists are left out.
func (c Config) Args() []string {
	c = c.normalized()
	args := []string{
		"--proxy-uid=" + strconv.FormatInt(c.ProxyUID, 10),
		"--inbound-port=" + strconv.Itoa(int(c.InboundPort)),
		"--outbound-port=" + strconv.Itoa(int(c.OutboundPort)),
	}
	if len(c.ExcludeInboundPorts) > 0 {
		args = append(args, "--exclude-inbound-ports="+(*portList)(&c.ExcludeInboundPorts).String())
	}
	if len(c.ExcludeOutboundPorts) > 0 {
		args = append(args, "--exclude-outbound-ports="+(*portList)(&c.ExcludeOutboundPorts).String())
	}
	if len(c.ExcludeInboundCIDRs) > 0 {
		args = append(args, "--exclude-inbound-cidrs="+(*cidrList)(&c.ExcludeInboundCIDRs).String())
	}
	if len(c.ExcludeOutboundCIDRs) > 0 {
		args = append(args, "--exclude-outbound-cidrs="+(*cidrList)(&c.ExcludeOutboundCIDRs).String())
	}
	return args
}

// BindFlags binds c's fields to fs, with c's current values as defaults.
// List flags take comma-separated values and may be repeated.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.Int64Var(&c.ProxyUID, "proxy-uid", c.ProxyUID, "uid of the proxy: its own connections are not redirected")
	fs.Uint16Var(&c.InboundPort, "inbound-port", c.InboundPort, "port of the proxy's inbound listener: inbound TCP goes there")
	fs.Uint16Var(&c.OutboundPort, "outbound-port", c.OutboundPort, "port of the proxy's outbound listener: outbound TCP goes there")
	fs.Var((*portList)(&c.ExcludeInboundPorts), "exclude-inbound-ports", "inbound destination ports left alone, e.g. 15021,15090")
	fs.Var((*portList)(&c.ExcludeOutboundPorts), "exclude-outbound-ports", "outbound destination ports left alone, e.g. 5432")
	fs.Var((*cidrList)(&c.ExcludeInboundCIDRs), "exclude-inbound-cidrs", "inbound source ranges left alone (IPv4 CIDRs)")
	fs.Var((*cidrList)(&c.ExcludeOutboundCIDRs), "exclude-outbound-cidrs", "outbound destination ranges left alone (IPv4 CIDRs), e.g. 169.254.169.254/32")
}

// ParsePorts parses a comma-separated list of ports ("15021, 8080"; empty
// is none). Errors name the bad item.
func ParsePorts(s string) ([]uint16, error) {
	var out []uint16
	for _, f := range splitList(s) {
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("%q is not a port (1-65535)", f)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

// ParseCIDRs parses a comma-separated list of IPv4 CIDRs ("10.0.0.0/8,
// 169.254.169.254"; a bare address is /32; empty is none). Errors name the
// bad item.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range splitList(s) {
		var p netip.Prefix
		var err error
		if strings.Contains(f, "/") {
			p, err = netip.ParsePrefix(f)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(f); err == nil {
				p = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%q is not an IPv4 CIDR (e.g. 10.0.0.0/8)", f)
		}
		if !p.Addr().Is4() {
			return nil, fmt.Errorf("%q is IPv6: only IPv4 traffic is redirected, so only IPv4 ranges can be excluded", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// portList and cidrList are pflag.Values of comma-separated lists.
type portList []uint16

func (l *portList) String() string {
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func (l *portList) Set(v string) error {
	ps, err := ParsePorts(v)
	if err != nil {
		return err
	}
	*l = append(*l, ps...)
	return nil
}

func (*portList) Type() string { return "ports" }

type cidrList []netip.Prefix

func (l *cidrList) String() string {
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *cidrList) Set(v string) error {
	ps, err := ParseCIDRs(v)
	if err != nil {
		return err
	}
	*l = append(*l, ps...)
	return nil
}

func (*cidrList) Type() string { return "cidrs" }

// Rule is one rule of the nat table: its chain and its specification as
// iptables-save prints it ("-p tcp -j REDIRECT --to-ports 15006").
type Rule struct {
	Chain string
	Spec  string
}

// String is the rule as an iptables-save line.
func (r Rule) String() string { return "-A " + r.Chain + " " + r.Spec }

// RuleSet is everything netinit puts in the nat table: its own chains
// (created, or emptied, and filled with Rules) and the jumps into them
// from the built-in chains (added once).
type RuleSet struct {
	Chains []string
	Jumps  []Rule
	Rules  []Rule
}

// Rules is the RuleSet of c (see the package documentation for its
// shape). It fails when c does not Validate.
func Rules(c Config) (RuleSet, error) {
	if err := c.Validate(); err != nil {
		return RuleSet{}, fmt.Errorf("netinit: %w", err)
	}
	c = c.normalized()
	in := func(spec string) Rule { return Rule{Chain: InboundChain, Spec: spec} }
	out := func(spec string) Rule { return Rule{Chain: OutboundChain, Spec: spec} }
	rs := RuleSet{
		Chains: []string{InboundChain, OutboundChain},
		Jumps: []Rule{
			{Chain: "PREROUTING", Spec: "-p tcp -j " + InboundChain},
			{Chain: "OUTPUT", Spec: "-p tcp -j " + OutboundChain},
		},
	}
	for _, p := range c.ExcludeInboundPorts {
		rs.Rules = append(rs.Rules, in(fmt.Sprintf("-p tcp -m tcp --dport %d -j RETURN", p)))
	}
	for _, p := range c.ExcludeInboundCIDRs {
		rs.Rules = append(rs.Rules, in(fmt.Sprintf("-s %s -j RETURN", p)))
	}
	rs.Rules = append(rs.Rules,
		in(fmt.Sprintf("-p tcp -j REDIRECT --to-ports %d", c.InboundPort)),
		out(fmt.Sprintf("-m owner --uid-owner %d -j RETURN", c.ProxyUID)),
		out("-o lo -j RETURN"),
		out("-d 127.0.0.1/32 -j RETURN"),
	)
	for _, p := range c.ExcludeOutboundPorts {
		rs.Rules = append(rs.Rules, out(fmt.Sprintf("-p tcp -m tcp --dport %d -j RETURN", p)))
	}
	for _, p := range c.ExcludeOutboundCIDRs {
		rs.Rules = append(rs.Rules, out(fmt.Sprintf("-d %s -j RETURN", p)))
	}
	rs.Rules = append(rs.Rules, out(fmt.Sprintf("-p tcp -j REDIRECT --to-ports %d", c.OutboundPort)))
	return rs, nil
}

// Lines are the RuleSet's rules as iptables-save lists them in a table
// that held nothing else: the jumps, then each chain's rules.
func (rs RuleSet) Lines() []string {
	var out []string
	for _, r := range rs.Jumps {
		out = append(out, r.String())
	}
	for _, r := range rs.Rules {
		out = append(out, r.String())
	}
	return out
}

// String is the iptables-restore input of the RuleSet for an empty table.
func (rs RuleSet) String() string { return rs.restore(nil) }

// restore is the iptables-restore --noflush input that puts rs into a
// nat table whose current iptables-save lines are present: the chain
// declarations (which create or empty netinit's chains), the jumps that
// are missing, and the chains' rules.
func (rs RuleSet) restore(present map[string]bool) string {
	var b strings.Builder
	b.WriteString("*" + Table + "\n")
	for _, c := range rs.Chains {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, r := range rs.Jumps {
		if !present[r.String()] {
			b.WriteString(r.String() + "\n")
		}
	}
	for _, r := range rs.Rules {
		b.WriteString(r.String() + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
