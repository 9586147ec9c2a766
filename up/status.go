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

// PrintStatus writes the status for humans: the served revision, the last
// failed attempt with its problems (file:line), and one line per proxy
// with its ACKed versions, NACK and certificate expiry.
func PrintStatus(w io.Writer, st *status.Status, now time.Time) {
	rev := st.Revision
	if rev == "" {
		rev = "(none yet)"
	}
	fmt.Fprintf(w, "revision: %s", rev)
	if !st.ServedSince.IsZero() {
		fmt.Fprintf(w, " (served since %s)", st.ServedSince.Format(time.RFC3339))
	}
	fmt.Fprintln(w)
	if a := st.LastAttempt; a != nil && a.Error != "" {
		fmt.Fprintf(w, "last attempt: %s FAILED at %s (%s):\n", a.Revision, a.Step, a.At.Format(time.RFC3339))
		if len(a.Problems) > 0 {
			for _, p := range a.Problems {
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
				fmt.Fprintf(w, "  %s%s\n", pos, p.Message)
			}
		} else {
			for _, l := range strings.Split(a.Error, "\n") {
				fmt.Fprintf(w, "  %s\n", l)
			}
		}
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
			where := ""
			if n.Resource != "" {
				where = " resource " + n.Resource
			}
			if pv := n.Provenance; pv != nil && pv.File != "" {
				where += fmt.Sprintf(" (%s:%d)", pv.File, pv.Line)
			}
			fmt.Fprintf(w, "%s NACK of %s %s%s: %s\n", p.NodeID, shortType(n.TypeURL), n.Version, where, n.Message)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
