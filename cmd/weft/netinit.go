package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-dev/weft/sidecar/netinit"
)

func newNetinitCmd() *cobra.Command {
	cfg := netinit.DefaultConfig()
	var (
		backend string
		dryRun  bool
	)
	cmd := &cobra.Command{
		Use:   "netinit",
		Short: "Redirect the pod's TCP traffic to its sidecar proxy (iptables; the injected init container runs it)",
		Long: `netinit writes the iptables rules of a meshed pod into the nat table of the
network namespace it runs in: inbound TCP goes to the proxy's inbound listener
(15006), outbound TCP to its outbound listener (15001), except the proxy's own
connections (--proxy-uid), loopback, and the excluded ports and ranges. It
needs root with NET_ADMIN and NET_RAW, which only the injected init container
has; it exits when the rules are in place and verified with iptables-save.

The iptables backend (nf_tables or legacy) is detected unless --iptables says.
Running it again changes nothing. --dry-run prints the iptables-restore input
and changes nothing. The rules: docs/kubernetes.md; what they can and cannot
do: docs/security.md.`,
		Example: `  weft netinit --exclude-inbound-ports=15021,15090 --exclude-outbound-cidrs=169.254.169.254/32
  weft netinit --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := netinit.ParseBackend(backend)
			if err != nil {
				return fmt.Errorf("netinit: %w", err)
			}
			rs, err := netinit.Rules(cfg)
			if err != nil {
				return err
			}
			if dryRun {
				_, err := fmt.Fprint(cmd.OutOrStdout(), rs.String())
				return err
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			res, err := netinit.Apply(ctx, rs, netinit.Options{Backend: b, Log: log})
			if err != nil {
				return err
			}
			state := "applied"
			if res.Unchanged {
				state = "already in place"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "weft netinit: %d rules %s (iptables %s):\n", len(rs.Lines()), state, res.Backend)
			for _, l := range rs.Lines() {
				fmt.Fprintln(cmd.OutOrStdout(), "  "+l)
			}
			return nil
		},
	}
	f := cmd.Flags()
	cfg.BindFlags(f)
	f.StringVar(&backend, "iptables", "auto", "iptables backend: auto (detect), nft or legacy")
	f.BoolVar(&dryRun, "dry-run", false, "print the iptables-restore input and change nothing")
	return cmd
}
