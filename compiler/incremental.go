package compiler

import (
	"sync"

	"github.com/weft-dev/weft/schema/mesh"
)

// Incremental compiles revision after revision, each one from the result
// of the one before (CompileFrom): a long-running control plane (weft up,
// the controller) keeps one and calls Compile for every new revision, and
// a change to one service recompiles that service and the services that
// depend on it. The result is always exactly Compile's. It is safe for
// concurrent use; the zero value is ready.
type Incremental struct {
	mu   sync.Mutex
	last *Result
}

// Compile compiles m, reusing the classes of the previous successful
// compilation whose inputs did not change, and remembers the result for
// the next call. A failed compilation leaves the previous result in
// place.
func (c *Incremental) Compile(m *mesh.Model, eps Endpoints, opts Options) (*Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	res, err := CompileFrom(c.last, m, eps, opts)
	if err != nil {
		return nil, err
	}
	c.last = res
	return res, nil
}

// Reset forgets the previous result: the next Compile compiles every
// class.
func (c *Incremental) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = nil
}
