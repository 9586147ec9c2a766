package meshctl

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
)

// Status prints the status of Mesh name in namespace, or of every Mesh
// of the namespace when name is "": `weft status` against a cluster.
func Status(ctx context.Context, c client.Reader, namespace, name string, now time.Time, w io.Writer) error {
	var ms []meshv1.Mesh
	if name != "" {
		m := meshv1.Mesh{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &m); err != nil {
			return fmt.Errorf("Mesh %s/%s: %w", namespace, name, err)
		}
		ms = append(ms, m)
	} else {
		var list meshv1.MeshList
		if err := c.List(ctx, &list, client.InNamespace(namespace)); err != nil {
			return fmt.Errorf("listing Meshes: %w", err)
		}
		if len(list.Items) == 0 {
			return fmt.Errorf("no Mesh objects found in %s namespace", namespace)
		}
		ms = list.Items
		sort.Slice(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	}
	for i := range ms {
		if i > 0 {
			fmt.Fprintln(w)
		}
		PrintStatus(w, &ms[i], now)
	}
	return nil
}

// PrintStatus prints one Mesh's status: its source, the conditions, the
// revisions, the proxies and their NACKs, and the last failure with each
// problem's file:line:column and fix.
func PrintStatus(w io.Writer, m *meshv1.Mesh, now time.Time) {
	s := m.Spec
	where := s.Path
	if where == "" {
		where = "."
	}
	fmt.Fprintf(w, "Mesh %s/%s: %s/%s/%s, path %s", m.Namespace, m.Name, s.SourceRef.Kind, m.SourceNamespace(), s.SourceRef.Name, where)
	if s.Environment != "" {
		fmt.Fprintf(w, ", environment %s", s.Environment)
	}
	if s.Suspend {
		fmt.Fprint(w, " (suspended)")
	}
	fmt.Fprintln(w)
	for _, t := range []string{meta.ReadyCondition, meta.ReconcilingCondition, meta.StalledCondition} {
		if c := apimeta.FindStatusCondition(m.Status.Conditions, t); c != nil {
			fmt.Fprintf(w, "  %-12s %s %s (%s ago): %s\n", t+":", c.Status, c.Reason, ago(now, c.LastTransitionTime.Time), c.Message)
		}
	}
	st := m.Status
	fmt.Fprintf(w, "  %-12s %s\n", "applied:", orNone(st.LastAppliedRevision))
	if st.SnapshotVersion != "" {
		fmt.Fprintf(w, "  %-12s %s\n", "snapshot:", st.SnapshotVersion)
	}
	if st.LastAttemptedRevision != "" && st.LastAttemptedRevision != st.LastAppliedRevision {
		fmt.Fprintf(w, "  %-12s %s\n", "attempted:", st.LastAttemptedRevision)
	}
	printProxies(w, st.Proxies)
	printFailure(w, st.Failure)
}

func printProxies(w io.Writer, p *meshv1.ProxiesStatus) {
	if p == nil {
		fmt.Fprintf(w, "  %-12s none connected\n", "proxies:")
		return
	}
	fmt.Fprintf(w, "  %-12s %d connected, %d in sync, %d NACKing\n", "proxies:", p.Total, p.InSync, p.NACKing)
	for _, n := range p.NACKs {
		at := ""
		if n.File != "" {
			at = fmt.Sprintf(" (%s:%d)", n.File, n.Line)
		}
		fmt.Fprintf(w, "    NACK %s (%s) of %s %s%s: %s\n", n.Proxy, n.Class, shortType(n.TypeURL), n.Resource, at, firstLine(n.Message))
	}
}

func printFailure(w io.Writer, f *meshv1.Failure) {
	if f == nil {
		return
	}
	fmt.Fprintf(w, "  %-12s revision %s failed at step %s\n", "last failure:", f.Revision, f.Step)
	for _, p := range f.Problems {
		pos := p.File
		if p.Line > 0 {
			pos += fmt.Sprintf(":%d", p.Line)
			if p.Column > 0 {
				pos += fmt.Sprintf(":%d", p.Column)
			}
		}
		text := p.Message
		if p.Path != "" && !strings.HasPrefix(text, p.Path) {
			text = p.Path + ": " + text
		}
		if pos != "" {
			text = pos + ": " + text
		}
		fmt.Fprintf(w, "    %s\n", text)
		if p.Fix != "" {
			fmt.Fprintf(w, "      fix: %s\n", p.Fix)
		}
	}
	if f.Truncated > 0 {
		fmt.Fprintf(w, "    ... and %d more\n", f.Truncated)
	}
}

func shortType(t string) string { return t[strings.LastIndex(t, ".")+1:] }

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// ago is a short duration since t ("3s", "5m", "2h").
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%dh", int(d.Hours()))
}
