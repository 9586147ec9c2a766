package ociimage

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations of an image's entry in the layout's index.json: the OCI
// reference name, and the name `ctr images import` gives the image.
const (
	AnnotationRefName        = "org.opencontainers.image.ref.name"
	AnnotationContainerdName = "io.containerd.image.name"
)

// Layer is one layer of an [Image].
type Layer struct {
	Tree *Tree
	// CreatedBy describes the layer in the config's history.
	CreatedBy string
}

// Image says what an image holds and how it runs.
type Image struct {
	// Ref is the image's full name, "localhost/weft:dev".
	Ref string
	// Layers, bottom first.
	Layers []Layer
	// The process: as the OCI image config's fields of the same names.
	Entrypoint, Cmd, Env []string
	User, WorkingDir     string
	Labels               map[string]string
	StopSignal           string
	// Platform; OS defaults to "linux", Architecture to the build's
	// GOARCH. containerd's import filters images by platform: an image
	// without them is "filtered out" unless imported with --all-platforms.
	OS, Architecture, Variant string
}

// Epoch is the creation time of images and the mtime of every layer
// entry: SOURCE_DATE_EPOCH (seconds since 1970, the reproducible-builds
// convention) when set, else 1970-01-01T00:00:00Z.
func Epoch() (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("ociimage: SOURCE_DATE_EPOCH=%q: want whole seconds since 1970", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

// Build returns the OCI image (manifest, config and uncompressed tar
// layers, in OCI media types) with every time set to created.
//
// Uncompressed: compressing is most of an image build's CPU time (Envoy
// alone is 107 MB), about ten times more under the race detector, and
// containerd would spend it again unpacking; the images go from this
// machine's disk straight into its containerd, never over a network. A
// registry push can compress them on the way (crane, skopeo).
func (im Image) Build(created time.Time) (v1.Image, error) {
	if im.Ref == "" {
		return nil, fmt.Errorf("ociimage: image without a Ref")
	}
	if len(im.Layers) == 0 {
		return nil, fmt.Errorf("ociimage: %s: no layers", im.Ref)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	ts := v1.Time{Time: created}
	adds := make([]mutate.Addendum, 0, len(im.Layers))
	for i, l := range im.Layers {
		data, err := l.Tree.Tar(created)
		if err != nil {
			return nil, fmt.Errorf("%s: layer %d: %w", im.Ref, i+1, err)
		}
		layer := static.NewLayer(data, types.OCIUncompressedLayer)
		adds = append(adds, mutate.Addendum{
			Layer:     layer,
			MediaType: types.OCIUncompressedLayer,
			History:   v1.History{Created: ts, CreatedBy: l.CreatedBy},
		})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %s: %w", im.Ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("ociimage: %s: %w", im.Ref, err)
	}
	cf = cf.DeepCopy()
	cf.Created = ts
	cf.OS = im.OS
	if cf.OS == "" {
		cf.OS = "linux"
	}
	cf.Architecture = im.Architecture
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	cf.Variant = im.Variant
	cf.Config = v1.Config{
		Entrypoint: im.Entrypoint,
		Cmd:        im.Cmd,
		Env:        im.Env,
		User:       im.User,
		WorkingDir: im.WorkingDir,
		Labels:     im.Labels,
		StopSignal: im.StopSignal,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %s: %w", im.Ref, err)
	}
	return img, nil
}

// Named is a built image and its full name.
type Named struct {
	Ref   string
	Image v1.Image
}

// WriteLayout writes images, in order, into a new OCI image layout at dir
// (an existing dir is replaced as a whole, so it holds exactly these
// images): blobs/sha256/…, oci-layout and index.json, whose entries carry
// the ref in [AnnotationRefName] and [AnnotationContainerdName]. It
// returns each image's manifest digest, by ref.
func WriteLayout(dir string, images []Named) (map[string]v1.Hash, error) {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	digests := map[string]v1.Hash{}
	for _, n := range images {
		if _, dup := digests[n.Ref]; dup {
			return nil, fmt.Errorf("ociimage: %s twice in one layout", n.Ref)
		}
		d, err := n.Image.Digest()
		if err != nil {
			return nil, fmt.Errorf("ociimage: %s: %w", n.Ref, err)
		}
		digests[n.Ref] = d
		if err := p.AppendImage(n.Image, layout.WithAnnotations(map[string]string{
			AnnotationRefName:        n.Ref,
			AnnotationContainerdName: n.Ref,
		})); err != nil {
			return nil, fmt.Errorf("ociimage: writing %s: %w", n.Ref, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	return digests, nil
}

// ReadLayout returns the images of the OCI layout at dir by their
// [AnnotationRefName].
func ReadLayout(dir string) (map[string]v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("ociimage: %w", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("ociimage: %s: %w", dir, err)
	}
	out := map[string]v1.Image{}
	for _, d := range m.Manifests {
		ref := d.Annotations[AnnotationRefName]
		if ref == "" {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("ociimage: %s: %s: %w", dir, ref, err)
		}
		out[ref] = img
	}
	return out, nil
}

// WriteArchive writes the layout at dir as a tar stream (what `ctr images
// import` reads from a file or stdin): its files sorted by path, with
// fixed times and owners.
func WriteArchive(w io.Writer, dir string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		} else if !d.IsDir() {
			return fmt.Errorf("%s: not a regular file or folder", p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ociimage: archive of %s: %w", dir, err)
	}
	sort.Strings(files)
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0).UTC()
	dirs := map[string]bool{}
	for _, rel := range files {
		for _, d := range parents(rel) {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: epoch}); err != nil {
				return fmt.Errorf("ociimage: archive: %w", err)
			}
		}
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return fmt.Errorf("ociimage: archive: %w", err)
		}
		st, err := f.Stat()
		if err == nil {
			err = tw.WriteHeader(&tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: 0o644, Size: st.Size(), ModTime: epoch})
		}
		if err == nil {
			_, err = io.Copy(tw, f)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("ociimage: archive %s: %w", rel, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("ociimage: archive: %w", err)
	}
	return nil
}

// parents of "a/b/c" are "a", "a/b".
func parents(rel string) []string {
	parts := strings.Split(rel, "/")
	out := make([]string, 0, len(parts)-1)
	for i := 1; i < len(parts); i++ {
		out = append(out, strings.Join(parts[:i], "/"))
	}
	return out
}

// Fingerprint is a digest of everything Build's output depends on given
// the same Go toolchain and go-containerregistry: the ref, the process,
// the platform, created, and every entry of every layer (path, kind,
// mode, owner, target, content digest). Equal fingerprints give equal
// images, so a build can skip writing an unchanged layout.
func (im Image) Fingerprint(created time.Time) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	_ = enc.Encode([]any{im.Ref, im.Entrypoint, im.Cmd, im.Env, im.User, im.WorkingDir, im.Labels,
		im.StopSignal, im.OS, im.Architecture, im.Variant, created.UTC().Format(time.RFC3339Nano), runtime.Version(),
		types.OCIManifestSchema1, types.OCIConfigJSON, types.OCIUncompressedLayer})
	for _, l := range im.Layers {
		_ = enc.Encode(l.CreatedBy)
		for _, p := range l.Tree.Paths() {
			e, _ := l.Tree.Entry(p)
			sum := sha256.Sum256(e.Data)
			_ = enc.Encode([]any{e.Path, int(e.Kind), uint32(e.Mode), e.UID, e.GID, e.Target, hex.EncodeToString(sum[:])})
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
