// Command pause is the pod sandbox's process in the single-node test
// cluster's pause image (localhost/pause, containerd's sandbox_image): it
// holds the pod's namespaces open, reaps the children it inherits as PID 1
// of a shared process namespace, and exits 0 on SIGINT or SIGTERM. It is
// built statically (CGO_ENABLED=0) by internal/images.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sig {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		reap()
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
