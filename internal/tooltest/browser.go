package tooltest

import (
	"os/exec"
	"testing"
)

// Chromium returns the path of Debian's chromium (headless browser tests;
// .ci/run installs the package).
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found on PATH: apt-get install chromium (.ci/run installs it)")
	return ""
}
