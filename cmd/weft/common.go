package main

import (
	"os/exec"
	"strings"
)

// gitRevision is the commit checked out in dir ("-dirty" when the work
// tree has changes), or "local" outside a git repository.
func gitRevision(dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "local"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--", ".").Output(); err == nil && len(st) > 0 {
		rev += "-dirty"
	}
	return rev
}
