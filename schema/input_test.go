package schema_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/weft-dev/weft/schema"
)

const embedEnv = `@extern(embed)
package shop
mesh: services: frontend: local: env: HOST: _ @embed(file=host.txt,type=text)
`

// TestLoadBoundedInput: the loader reads only regular files inside the
// module, within the limits; every refusal names the file (or the @embed
// that asked for it) and the rule, and nothing is evaluated.
func TestLoadBoundedInput(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(outside, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	outsideCUE := filepath.Join(t.TempDir(), "x.cue")
	if err := os.WriteFile(outsideCUE, []byte("package shop\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := "package shop\n// " + strings.Repeat("x", 3000) + "\n"
	cases := []struct {
		name   string
		files  []txtar.File
		setup  func(t *testing.T, dir string)
		env    string
		limits schema.Limits
		want   []string
	}{{
		name:  "symlink to /dev/zero",
		setup: func(t *testing.T, dir string) { symlink(t, "/dev/zero", filepath.Join(dir, "zero.cue")) },
		want:  []string{"zero.cue: is a symbolic link to /dev/zero, outside the CUE module", "fix: copy the file into the repository"},
	}, {
		name: "FIFO",
		setup: func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, "dev", "pipe.cue"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
		files: []txtar.File{{Name: "dev/dev.cue", Data: []byte("package shop\n")}},
		env:   "dev",
		want:  []string{filepath.Join("dev", "pipe.cue") + ": is a named pipe (FIFO), not a regular file"},
	}, {
		name:  "symlink out of the module",
		setup: func(t *testing.T, dir string) { symlink(t, outsideCUE, filepath.Join(dir, "linked.cue")) },
		want:  []string{"linked.cue: is a symbolic link to " + outsideCUE + ", outside the CUE module"},
	}, {
		name:  "@embed of a file outside the module",
		files: []txtar.File{{Name: "dev/bad.cue", Data: []byte(embedEnv)}},
		setup: func(t *testing.T, dir string) { symlink(t, outside, filepath.Join(dir, "dev", "host.txt")) },
		env:   "dev",
		want:  []string{filepath.Join("dev", "bad.cue") + ":3:47: @embed of dev/host.txt: the file is a symbolic link to " + outside + ", outside the CUE module"},
	}, {
		name:   "file over the limit",
		files:  []txtar.File{{Name: "big.cue", Data: []byte(big)}},
		limits: schema.Limits{MaxFileBytes: 2000},
		want:   []string{"big.cue: is 2.95 KiB, over the limit of 1.95 KiB per file", "--max-file-size"},
	}, {
		name: "total over the limit",
		files: []txtar.File{
			{Name: "a.cue", Data: []byte(big)},
			{Name: "b.cue", Data: []byte(big)},
		},
		limits: schema.Limits{MaxTotalBytes: 5000},
		want:   []string{"b.cue: brings what the loader read to", "over the limit of 4.88 KiB for the whole source", "--max-source-size"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := newRepo(t, c.files)
			if err := os.MkdirAll(filepath.Join(dir, "dev"), 0o755); err != nil {
				t.Fatal(err)
			}
			if c.setup != nil {
				c.setup(t, dir)
			}
			_, err := schema.Load(dir, schema.Options{Env: c.env, Limits: c.limits})
			if err == nil || !schema.IsErrors(err) {
				t.Fatalf("Load = %v, want definition errors", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the outside file's content leaked into the error: %v", err)
			}
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestLoadFollowsLinksInside: a symbolic link to a file inside the
// module is read; an @embed of a regular file in the module works.
func TestLoadFollowsLinksInside(t *testing.T) {
	dir := newRepo(t, []txtar.File{
		{Name: "shared/extra.cue.txt", Data: []byte("package shop\nmesh: services: frontend: local: env: TEAM: \"web\"\n")},
		{Name: "dev/bad.cue", Data: []byte(embedEnv)},
		{Name: "dev/host.txt", Data: []byte("host-1")},
	})
	symlink(t, filepath.Join("..", "shared", "extra.cue.txt"), filepath.Join(dir, "dev", "extra.cue"))
	m, err := schema.Load(dir, schema.Options{Env: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	fe := m.Services["frontend"]
	if fe.Local == nil || fe.Local.Env["TEAM"] != "web" || fe.Local.Env["HOST"] != "host-1" {
		t.Errorf("frontend local %+v: want TEAM from the linked file and HOST embedded", fe.Local)
	}
}

// TestLoadContextCancelled: a load whose context has ended reads nothing
// and says so.
func TestLoadContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := schema.LoadContext(ctx, newRepo(t, nil), schema.Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("LoadContext = %v, want context.Canceled", err)
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 4 << 20: "4 MiB", 16<<20 + 1: "16 MiB", 16<<20 + 100<<10: "16.1 MiB", 3000: "2.93 KiB"} {
		if got := schema.FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
