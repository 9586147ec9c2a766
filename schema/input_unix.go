//go:build unix

package schema

import "syscall"

// openFlags: never block opening a FIFO, never follow a final symbolic
// link (the path was resolved and checked already).
const openFlags = syscall.O_NONBLOCK | syscall.O_NOFOLLOW
