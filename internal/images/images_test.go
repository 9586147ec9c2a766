package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/weft-dev/weft/internal/images"
	"github.com/weft-dev/weft/internal/ociimage"
	"github.com/weft-dev/weft/internal/tooltest"
)

// build runs images.Build into a new folder, skipping the test (failing
// it under CI=true) when the machine lacks an input.
func build(t *testing.T) *images.Result {
	t.Helper()
	in := images.DebianInputs()
	var missing []string
	for _, p := range []string{in.Busybox, in.CACerts, filepath.Join(in.Sbin, "xtables-nft-multi"), filepath.Join(tooltest.BinDir(), "envoy")} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		msg := "missing " + strings.Join(missing, ", ") + ": apt-get install busybox-static ca-certificates iptables; make tools"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := images.Build(ctx, images.Options{Root: tooltest.RepoRoot(), Out: t.TempDir(), Log: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built in %s", time.Since(start).Round(time.Millisecond))
	return res
}

// logWriter sends images.Build's lines to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestImages builds every image twice, from scratch, into two different
// folders: the digests are the same (reproducible: no time, no build
// path, no map order leaks in). Then it checks what a cluster needs of
// each image — the platform set (containerd filters images without it),
// the process, a non-root user — and that every entrypoint runs from the
// unpacked layers, with the image's own libraries.
func TestImages(t *testing.T) {
	first := build(t)
	second := build(t)
	if !slices.Equal(first.Refs, second.Refs) {
		t.Fatalf("refs %v, then %v", first.Refs, second.Refs)
	}
	for _, ref := range first.Refs {
		if first.Digests[ref] != second.Digests[ref] {
			t.Errorf("%s: %s, then %s", ref, first.Digests[ref], second.Digests[ref])
		}
	}
	idx1, _ := os.ReadFile(filepath.Join(first.Layout, "index.json"))
	idx2, _ := os.ReadFile(filepath.Join(second.Layout, "index.json"))
	if !bytes.Equal(idx1, idx2) {
		t.Errorf("index.json differs:\n%s\n%s", idx1, idx2)
	}
	wantRefs := []string{"localhost/weft:dev", "localhost/weft-proxy:dev", "localhost/pause:dev", "localhost/weft-testapp:dev"}
	if !slices.Equal(first.Refs, wantRefs) {
		t.Errorf("refs %v, want %v", first.Refs, wantRefs)
	}

	imgs, err := ociimage.ReadLayout(first.Layout)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		entrypoint, cmd []string
		user            string
	}{
		"localhost/weft:dev":         {[]string{"/weft"}, nil, "65532:65532"},
		"localhost/weft-proxy:dev":   {[]string{"/weft"}, []string{"agent"}, "1337:1337"},
		"localhost/pause:dev":        {[]string{"/pause"}, nil, "65535:65535"},
		"localhost/weft-testapp:dev": {[]string{"/bin/sh"}, nil, "65532:65532"},
	}
	for ref, w := range want {
		cf, err := imgs[ref].ConfigFile()
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
			t.Errorf("%s: platform %q/%q, want linux/%s", ref, cf.OS, cf.Architecture, runtime.GOARCH)
		}
		if !slices.Equal(cf.Config.Entrypoint, w.entrypoint) || !slices.Equal(cf.Config.Cmd, w.cmd) || cf.Config.User != w.user {
			t.Errorf("%s: entrypoint %q cmd %q user %q; want %q %q %q", ref, cf.Config.Entrypoint, cf.Config.Cmd, cf.Config.User, w.entrypoint, w.cmd, w.user)
		}
		if !cf.Created.Time.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: created %v, want the fixed epoch", ref, cf.Created)
		}
	}

	// The weft binary is one layer shared by the weft and proxy images.
	weftTop := topLayer(t, imgs["localhost/weft:dev"])
	if proxyTop := topLayer(t, imgs["localhost/weft-proxy:dev"]); proxyTop != weftTop {
		t.Errorf("the weft binary's layer differs: %s (weft), %s (proxy)", weftTop, proxyTop)
	}

	root := tooltest.RepoRoot()
	gomodcache, _ := exec.Command("go", "env", "GOMODCACHE").Output()
	hostPaths := [][]byte{[]byte(root), []byte(first.Layout), []byte(strings.TrimSpace(string(gomodcache)))}
	fs := map[string]string{}
	for ref, img := range imgs {
		fs[ref] = unpack(t, img, hostPaths)
	}

	t.Run("entrypoints run", func(t *testing.T) {
		weft := fs["localhost/weft:dev"]
		out := run(t, filepath.Join(weft, "weft"), "demo-app", "--help")
		if !strings.Contains(out, "demo-app is the workload") {
			t.Errorf("weft demo-app --help: %s", out)
		}
		lib := libDir(t, weft)
		for _, c := range []struct{ multi, cmd, want string }{
			{"xtables-nft-multi", "iptables", "iptables v1.8"},
			{"xtables-nft-multi", "ip6tables-restore", "(nf_tables)"},
			{"xtables-legacy-multi", "iptables-legacy-restore", "(legacy)"},
		} {
			out := runWithLoader(t, weft, lib, filepath.Join(weft, "usr/sbin", c.multi), c.cmd, "--version")
			if !strings.Contains(out, c.want) {
				t.Errorf("%s %s --version: %q, want %q", c.multi, c.cmd, out, c.want)
			}
		}
		proxy := fs["localhost/weft-proxy:dev"]
		out = runWithLoader(t, proxy, libDir(t, proxy), filepath.Join(proxy, "usr/local/bin/envoy"), "--version")
		if !strings.Contains(out, "/"+first.Inputs.EnvoyVersion+"/") {
			t.Errorf("envoy --version: %q, want %s", out, first.Inputs.EnvoyVersion)
		}
		if out := run(t, filepath.Join(proxy, "weft"), "--help"); !strings.Contains(out, "GitOps mesh compiler") {
			t.Errorf("proxy image's weft --help: %s", out)
		}
		app := fs["localhost/weft-testapp:dev"]
		if out := run(t, filepath.Join(app, "usr/bin/busybox"), "sh", "-c", "echo hello"); out != "hello\n" {
			t.Errorf("busybox sh: %q", out)
		}
		// The pause process waits until SIGTERM and then exits 0.
		pause := exec.Command(filepath.Join(fs["localhost/pause:dev"], "pause"))
		if err := pause.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		_ = pause.Process.Signal(syscall.SIGTERM)
		if err := pause.Wait(); err != nil {
			t.Errorf("pause after SIGTERM: %v", err)
		}
	})

	t.Run("every library is in the image", func(t *testing.T) {
		for ref, dir := range fs {
			for _, missing := range unresolved(t, dir) {
				t.Errorf("%s: %s", ref, missing)
			}
		}
	})
}

func topLayer(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	ls, err := img.Layers()
	if err != nil || len(ls) == 0 {
		t.Fatalf("layers: %v", err)
	}
	d, err := ls[len(ls)-1].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// unpack writes the image's flattened file system into a new folder
// (files, folders, symlinks) and fails if a file holds one of hostPaths.
func unpack(t *testing.T, img v1.Image, hostPaths [][]byte) string {
	t.Helper()
	dir := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dir
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			for _, hp := range hostPaths {
				if len(hp) > 1 && bytes.Contains(data, hp) {
					t.Errorf("%s holds the build host's path %s", h.Name, hp)
				}
			}
			if err := os.WriteFile(p, data, os.FileMode(h.Mode)&0o777); err != nil {
				t.Fatal(err)
			}
		default:
			t.Errorf("%s: unexpected tar type %q", h.Name, h.Typeflag)
		}
	}
}

// libDir is the image's multiarch library folder.
func libDir(t *testing.T, root string) string {
	t.Helper()
	for _, d := range []string{"usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu"} {
		if _, err := os.Stat(filepath.Join(root, d)); err == nil {
			return filepath.Join(root, d)
		}
	}
	t.Fatalf("no multiarch library folder in %s", root)
	return ""
}

// runWithLoader runs prog with the image's own dynamic loader and only
// the image's library folder (no ld.so.cache).
func runWithLoader(t *testing.T, root, lib, prog string, args ...string) string {
	t.Helper()
	loaders, _ := filepath.Glob(filepath.Join(lib, "ld-linux-*.so.*"))
	if len(loaders) != 1 {
		t.Fatalf("loaders in %s: %v", lib, loaders)
	}
	// argv[0] selects the xtables multi-call binary's command.
	return run(t, loaders[0], append([]string{"--inhibit-cache", "--library-path", lib, "--argv0", firstOr(args, prog), prog}, rest(args)...)...)
}

func firstOr(args []string, def string) string {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[0]
	}
	return def
}

func rest(args []string) []string {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return args[1:]
	}
	return args
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// unresolved lists, for every ELF file in the unpacked image, the
// DT_NEEDED libraries and program interpreters that are not in the image
// (searched where glibc's loader would, inside the image).
func unresolved(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := elf.Open(p)
		if err != nil {
			return nil // not ELF
		}
		defer f.Close()
		rel := strings.TrimPrefix(p, root)
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				b := make([]byte, prog.Filesz)
				_, _ = prog.ReadAt(b, 0)
				interp := strings.TrimRight(string(b), "\x00")
				if !inImage(root, interp) {
					out = append(out, rel+": interpreter "+interp+" is not in the image")
				}
			}
		}
		needed, _ := f.DynString(elf.DT_NEEDED)
		for _, n := range needed {
			found := false
			for _, dir := range ociimage.LibraryDirs {
				if inImage(root, filepath.Join(dir, n)) {
					found = true
					break
				}
			}
			if !found {
				out = append(out, rel+": needs "+n+", not in the image")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// inImage resolves p inside root, following symlinks as the image would
// (absolute targets relative to root).
func inImage(root, p string) bool {
	cur := "/"
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for hops := 0; len(parts) > 0 && hops < 64; {
		next := filepath.Join(cur, parts[0])
		parts = parts[1:]
		st, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			return false
		}
		if st.Mode()&os.ModeSymlink != 0 {
			hops++
			target, err := os.Readlink(filepath.Join(root, next))
			if err != nil {
				return false
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			parts = append(strings.Split(strings.Trim(target, "/"), "/"), parts...)
			cur = "/"
			continue
		}
		cur = next
	}
	return len(parts) == 0
}
