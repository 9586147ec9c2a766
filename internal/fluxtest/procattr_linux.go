package fluxtest

import "syscall"

// childProcAttr makes the kernel kill the child if the test binary dies
// (a go test -timeout panic runs no t.Cleanup).
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
