package meshctl

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/fluxcd/pkg/apis/meta"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "github.com/weft-dev/weft/reconciler/api/mesh/v1alpha1"
)

// GetMeshes prints the Meshes of namespace (every namespace when all is
// set) as `flux get kustomizations` prints Kustomizations: NAME,
// REVISION (the last applied), SUSPENDED, READY, MESSAGE (the Ready
// condition's), sorted by namespace and name.
func GetMeshes(ctx context.Context, c client.Reader, namespace string, all bool, w io.Writer) error {
	var list meshv1.MeshList
	var opts []client.ListOption
	if !all {
		opts = append(opts, client.InNamespace(namespace))
	}
	if err := c.List(ctx, &list, opts...); err != nil {
		return fmt.Errorf("listing Meshes: %w", err)
	}
	if len(list.Items) == 0 {
		where := "in " + namespace + " namespace"
		if all {
			where = "in any namespace"
		}
		_, err := fmt.Fprintf(w, "no Mesh objects found %s\n", where)
		return err
	}
	sort.Slice(list.Items, func(i, j int) bool {
		a, b := list.Items[i], list.Items[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "NAME\tREVISION\tSUSPENDED\tREADY\tMESSAGE"
	if all {
		header = "NAMESPACE\t" + header
	}
	fmt.Fprintln(tw, header)
	for _, m := range list.Items {
		ready, msg := readyOf(&m)
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s", m.Name, ShortRevision(m.Status.LastAppliedRevision),
			title(m.Spec.Suspend), ready, oneLine(msg))
		if all {
			row = m.Namespace + "\t" + row
		}
		fmt.Fprintln(tw, row)
	}
	return tw.Flush()
}

// readyOf is the Ready condition's status and message ("Unknown" and
// "waiting to be reconciled" before the first).
func readyOf(m *meshv1.Mesh) (string, string) {
	c := apimeta.FindStatusCondition(m.Status.Conditions, meta.ReadyCondition)
	if c == nil {
		return "Unknown", "waiting to be reconciled"
	}
	return string(c.Status), c.Message
}

func title(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// oneLine keeps a message on one line of the table.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

var shaRev = regexp.MustCompile(`(@?sha(?:1|256):)([0-9a-f]{8})[0-9a-f]+`)

// ShortRevision shortens the hash of a revision to 8 hex digits, as the
// flux CLI prints it: "main@sha1:0123456789ab..." -> "main@sha1:01234567".
func ShortRevision(rev string) string { return shaRev.ReplaceAllString(rev, "$1$2") }
