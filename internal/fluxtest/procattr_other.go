//go:build !linux

package fluxtest

import "syscall"

func childProcAttr() *syscall.SysProcAttr { return nil }
