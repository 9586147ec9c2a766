// Package netinit is `weft netinit`: the iptables rules that send a pod's
// TCP traffic through its sidecar proxy, run once by the injected init
// container (root, capabilities NET_ADMIN and NET_RAW only) in the pod's
// network namespace before any other container starts.
//
// # The rules
//
// Rules builds them as data (a RuleSet: the nat table's chains and rules,
// in the canonical form `iptables-save` prints them), so they are tested
// without a kernel and shown by `weft netinit --dry-run`:
//
//	*nat
//	:WEFT_INBOUND - [0:0]
//	:WEFT_OUTBOUND - [0:0]
//	-A PREROUTING -p tcp -j WEFT_INBOUND
//	-A OUTPUT -p tcp -j WEFT_OUTBOUND
//	-A WEFT_INBOUND -p tcp -m tcp --dport 15021 -j RETURN       excluded inbound ports: the agent's health port,
//	-A WEFT_INBOUND -p tcp -m tcp --dport 15090 -j RETURN       Envoy's stats port, then Config.ExcludeInboundPorts
//	-A WEFT_INBOUND -s 10.0.0.0/8 -j RETURN                     Config.ExcludeInboundCIDRs (sources)
//	-A WEFT_INBOUND -p tcp -j REDIRECT --to-ports 15006         everything else: the inbound listener
//	-A WEFT_OUTBOUND -m owner --uid-owner 1337 -j RETURN        the proxy's own traffic
//	-A WEFT_OUTBOUND -o lo -j RETURN                            loopback (the app's own pod IP too)
//	-A WEFT_OUTBOUND -d 127.0.0.1/32 -j RETURN
//	-A WEFT_OUTBOUND -p tcp -m tcp --dport 5432 -j RETURN       Config.ExcludeOutboundPorts
//	-A WEFT_OUTBOUND -d 169.254.169.254/32 -j RETURN            Config.ExcludeOutboundCIDRs (destinations)
//	-A WEFT_OUTBOUND -p tcp -j REDIRECT --to-ports 15001        everything else: the outbound listener
//	COMMIT
//
// Only IPv4 TCP is redirected: UDP (DNS) and IPv6 pass untouched (see
// docs/security.md).
//
// # Applying them
//
// Apply writes the RuleSet with iptables-restore --noflush, so rules that
// others put in the namespace stay; declaring the WEFT_ chains empties
// them, and the two jumps are added only when missing, so running it
// again (a restarted init container) gives the same table. It then reads
// the table back with iptables-save and fails unless every rule is there
// in order.
//
// The backend is detected (Detect), as Kubernetes' own iptables wrappers
// do: iptables 1.8 has two, nf_tables ("nft") and the legacy xtables, and
// rules written with one are invisible to the other; mixing them makes both
// sets apply in an order nobody chose. The backend that already holds more
// rules in the namespace wins; when neither holds any, nft if it works
// (the kernel has nf_tables), else legacy. The binaries are
// iptables-nft-restore/-save and iptables-legacy-restore/-save (Debian's
// names), else xtables-nft-multi/xtables-legacy-multi with the tool name
// as their first argument.
//
// # Imports
//
// Nothing of weft but compiler (the listener and agent ports); the standard
// library and pflag (Config.BindFlags, the flags shared by the injector
// and the command).
package netinit
