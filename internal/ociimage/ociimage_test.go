package ociimage_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/weft-dev/weft/internal/ociimage"
)

type tarEntry struct {
	Name, Linkname  string
	Type            byte
	Mode            int64
	UID, GID        int
	Uname, Gname    string
	ModTime         time.Time
	Data            string
	PAXRecords      map[string]string
	AccessOrChanged bool
}

func readTar(t *testing.T, b []byte) []tarEntry {
	t.Helper()
	r := tar.NewReader(bytes.NewReader(b))
	var out []tarEntry
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{
			Name: h.Name, Linkname: h.Linkname, Type: h.Typeflag, Mode: h.Mode,
			UID: h.Uid, GID: h.Gid, Uname: h.Uname, Gname: h.Gname, ModTime: h.ModTime,
			Data: string(data), PAXRecords: h.PAXRecords,
			AccessOrChanged: !h.AccessTime.IsZero() || !h.ChangeTime.IsZero(),
		})
	}
}

// TestTreeTar: the layer lists parents before children in sorted order,
// creates missing parents root-owned 0755, stamps every entry with the
// given time and carries numeric owners only.
func TestTreeTar(t *testing.T) {
	tr := ociimage.NewTree()
	must(t, tr.File("/usr/sbin/b", []byte("bee"), 0o755))
	must(t, tr.Symlink("/usr/sbin/a", "b"))
	must(t, tr.Add(ociimage.Entry{Path: "/home/nonroot", Kind: ociimage.KindDir, Mode: 0o750, UID: 65532, GID: 65532}))
	must(t, tr.Dir("/tmp", 0o777|os.ModeSticky))
	mtime := time.Unix(1700000000, 0).UTC()
	b, err := tr.Tar(mtime)
	if err != nil {
		t.Fatal(err)
	}
	got := readTar(t, b)
	var names []string
	for _, e := range got {
		names = append(names, e.Name)
		if !e.ModTime.Equal(mtime) || e.Uname != "" || e.Gname != "" || e.AccessOrChanged || len(e.PAXRecords) != 0 {
			t.Errorf("%s: mtime %v uname %q gname %q atime/ctime %v pax %v; want %v and nothing else", e.Name, e.ModTime, e.Uname, e.Gname, e.AccessOrChanged, e.PAXRecords, mtime)
		}
	}
	want := []string{"home/", "home/nonroot/", "tmp/", "usr/", "usr/sbin/", "usr/sbin/a", "usr/sbin/b"}
	if !slices.Equal(names, want) {
		t.Fatalf("entries %q, want %q", names, want)
	}
	byName := map[string]tarEntry{}
	for _, e := range got {
		byName[e.Name] = e
	}
	checks := []struct {
		name       string
		typ        byte
		mode       int64
		uid        int
		data, link string
	}{
		{"home/", tar.TypeDir, 0o755, 0, "", ""},
		{"home/nonroot/", tar.TypeDir, 0o750, 65532, "", ""},
		{"tmp/", tar.TypeDir, 0o1777, 0, "", ""},
		{"usr/sbin/a", tar.TypeSymlink, 0o777, 0, "", "b"},
		{"usr/sbin/b", tar.TypeReg, 0o755, 0, "bee", ""},
	}
	for _, c := range checks {
		e := byName[c.name]
		if e.Type != c.typ || e.Mode != c.mode || e.UID != c.uid || e.GID != c.uid || e.Data != c.data || e.Linkname != c.link {
			t.Errorf("%s: type %q mode %o uid %d gid %d data %q link %q; want type %q mode %o owner %d data %q link %q",
				c.name, e.Type, e.Mode, e.UID, e.GID, e.Data, e.Linkname, c.typ, c.mode, c.uid, c.data, c.link)
		}
	}
}

// TestTreeConflicts: a path added twice differently, or below a file or
// symlink, is refused with both named; the same entry twice is fine.
func TestTreeConflicts(t *testing.T) {
	tr := ociimage.NewTree()
	must(t, tr.File("/etc/passwd", []byte("x"), 0o644))
	must(t, tr.File("/etc/passwd", []byte("x"), 0o644))
	must(t, tr.Symlink("/lib", "usr/lib"))
	must(t, tr.Dir("/etc", 0o755)) // replaces the implicit parent
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"different content", tr.File("/etc/passwd", []byte("y"), 0o644), "/etc/passwd added twice, differently"},
		{"below a symlink", tr.File("/lib/x86_64-linux-gnu/libc.so.6", nil, 0o644), "its parent /lib is a symlink"},
		{"below a file", tr.File("/etc/passwd/x", nil, 0o644), "its parent /etc/passwd is a file"},
		{"file over a folder", tr.File("/etc", nil, 0o644), "/etc added twice, differently: a directory (added before) and a file"},
		{"relative", tr.File("etc/x", nil, 0o644), `path "etc/x" is not absolute`},
		{"type bits", tr.Add(ociimage.Entry{Path: "/x", Kind: ociimage.KindFile, Mode: os.ModeDir | 0o755}), "has type bits"},
	}
	for _, c := range cases {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, c.err, c.want)
		}
	}
}

// TestAddELF copies a dynamically linked program from the host with its
// libraries and interpreter, where the loader would find them, so that
// the program runs with only the image's files.
func TestAddELF(t *testing.T) {
	prog := "/usr/sbin/xtables-nft-multi"
	if _, err := os.Stat(prog); err != nil {
		t.Skipf("%s not installed (Debian package iptables)", prog)
	}
	if runtime.GOARCH != "amd64" {
		t.Skip("the expected paths are amd64's")
	}
	tr := ociimage.NewTree()
	must(t, tr.UsrMerge())
	must(t, tr.AddELF("/usr/sbin/xtables-nft-multi", prog, 0o755))
	paths := tr.Paths()
	for _, want := range []string{
		"/usr/sbin/xtables-nft-multi",
		"/usr/lib64/ld-linux-x86-64.so.2", // PT_INTERP /lib64/…, stored through the /lib64 -> usr/lib64 link
		"/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"/usr/lib/x86_64-linux-gnu/libc.so.6",
		"/usr/lib/x86_64-linux-gnu/libxtables.so.12",
		"/usr/lib/x86_64-linux-gnu/libnftnl.so.11",
		"/usr/lib/x86_64-linux-gnu/libmnl.so.0",
	} {
		if !slices.Contains(paths, want) {
			t.Errorf("%s missing from %q", want, paths)
		}
	}
	for _, p := range paths {
		if strings.HasPrefix(p, "/lib/") || strings.HasPrefix(p, "/lib64/") {
			t.Errorf("%s is stored below a merged-/usr link", p)
		}
	}
	if e, _ := tr.Entry("/usr/lib/x86_64-linux-gnu/libxtables.so.12"); e.Kind != ociimage.KindSymlink {
		t.Errorf("libxtables.so.12 is a %s, want the host's symlink to its versioned file", e.Kind)
	}

	// A static program brings nothing else.
	static := filepath.Join(t.TempDir(), "static")
	if out, err := runGo(t, "build", "-o", static, "./testdata/static"); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	st := ociimage.NewTree()
	must(t, st.AddELF("/static", static, 0o755))
	if got := st.Paths(); !slices.Equal(got, []string{"/static"}) {
		t.Errorf("static program: %q, want only /static", got)
	}
}

func testImage(t *testing.T, content string) ociimage.Image {
	t.Helper()
	tr := ociimage.NewTree()
	must(t, tr.File("/hello", []byte(content), 0o755))
	must(t, tr.File("/etc/passwd", []byte("root:x:0:0::/:/x\n"), 0o644))
	return ociimage.Image{
		Ref:        "localhost/test:1",
		Layers:     []ociimage.Layer{{Tree: tr, CreatedBy: "test"}},
		Entrypoint: []string{"/hello"},
		User:       "65532:65532",
	}
}

// TestBuildReproducible: the same definition gives the same manifest
// digest, and a changed byte a different one; the config has os and
// architecture (containerd filters images without them), the fixed
// creation time, the process and one history entry per layer.
func TestBuildReproducible(t *testing.T) {
	epoch := time.Unix(0, 0).UTC()
	digest := func(im ociimage.Image) v1.Hash {
		img, err := im.Build(epoch)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a, b := digest(testImage(t, "hi")), digest(testImage(t, "hi"))
	if a != b {
		t.Fatalf("two builds: %s and %s", a, b)
	}
	if c := digest(testImage(t, "ho")); c == a {
		t.Fatalf("different content, same digest %s", c)
	}

	img, err := testImage(t, "hi").Build(epoch)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if !cf.Created.Time.Equal(epoch) || len(cf.History) != 1 || !cf.History[0].Created.Time.Equal(epoch) {
		t.Errorf("created %v, history %+v; want %v everywhere", cf.Created, cf.History, epoch)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/hello"}) || cf.Config.User != "65532:65532" {
		t.Errorf("config %+v", cf.Config)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" ||
		len(m.Layers) != 1 || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar" {
		t.Errorf("media types: manifest %s config %s layers %+v", m.MediaType, m.Config.MediaType, m.Layers)
	}
}

// TestLayoutAndArchive: the layout names each image for containerd and
// reads back with the same digests; its archive is the same bytes twice.
func TestLayoutAndArchive(t *testing.T) {
	epoch := time.Unix(0, 0).UTC()
	img, err := testImage(t, "hi").Build(epoch)
	if err != nil {
		t.Fatal(err)
	}
	img2 := testImage(t, "ho")
	img2.Ref = "localhost/test:2"
	built2, err := img2.Build(epoch)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "oci")
	named := []ociimage.Named{{Ref: "localhost/test:1", Image: img}, {Ref: "localhost/test:2", Image: built2}}
	digests, err := ociimage.WriteLayout(dir, named)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(raw, &index); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range index.Manifests {
		if m.Annotations[ociimage.AnnotationContainerdName] != m.Annotations[ociimage.AnnotationRefName] {
			t.Errorf("%s: annotations %v name it twice differently", m.Digest, m.Annotations)
		}
		names = append(names, m.Annotations[ociimage.AnnotationContainerdName])
	}
	if !slices.Equal(names, []string{"localhost/test:1", "localhost/test:2"}) {
		t.Errorf("index.json names %q, want both images in order", names)
	}
	back, err := ociimage.ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	for ref, d := range digests {
		got, err := back[ref].Digest()
		if err != nil || got != d {
			t.Errorf("%s read back as %v (%v), written as %s", ref, got, err, d)
		}
	}
	// Written again over the old one: the same layout, nothing left over.
	if _, err := ociimage.WriteLayout(dir, named[:1]); err != nil {
		t.Fatal(err)
	}
	if back, err = ociimage.ReadLayout(dir); err != nil || len(back) != 1 {
		t.Fatalf("rewritten layout holds %d images (%v), want 1", len(back), err)
	}
	var a1, a2 bytes.Buffer
	if err := ociimage.WriteArchive(&a1, dir); err != nil {
		t.Fatal(err)
	}
	if err := ociimage.WriteArchive(&a2, dir); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a1.Bytes(), a2.Bytes()) {
		t.Error("two archives of one layout differ")
	}
	names = nil
	for _, e := range readTar(t, a1.Bytes()) {
		names = append(names, e.Name)
	}
	if !slices.Contains(names, "index.json") || !slices.Contains(names, "oci-layout") || !slices.Contains(names, "blobs/sha256/") {
		t.Errorf("archive entries %q", names)
	}
}

func TestEpoch(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	if e, err := ociimage.Epoch(); err != nil || e.Unix() != 0 {
		t.Errorf("default epoch %v, %v; want 1970", e, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if e, err := ociimage.Epoch(); err != nil || e.Unix() != 1700000000 {
		t.Errorf("epoch %v, %v; want 1700000000", e, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := ociimage.Epoch(); err == nil || !strings.Contains(err.Error(), "whole seconds since 1970") {
		t.Errorf("bad SOURCE_DATE_EPOCH: %v", err)
	}
}

// runGo runs the go command in this package's folder, without cgo (a
// static program).
func runGo(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd.CombinedOutput()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
