package agent

import "syscall"

// sysProcAttr: Envoy gets SIGTERM if the agent dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
