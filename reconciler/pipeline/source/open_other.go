//go:build !unix

package source

// openFlags: the platform has no O_NONBLOCK/O_NOFOLLOW; the Lstat before
// the open skips FIFOs, devices and links.
const openFlags = 0
