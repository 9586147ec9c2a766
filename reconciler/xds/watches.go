package xds

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// watchCache is the snapshot cache as the xDS server sees it: a watch
// opened while its node has no snapshot (SotW), or while the node is held
// after a NACK (SotW and delta), is parked, and opened in the cache when
// the node's snapshot is next set (set), as if its request had arrived
// just then.
//
// Without this, a proxy that reconnects before the first Publish (a
// restarted control plane) is never answered: Envoy asks with the
// version it holds, the cache opens a watch, and when the same revision
// is published again with the same version, SetSnapshot answers only
// watches whose version differs. CreateWatch also answers a new
// subscription whose resources were not yet sent on the stream, so a
// proxy whose request arrives after the Publish is sent its resources
// and ACKs them; parking makes both orders behave the same. Delta needs
// no parking for that: CreateDeltaWatch and SetSnapshot decide alike.
//
// A held node rejected the snapshot the cache has for it: the SotW cache
// would answer its next request (which carries the version it kept) with
// that snapshot again, and a new stream of either kind would be sent it.
// Parking its watches is what "nothing new is sent" means.
type watchCache struct {
	cache.SnapshotCache
	s *Server
}

// parkedWatch is a SotW or delta watch waiting for its node's snapshot.
type parkedWatch struct {
	req    *cache.Request
	ch     chan cache.Response
	dreq   *cache.DeltaRequest
	dch    chan cache.DeltaResponse
	sub    cache.Subscription
	cancel func() // the cache's cancel once opened; nil while parked
	done   bool   // cancelled
}

func (c watchCache) CreateWatch(req *cache.Request, sub cache.Subscription, ch chan cache.Response) (func(), error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	id := cache.IDHash{}.ID(req.GetNode())
	if _, err := s.cache.GetSnapshot(id); err == nil && !s.isHeld(id) {
		return s.cache.CreateWatch(req, sub, ch)
	}
	return s.park(id, &parkedWatch{req: req, sub: sub, ch: ch}), nil
}

func (c watchCache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, ch chan cache.DeltaResponse) (func(), error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	id := cache.IDHash{}.ID(req.GetNode())
	if !s.isHeld(id) {
		return s.cache.CreateDeltaWatch(req, sub, ch)
	}
	return s.park(id, &parkedWatch{dreq: req, sub: sub, dch: ch}), nil
}

// isHeld: the node is held after a NACK; s.mu is held.
func (s *Server) isHeld(id string) bool {
	n := s.nodes[id]
	return n != nil && n.held
}

// park parks w and returns its cancel; s.mu is held.
func (s *Server) park(id string, w *parkedWatch) func() {
	s.parked[id] = append(s.parked[id], w)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.cancelParked(id, w)
	}
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
		var cancel func()
		var err error
		if w.dreq != nil {
			cancel, err = s.cache.CreateDeltaWatch(w.dreq, w.sub, w.dch)
		} else {
			cancel, err = s.cache.CreateWatch(w.req, w.sub, w.ch)
		}
		if err != nil {
			// The simple cache only fails when a response cannot be built.
			s.log.Error("opening a watch", "node", id, "error", err)
			continue
		}
		w.cancel = cancel
		if cancel == nil {
			w.cancel = func() {}
		}
	}
}
