package up_test

import (
	"bytes"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/up"
)

// The README's first command, `weft up environments/dev`: every instance
// of the example shop comes up, ACKs, and a request to the edge service
// reaches its dependencies through the mesh.
func TestSmokeDevEnvironment(t *testing.T) {
	tm := startMesh(t, filepath.Join(tooltest.RepoRoot(), "environments", "dev"), nil)
	ins := tm.Instances()
	if len(ins) < 8 {
		t.Fatalf("%d instances, want every replica of the shop", len(ins))
	}
	if !strings.Contains(tm.out.String(), "send traffic to frontend: http://") {
		t.Errorf("weft up did not say where to send traffic:\n%s", tm.out)
	}
	fe := tm.instance("frontend-v1")
	c := &http.Client{Timeout: 10 * time.Second}
	code, a, _, err := get(c, "http://"+fe.Addr(8080)+"/?call=reviews&call=catalog&call=orders/orders/1", nil)
	if err != nil || code != 200 || a == nil {
		t.Fatalf("edge request: %d %v", code, err)
	}
	for _, call := range a.Calls {
		if call.Status != 200 || call.Answer == nil {
			t.Errorf("frontend -> %s: %d %s", call.URL, call.Status, call.Error)
		} else {
			t.Logf("frontend -> %s: %s %s (%s)", call.URL, call.Answer.Service, call.Answer.Version, call.Answer.Instance)
		}
	}
	// Agents report their certificates' expiry within a few hundred ms.
	var st *status.Status
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		if st, err = up.FetchStatus(t.Context(), tm.StatusAddr()); err != nil {
			t.Fatal(err)
		}
		all := true
		for _, p := range st.Proxies {
			all = all && !p.CertExpiry.IsZero()
		}
		if all || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var out bytes.Buffer
	up.PrintStatus(&out, st, time.Now())
	t.Logf("weft status:\n%s", out.String())
	for _, p := range st.Proxies {
		if !p.InSync || p.CertExpiry.IsZero() {
			t.Errorf("%s: in sync %v, cert expiry %v", p.NodeID, p.InSync, p.CertExpiry)
		}
	}
}
