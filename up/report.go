package up

import (
	"fmt"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
)

// reportRollbacks prints, as they happen, the revisions that a proxy
// rejected while they rolled out (the xDS server then served every proxy
// the last applied revision again): `weft up` printed "serving" when it
// published them. It follows the current xDS server across control-plane
// restarts, until the mesh stops.
func (m *Mesh) reportRollbacks() {
	select { // the control plane starts with the first revision that loads
	case <-m.started:
	case <-m.done:
		return
	case <-m.ctx.Done():
		return
	}
	reported := map[string]bool{}
	for {
		srv := m.Server()
		ch := srv.Changed()
		if a := srv.Status().LastAttempt; a != nil && a.Step == status.StepRollout {
			key := a.Revision + "@" + a.At.Format(time.RFC3339Nano)
			if !reported[key] {
				reported[key] = true
				fmt.Fprintf(m.opts.Out, "weft up: revision %s rejected while rolling out: %s\n", a.Revision, a.Error)
			}
		}
		select {
		case <-m.ctx.Done():
			return
		case <-m.done:
			return
		case <-ch:
		case <-time.After(time.Second): // a restarted server has a new channel
		}
	}
}
