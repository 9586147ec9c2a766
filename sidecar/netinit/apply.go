package netinit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
)

// Backend is an iptables backend.
type Backend string

// The backends; Auto means Detect.
const (
	Auto   Backend = "auto"
	NFT    Backend = "nft"
	Legacy Backend = "legacy"
)

// ParseBackend parses "auto", "nft" or "legacy" ("" is auto).
func ParseBackend(s string) (Backend, error) {
	switch b := Backend(s); b {
	case "", Auto:
		return Auto, nil
	case NFT, Legacy:
		return b, nil
	}
	return "", fmt.Errorf("iptables backend %q: want auto, nft or legacy", s)
}

// Runner runs a program with stdin and returns its stdout; an error
// carries its stderr. Tests wrap it (e.g. to enter a network namespace).
type Runner func(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error)

// Exec is the Runner of the host: os/exec.
func Exec(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

// Options of Apply and Detect. The zero value detects the backend and runs
// the host's binaries found on PATH.
type Options struct {
	Backend Backend
	// Run runs the iptables binaries (default Exec).
	Run Runner
	// LookPath finds a binary (default exec.LookPath).
	LookPath func(string) (string, error)
	// Log receives what was decided and done (default: discard).
	Log *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Backend == "" {
		o.Backend = Auto
	}
	if o.Run == nil {
		o.Run = Exec
	}
	if o.LookPath == nil {
		o.LookPath = exec.LookPath
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// tool is how to run iptables-save or iptables-restore of a backend.
type tool struct {
	path string
	args []string // before the caller's
}

// toolOf finds name ("iptables-save" or "iptables-restore") of backend b:
// iptables-<b>-save (Debian's name), else xtables-<b>-multi iptables-save.
func toolOf(o Options, b Backend, name string) (tool, error) {
	dashed := strings.Replace(name, "iptables-", "iptables-"+string(b)+"-", 1)
	if p, err := o.LookPath(dashed); err == nil {
		return tool{path: p}, nil
	}
	multi := "xtables-" + string(b) + "-multi"
	if p, err := o.LookPath(multi); err == nil {
		return tool{path: p, args: []string{name}}, nil
	}
	return tool{}, fmt.Errorf("no %s or %s on PATH (the image needs iptables with the %s backend)", dashed, multi, b)
}

func (t tool) run(ctx context.Context, o Options, stdin []byte, args ...string) ([]byte, error) {
	return o.Run(ctx, stdin, t.path, append(append([]string(nil), t.args...), args...)...)
}

// Detect picks the backend for this network namespace: the one whose
// tables hold more rules; with none in either, nft if its iptables-save
// works, else legacy. It fails when neither works.
func Detect(ctx context.Context, o Options) (Backend, error) {
	o = o.withDefaults()
	count := map[Backend]int{}
	var errs []error
	for _, b := range []Backend{NFT, Legacy} {
		t, err := toolOf(o, b, "iptables-save")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out, err := t.run(ctx, o, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n := 0
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "-A ") {
				n++
			}
		}
		count[b] = n
	}
	nft, nftOK := count[NFT]
	legacy, legacyOK := count[Legacy]
	var b Backend
	switch {
	case !nftOK && !legacyOK:
		return "", fmt.Errorf("netinit: no working iptables backend: %w", errors.Join(errs...))
	case !legacyOK, nftOK && nft >= legacy:
		b = NFT
	default:
		b = Legacy
	}
	o.Log.Info("netinit: iptables backend detected", "backend", b, "nftRules", nft, "legacyRules", legacy, "nftWorks", nftOK, "legacyWorks", legacyOK)
	return b, nil
}

// Result is what Apply did.
type Result struct {
	Backend Backend
	// Unchanged: the rules were already in place (a restarted init
	// container); nothing was written.
	Unchanged bool
	// Table is the nat table as iptables-save printed it afterwards.
	Table string
}

// Apply puts rs into the nat table of the current network namespace (see
// the package documentation) and checks it with iptables-save: every
// jump present and each of netinit's chains holding exactly rs's rules,
// in order. The error names the backend, the command and iptables' own
// message, or the rules that are missing.
func Apply(ctx context.Context, rs RuleSet, o Options) (Result, error) {
	o = o.withDefaults()
	b := o.Backend
	if b == Auto {
		var err error
		if b, err = Detect(ctx, o); err != nil {
			return Result{}, err
		}
	}
	res := Result{Backend: b}
	save, err := toolOf(o, b, "iptables-save")
	if err != nil {
		return res, fmt.Errorf("netinit: %w", err)
	}
	restore, err := toolOf(o, b, "iptables-restore")
	if err != nil {
		return res, fmt.Errorf("netinit: %w", err)
	}
	before, err := save.run(ctx, o, nil, "-t", Table)
	if err != nil {
		return res, fmt.Errorf("netinit: reading the %s table (%s): %w", Table, b, err)
	}
	if Check(rs, string(before)) == nil {
		o.Log.Info("netinit: rules already in place", "backend", b)
		res.Unchanged, res.Table = true, string(before)
		return res, nil
	}
	input := rs.restore(lines(string(before)))
	if _, err := restore.run(ctx, o, []byte(input), "--noflush"); err != nil {
		return res, fmt.Errorf("netinit: iptables-restore (%s) refused the rules: %w\n--- input:\n%s", b, err, input)
	}
	after, err := save.run(ctx, o, nil, "-t", Table)
	if err != nil {
		return res, fmt.Errorf("netinit: reading the %s table back (%s): %w", Table, b, err)
	}
	res.Table = string(after)
	if err := Check(rs, res.Table); err != nil {
		return res, fmt.Errorf("netinit: after iptables-restore (%s): %w", b, err)
	}
	o.Log.Info("netinit: rules applied", "backend", b, "rules", len(rs.Rules)+len(rs.Jumps))
	return res, nil
}

// lines is the set of "-A ..." lines of iptables-save output.
func lines(save string) map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(save, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "-A ") {
			out[l] = true
		}
	}
	return out
}

// Check reports whether the iptables-save output save (of the nat table)
// holds rs: every jump, and in each of rs's chains exactly rs's rules in
// order. The error lists what differs.
func Check(rs RuleSet, save string) error {
	have := lines(save)
	var problems []string
	for _, j := range rs.Jumps {
		if !have[j.String()] {
			problems = append(problems, "missing jump: "+j.String())
		}
	}
	for _, c := range rs.Chains {
		var want, got []string
		for _, r := range rs.Rules {
			if r.Chain == c {
				want = append(want, r.String())
			}
		}
		for _, l := range strings.Split(save, "\n") {
			if l = strings.TrimSpace(l); strings.HasPrefix(l, "-A "+c+" ") {
				got = append(got, l)
			}
		}
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			problems = append(problems, fmt.Sprintf("chain %s holds\n  %s\nwant\n  %s", c, strings.Join(got, "\n  "), strings.Join(want, "\n  ")))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}
