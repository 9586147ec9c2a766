package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/meshgen"
	"github.com/weft-dev/weft/internal/tooltest"
	"github.com/weft-dev/weft/schema"
)

// cliMesh writes a generated mesh of n services (internal/meshgen: 10
// endpoints and 3 dependencies per service, two versions each) that
// passes weft vet (every service gets a timeout), with weft's schema in
// cue.mod/pkg as `weft init` puts it, so that the plain cue CLI evaluates
// it too. edit changes svc-00050's split, for the head of a diff.
func cliMesh(b *testing.B, n int, edit bool) string {
	b.Helper()
	dir := b.TempDir()
	if err := meshgen.Write(dir, meshgen.Spec{Services: n, Endpoints: 10, Calls: 3}); err != nil {
		b.Fatal(err)
	}
	src := strings.ReplaceAll(meshgen.Source(meshgen.Spec{Services: n, Endpoints: 10, Calls: 3}),
		"\t\t\tports: http: port: 8080\n", "\t\t\tports: http: port: 8080\n\t\t\ttimeout: \"3s\"\n")
	if edit {
		at := strings.Index(src, "\t\t\"svc-00050\": {")
		src = src[:at] + strings.Replace(src[at:], "to: {v1: 90, v2: 10}", "to: {v1: 50, v2: 50}", 1)
	}
	files := map[string][]byte{"mesh.cue": []byte(src), schema.SchemaFile: schema.Source()}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, body, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// BenchmarkCLI runs whole processes, as a user or CI does, on generated
// meshes of 1,000 and 2,000 services: `cue export` of the mesh (the plain
// CUE CLI evaluating the same definition: the floor), `weft vet`, `weft
// build` (resources and provenance of every class, no static bootstraps)
// and `weft diff` of two revisions that differ in one split; the build
// again into /dev/shm (tmpfs), where the machine has one, to tell the
// disk's latency from weft's own cost. time/op is
// the wall time of the process; peak-MB its peak resident memory (the
// largest of the runs, from the kernel's rusage); cpu-s/op its user and
// system CPU time (on a shared machine, the steadier figure).
func BenchmarkCLI(b *testing.B) {
	weftBin := weft(b)
	cue := tooltest.CUE(b)
	for _, n := range []int{1000, 2000} {
		var base, head string
		parent := b // the meshes outlive each sub-benchmark
		setup := func() {
			if base == "" {
				base, head = cliMesh(parent, n, false), cliMesh(parent, n, true)
			}
		}
		out := filepath.Join(b.TempDir(), "out")
		// The same build into memory (tmpfs), when the machine has one:
		// what the build costs without the disk's latency.
		shm := ""
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			if d, err := os.MkdirTemp("/dev/shm", "weft-bench-"); err == nil {
				shm = filepath.Join(d, "out")
				b.Cleanup(func() { os.RemoveAll(d) })
			}
		}
		type command struct {
			name string
			cmd  func() *exec.Cmd
			code int
		}
		commands := []command{
			{"cue-export", func() *exec.Cmd {
				cmd := exec.Command(cue, "export", "-e", "mesh", "--out", "json", ".")
				cmd.Dir = base
				return cmd
			}, 0},
			{"weft-vet", func() *exec.Cmd { return exec.Command(weftBin, "vet", base) }, 0},
			{"weft-build", func() *exec.Cmd {
				os.RemoveAll(out)
				return exec.Command(weftBin, "build", base, "-o", out, "--revision", "bench")
			}, 0},
			{"weft-diff", func() *exec.Cmd { return exec.Command(weftBin, "diff", base, head) }, 1},
		}
		if shm != "" {
			commands = append(commands, command{"weft-build-tmpfs", func() *exec.Cmd {
				os.RemoveAll(shm)
				return exec.Command(weftBin, "build", base, "-o", shm, "--revision", "bench")
			}, 0})
		}
		for _, c := range commands {
			b.Run(fmt.Sprintf("services=%d/%s", n, c.name), func(b *testing.B) {
				setup()
				var peak int64
				var cpu time.Duration
				for b.Loop() {
					cmd := c.cmd()
					var stderr strings.Builder
					cmd.Stdout, cmd.Stderr = nil, &stderr
					err := cmd.Run()
					if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != c.code {
						b.Fatalf("%s: %v (exit %d, want %d)\n%s", cmd, err, cmd.ProcessState.ExitCode(), c.code, stderr.String())
					}
					if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
						peak = max(peak, ru.Maxrss*1024) // kilobytes on Linux
					}
					cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
				}
				b.ReportMetric(float64(peak)/1e6, "peak-MB")
				b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
			})
		}
	}
}
