package tooltest

import (
	"strings"
	"sync"
)

// Output collects a child process's stdout and stderr (exec.Cmd writes
// them from its own goroutines) so that a failing test can print them.
type Output struct {
	mu sync.Mutex
	b  strings.Builder
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}
