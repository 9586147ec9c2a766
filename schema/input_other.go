//go:build !unix

package schema

// openFlags: the platform has no O_NONBLOCK/O_NOFOLLOW; the Stat before
// the open refuses FIFOs and devices.
const openFlags = 0
