package tooltest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Envoy returns the path of the envoy binary.
func Envoy(t testing.TB) string { return find(t, "envoy") }

// CUE returns the path of the cue CLI.
func CUE(t testing.TB) string { return find(t, "cue") }

// OPA returns the path of the opa CLI.
func OPA(t testing.TB) string { return find(t, "opa") }

// RepoRoot is the weft repository's root directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir is where `make tools` puts the tools.
func BinDir() string {
	if d := os.Getenv("WEFT_TOOLS_BIN"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), ".tools", "bin")
}

func find(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(BinDir(), name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("%s not found in %s or PATH: run `make tools`", name, BinDir())
	return ""
}

// FreePorts returns n TCP ports on 127.0.0.1 that were free a moment ago,
// for a child process (Envoy) that must be told its ports up front. All n
// are held open together, so they are distinct.
func FreePorts(t testing.TB, n int) []uint32 {
	t.Helper()
	out := make([]uint32, 0, n)
	lns := make([]net.Listener, 0, n)
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, uint32(ln.Addr().(*net.TCPAddr).Port))
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}
