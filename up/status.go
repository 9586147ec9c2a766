package up

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
)

// StatusAddr reads the status address `weft up` wrote into stateDir.
func StatusAddr(stateDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, StatusAddrFile))
	if err != nil {
		return "", fmt.Errorf("no running weft up in %s (%v); pass --addr", stateDir, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// FetchStatus gets GET http://addr/status.
func FetchStatus(ctx context.Context, addr string) (*status.Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /status: %s", resp.Status)
	}
	var st status.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("GET /status: %w", err)
	}
	return &st, nil
}

// shortType is the last part of an xDS type URL ("Listener").
func shortType(t string) string {
	if i := strings.LastIndex(t, "."); i >= 0 {
		return t[i+1:]
	}
	return t
}

// PrintStatus writes the status for humans: the served revision and
// whether it is still rolling out or applied (ACKed by every connected
// proxy), the last applied and the last attempted revision, the last
// failed attempt with its problems (file:line) — a revision a proxy
// rejected names the proxy, the resource and Envoy's reason —, one line
// per proxy with its ACKed versions, NACK and certificate expiry, and the
// xDS streams refused for claiming a node their certificate does not own.
func PrintStatus(w io.Writer, st *status.Status, now time.Time) {
	printRevisions(w, st)
	if a := st.LastAttempt; a != nil && a.Error != "" {
		printFailedAttempt(w, a)
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPROXY\tCLASS\tCONNECTED\tIN SYNC\tACKED\tCERT EXPIRES")
	for _, p := range st.Proxies {
		exp := "-"
		if !p.CertExpiry.IsZero() {
			exp = fmt.Sprintf("%s (in %s)", p.CertExpiry.Format(time.RFC3339), p.CertExpiry.Sub(now).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%s\t%s\n", p.NodeID, p.Class, p.Connected, p.InSync, orDash(p.AckedVersion), exp)
	}
	tw.Flush()
	for _, p := range st.Proxies {
		printProxyDetails(w, p)
	}
	if len(st.RefusedStreams) > 0 {
		fmt.Fprintln(w, "\nrefused xDS streams (the client certificate does not own the node or class claimed):")
		for _, r := range st.RefusedStreams {
			who := r.Identity
			if who == "" {
				who = "(no verified identity)"
			}
			times := ""
			if r.Count > 1 {
				times = fmt.Sprintf(" (%d times since %s)", r.Count, r.First.Format(time.RFC3339))
			}
			fmt.Fprintf(w, "  %s %s from %s claimed node %q class %q: %s%s\n", r.At.Format(time.RFC3339), who, orDash(r.Address), r.NodeID, r.Class, r.Reason, times)
		}
	}
}

// printRevisions writes the served, applied and attempted revisions.
func printRevisions(w io.Writer, st *status.Status) {
	rev := st.Revision
	if rev == "" {
		rev = "(none yet)"
	}
	fmt.Fprintf(w, "revision: %s", rev)
	switch {
	case st.Rollout != nil && st.Rollout.Revision == st.Revision:
		r := st.Rollout
		fmt.Fprintf(w, " (rolling out since %s: %d connected proxies have not ACKed it yet", r.Since.Format(time.RFC3339), r.WaitingCount)
		if len(r.Waiting) > 0 {
			fmt.Fprintf(w, ": %s", strings.Join(r.Waiting, ", "))
			if r.WaitingCount > len(r.Waiting) {
				fmt.Fprintf(w, ", ...")
			}
		}
		fmt.Fprint(w, ")")
	case st.Revision != "" && st.Revision == st.LastAppliedRevision:
		fmt.Fprintf(w, " (applied: ACKed by every connected proxy; served since %s)", st.ServedSince.Format(time.RFC3339))
	case !st.ServedSince.IsZero():
		fmt.Fprintf(w, " (served since %s)", st.ServedSince.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	if st.LastAppliedRevision != "" && st.LastAppliedRevision != st.Revision {
		fmt.Fprintf(w, "last applied: %s (%s)\n", st.LastAppliedRevision, st.LastAppliedAt.Format(time.RFC3339))
	}
	if st.LastAttemptedRevision != "" && st.LastAttemptedRevision != st.Revision {
		fmt.Fprintf(w, "last attempted: %s\n", st.LastAttemptedRevision)
	}
}

// printFailedAttempt writes a failed attempt with its problems.
func printFailedAttempt(w io.Writer, a *status.Attempt) {
	fmt.Fprintf(w, "last attempt: %s FAILED at %s (%s)", a.Revision, a.Step, a.At.Format(time.RFC3339))
	switch {
	case a.RolledBackTo != "":
		fmt.Fprintf(w, ", every proxy rolled back to %s", a.RolledBackTo)
	case a.Step == status.StepRollout:
		fmt.Fprint(w, ", no earlier revision to roll back to")
	}
	fmt.Fprintln(w, ":")
	if len(a.Problems) > 0 {
		for _, p := range a.Problems {
			fmt.Fprintf(w, "  %s%s\n", position(p), p.Message)
		}
	} else {
		for _, l := range strings.Split(a.Error, "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if n := a.NACK; n != nil && len(a.Problems) == 0 {
		fmt.Fprintf(w, "  proxy %s rejected %s %s%s\n", n.NodeID, shortType(n.TypeURL), n.Version, nackWhere(n))
		fmt.Fprintf(w, "  reason: %s\n", n.Reason)
	}
}

// position is "file:line:column: " of a problem ("" when unknown).
func position(p status.Problem) string {
	pos := p.File
	if p.Line > 0 {
		pos = fmt.Sprintf("%s:%d", p.File, p.Line)
		if p.Column > 0 {
			pos += fmt.Sprintf(":%d", p.Column)
		}
	}
	if pos != "" {
		pos += ": "
	}
	return pos
}

// nackWhere is " resource R (file:line)" of a NACK, as far as known.
func nackWhere(n *status.NACK) string {
	where := ""
	if n.Resource != "" {
		where = " resource " + n.Resource
	}
	if pv := n.Provenance; pv != nil && pv.File != "" {
		where += fmt.Sprintf(" (%s:%d)", pv.File, pv.Line)
	}
	return where
}

// printProxyDetails writes what is wrong with a proxy, if anything.
func printProxyDetails(w io.Writer, p status.Proxy) {
	types := make([]string, 0, len(p.Acked))
	for t := range p.Acked {
		types = append(types, t)
	}
	sort.Strings(types)
	var parts []string
	for _, t := range types {
		parts = append(parts, shortType(t)+"="+p.Acked[t])
	}
	if len(parts) > 0 && !p.InSync {
		fmt.Fprintf(w, "%s acked per type: %s\n", p.NodeID, strings.Join(parts, " "))
	}
	if p.Error != "" {
		fmt.Fprintf(w, "%s error: %s\n", p.NodeID, p.Error)
	}
	if n := p.LastNACK; n != nil {
		msg := n.Reason
		if msg == "" {
			msg = n.Message
		}
		fmt.Fprintf(w, "%s NACK of %s %s%s: %s\n", p.NodeID, shortType(n.TypeURL), n.Version, nackWhere(n), msg)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
