package flux

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	fluxtar "github.com/fluxcd/pkg/tar"

	"github.com/weft-dev/weft/reconciler/pipeline"
)

// Pack returns the artifact that rev was fetched from (its whole
// unpacked directory, regular files only) as a gzipped tarball of at most
// max bytes, so that the revision can be unpacked again later (Unpack)
// when source-controller no longer offers it: the controller keeps the
// last applied one. Call it before rev.Done.
func Pack(rev pipeline.Revision, max int64) ([]byte, error) {
	root := artifactRoot(rev.Dir)
	if root == "" {
		return nil, fmt.Errorf("revision %s was not fetched by this package", rev.Name)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
		if int64(buf.Len()) > max {
			return fmt.Errorf("revision %s packs to more than %d bytes", rev.Name, max)
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil && int64(buf.Len()) > max {
		err = fmt.Errorf("revision %s packs to %d bytes, more than %d", rev.Name, buf.Len(), max)
	}
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Unpack unpacks a tarball made by Pack into a fresh directory below
// Options.TempDir (within Options.MaxUntarBytes) and returns it as
// revision name with ref's folders, as Fetch does. The caller must call
// Revision.Done.
func (f *Fetcher) Unpack(r io.Reader, name string, ref Ref) (pipeline.Revision, error) {
	dir, policies, err := ref.paths()
	if err != nil {
		return pipeline.Revision{}, err
	}
	tmp, err := os.MkdirTemp(f.opts.TempDir, tempPrefix)
	if err != nil {
		return pipeline.Revision{}, err
	}
	rev := pipeline.Revision{Name: name, Dir: filepath.Join(tmp, dir), Cleanup: func() { _ = os.RemoveAll(tmp) }}
	if err := fluxtar.Untar(r, tmp, fluxtar.WithMaxUntarSize(int(f.opts.MaxUntarBytes)), fluxtar.WithSkipSymlinks()); err != nil {
		rev.Done()
		return pipeline.Revision{}, fmt.Errorf("unpacking revision %s: %w", name, err)
	}
	for _, p := range append([]string{dir}, policies...) {
		if err := isDir(tmp, p, "a kept folder"); err != nil {
			rev.Done()
			return pipeline.Revision{}, err
		}
	}
	for _, p := range policies {
		rev.PolicyDirs = append(rev.PolicyDirs, filepath.Join(tmp, p))
	}
	return rev, nil
}
