package xds

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// watchCache is the snapshot cache as the xDS server sees it: a SotW
// watch opened while the node has no snapshot is parked, and opened in
// the cache when the node's snapshot is set (set), as if its request had
// arrived just then.
//
// Without this, a proxy that reconnects before the first Publish (a
// restarted control plane) is never answered: Envoy asks with the
// version it holds, the cache opens a watch, and when the same revision
// is published again with the same version, SetSnapshot answers only
// watches whose version differs. CreateWatch also answers a new
// subscription whose resources were not yet sent on the stream, so a
// proxy whose request arrives after the Publish is sent its resources
// and ACKs them; parking makes both orders behave the same. Delta needs
// no parking: CreateDeltaWatch and SetSnapshot decide alike.
type watchCache struct {
	cache.SnapshotCache
	s *Server
}

// parkedWatch is a SotW watch waiting for its node's first snapshot.
type parkedWatch struct {
	req    *cache.Request
	sub    cache.Subscription
	ch     chan cache.Response
	cancel func() // the cache's cancel once opened; nil while parked
	done   bool   // cancelled
}

func (c watchCache) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	id := cache.IDHash{}.ID(req.GetNode())
	if _, err := s.cache.GetSnapshot(id); err == nil {
		return s.cache.CreateWatch(req, sub, ch)
	}
	w := &parkedWatch{req: req, sub: sub, ch: ch}
	s.parked[id] = append(s.parked[id], w)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.cancelParked(id, w)
	}, nil
}

// cancelParked cancels w; s.mu is held.
func (s *Server) cancelParked(id string, w *parkedWatch) {
	if w.done {
		return
	}
	w.done = true
	if w.cancel != nil {
		w.cancel()
		return
	}
	ws := s.parked[id]
	for i := range ws {
		if ws[i] == w {
			ws = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.parked, id)
	} else {
		s.parked[id] = ws
	}
}

// openParked opens the node's parked watches in the cache, which now has
// its snapshot; s.mu is held.
func (s *Server) openParked(id string) {
	ws := s.parked[id]
	delete(s.parked, id)
	for _, w := range ws {
		cancel, err := s.cache.CreateWatch(w.req, w.sub, w.ch)
		if err != nil {
			// The simple cache only fails when a response cannot be built.
			s.log.Error("opening a watch", "node", id, "type", w.req.GetTypeUrl(), "error", err)
			continue
		}
		w.cancel = cancel
	}
}
