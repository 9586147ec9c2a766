//go:build unix

package source

import "syscall"

// openFlags: never block opening a FIFO, never follow a final symbolic
// link.
const openFlags = syscall.O_NONBLOCK | syscall.O_NOFOLLOW
