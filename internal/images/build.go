package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/weft-dev/weft/internal/ociimage"
)

// Options of [Build].
type Options struct {
	// Root is the weft module's root (where ./cmd/weft is).
	Root string
	// Out is the output folder: Out/oci is the OCI layout of every
	// image, Out/bin the Go binaries, Out/images.txt "ref digest" lines.
	Out string
	// Tag of every image (default DefaultTag).
	Tag string
	// Envoy is the envoy binary (default: envoy in ToolsBin).
	Envoy string
	// ToolsBin is .tools/bin (default $WEFT_TOOLS_BIN, else Root/.tools/bin).
	ToolsBin string
	// Inputs from the host; zero fields default to DebianInputs.
	Inputs Inputs
	// Log gets one line per step (nil: discarded).
	Log io.Writer
}

// Result is what [Build] wrote.
type Result struct {
	// Layout is the OCI image layout folder.
	Layout string
	// Refs in build order; Digests are their manifest digests.
	Refs    []string
	Digests map[string]v1.Hash
	// Inputs that went in (binaries resolved).
	Inputs Inputs
}

// Ref is name:tag.
func Ref(name, tag string) string { return name + ":" + tag }

// Build compiles the static Go binaries (weft and pause: CGO_ENABLED=0,
// -trimpath, -buildvcs=false, stripped, so that the same source gives the
// same bytes), assembles every image of [Images] from them, Envoy and the
// host's Debian files, and writes the OCI layout Out/oci (replacing
// whatever was there) and Out/images.txt. Same inputs, same digests. No
// network, registry or container engine is involved.
func Build(ctx context.Context, o Options) (*Result, error) {
	if o.Root == "" || o.Out == "" {
		return nil, fmt.Errorf("images: Root and Out are required")
	}
	if o.Tag == "" {
		o.Tag = DefaultTag
	}
	if o.ToolsBin == "" {
		o.ToolsBin = os.Getenv("WEFT_TOOLS_BIN")
	}
	if o.ToolsBin == "" {
		o.ToolsBin = filepath.Join(o.Root, ".tools", "bin")
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, "images: "+format+"\n", args...)
		}
	}
	in := o.Inputs
	deb := DebianInputs()
	for _, f := range []struct {
		dst *string
		def string
	}{
		{&in.Busybox, deb.Busybox}, {&in.CACerts, deb.CACerts}, {&in.Sbin, deb.Sbin}, {&in.XtablesDir, deb.XtablesDir},
	} {
		if *f.dst == "" {
			*f.dst = f.def
		}
	}
	if err := checkInputs(in); err != nil {
		return nil, err
	}

	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	// Test packages building at the same time share Out.
	unlock, err := lock(filepath.Join(o.Out, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	bin := filepath.Join(o.Out, "bin")
	start := time.Now()
	if in.Weft == "" {
		in.Weft = filepath.Join(bin, "weft")
		if err := goBuild(ctx, o.Root, in.Weft, "./cmd/weft"); err != nil {
			return nil, err
		}
	}
	if in.Pause == "" {
		in.Pause = filepath.Join(bin, "pause")
		if err := goBuild(ctx, o.Root, in.Pause, "./internal/images/pause"); err != nil {
			return nil, err
		}
	}
	logf("go binaries in %s", time.Since(start).Round(time.Millisecond))
	if in.Envoy == "" {
		in.Envoy = o.Envoy
	}
	if in.Envoy == "" {
		in.Envoy = filepath.Join(o.ToolsBin, "envoy")
	}
	if _, err := os.Stat(in.Envoy); err != nil {
		return nil, fmt.Errorf("images: envoy: %w (run `make tools`)", err)
	}
	if in.EnvoyVersion == "" {
		v, err := envoyVersion(ctx, in.Envoy)
		if err != nil {
			return nil, err
		}
		in.EnvoyVersion = v
	}

	start = time.Now()
	epoch, err := ociimage.Epoch()
	if err != nil {
		return nil, err
	}
	defs, err := Images(o.Tag, in)
	if err != nil {
		return nil, err
	}
	res := &Result{Layout: filepath.Join(o.Out, "oci"), Inputs: in}
	fp := fingerprint(defs, epoch)
	stamp := filepath.Join(o.Out, "images.fingerprint")
	if old, err := os.ReadFile(stamp); err == nil && string(old) == fp {
		if list, err := ReadList(o.Out); err == nil && len(list) == len(defs) {
			if _, err := os.Stat(filepath.Join(res.Layout, "index.json")); err == nil {
				res.Digests = map[string]v1.Hash{}
				for _, d := range defs {
					h, err := v1.NewHash(list[d.Ref])
					if err != nil {
						break
					}
					res.Refs = append(res.Refs, d.Ref)
					res.Digests[d.Ref] = h
				}
				if len(res.Refs) == len(defs) {
					logf("%d images unchanged in %s (%s)", len(res.Refs), res.Layout, time.Since(start).Round(time.Millisecond))
					return res, nil
				}
				res.Refs, res.Digests = nil, nil
			}
		}
	}
	_ = os.Remove(stamp)
	var named []ociimage.Named
	for _, d := range defs {
		img, err := d.Build(epoch)
		if err != nil {
			return nil, err
		}
		named = append(named, ociimage.Named{Ref: d.Ref, Image: img})
		res.Refs = append(res.Refs, d.Ref)
	}
	if res.Digests, err = ociimage.WriteLayout(res.Layout, named); err != nil {
		return nil, err
	}
	var list bytes.Buffer
	for _, r := range res.Refs {
		fmt.Fprintf(&list, "%s %s\n", r, res.Digests[r])
	}
	if err := os.WriteFile(filepath.Join(o.Out, "images.txt"), list.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	if err := os.WriteFile(stamp, []byte(fp), 0o644); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	logf("%d images in %s (%s)", len(res.Refs), res.Layout, time.Since(start).Round(time.Millisecond))
	return res, nil
}

// fingerprint of the whole build: the images' fingerprints, in order.
func fingerprint(defs []ociimage.Image, epoch time.Time) string {
	var b strings.Builder
	for _, d := range defs {
		b.WriteString(d.Fingerprint(epoch))
		b.WriteByte('\n')
	}
	return b.String()
}

// lock takes an exclusive flock on path, waiting for it.
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("images: locking %s: %w", path, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// checkInputs fails with the Debian package to install for a missing file.
func checkInputs(in Inputs) error {
	var missing []string
	for _, c := range []struct{ path, pkg string }{
		{in.Busybox, "busybox-static"},
		{in.CACerts, "ca-certificates"},
		{filepath.Join(in.Sbin, "xtables-nft-multi"), "iptables"},
		{filepath.Join(in.Sbin, "xtables-legacy-multi"), "iptables"},
		{in.XtablesDir, "iptables"},
	} {
		if _, err := os.Stat(c.path); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", c.path, c.pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("images: missing %s: apt-get install busybox-static ca-certificates iptables (.ci/run does)", strings.Join(missing, ", "))
	}
	return nil
}

// goBuild builds pkg of the module at root into out, static and
// reproducible.
func goBuild(ctx context.Context, root, out, pkg string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	cmd := exec.CommandContext(ctx, goCommand(), "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("images: go build %s: %w\n%s", pkg, err, stderr.String())
	}
	return nil
}

func goCommand() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

var envoyVersionRE = regexp.MustCompile(`/(\d+\.\d+\.\d+)/`)

// envoyVersion is the release in `envoy --version` ("…/1.40.0/Clean/RELEASE/…").
func envoyVersion(ctx context.Context, envoy string) (string, error) {
	out, err := exec.CommandContext(ctx, envoy, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("images: %s --version: %w\n%s", envoy, err, out)
	}
	m := envoyVersionRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("images: no version in `%s --version`: %s", envoy, out)
	}
	return string(m[1]), nil
}

// ReadList reads Out/images.txt: digests by ref.
func ReadList(out string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(out, "images.txt"))
	if err != nil {
		return nil, fmt.Errorf("images: %w (run `make images`)", err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		ref, digest, ok := strings.Cut(line, " ")
		if ok {
			m[ref] = digest
		}
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("images: %s/images.txt lists no image", out)
	}
	return m, nil
}
