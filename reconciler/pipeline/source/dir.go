package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/schema"
)

// Dir watches a plain directory: it polls the names, types, sizes and
// modification times of the files under the CUE module root (hidden
// directories excepted; the whole module, for an environment directory)
// and, when they change, hashes them into a revision named
// `dir@<12 hex>`. The revision's directory is Path itself (no copy).
//
// Hashing never follows a symbolic link (the link's target is hashed)
// and never opens anything but a regular file: a FIFO or a link to
// /dev/zero cannot block or exhaust it; the loader then refuses them with
// their name. A directory that cannot be read is a retryable error at
// step fetch (revision "dir").
type Dir struct {
	Path         string
	Poll         time.Duration
	MaxFileBytes int64

	stamp, last string
}

func (d *Dir) String() string {
	return fmt.Sprintf("directory %s (polled every %s)", d.Path, d.Poll)
}

// file is one entry of a scan.
type file struct {
	path string
	info fs.FileInfo
}

// scan lists the module's files (sorted) and a cheap stamp of them.
func (d *Dir) scan() (string, []file, error) {
	root := schema.ModuleRoot(d.Path)
	var files []file
	var lines []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			if p != root && strings.HasPrefix(e.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := e.Info()
		if err != nil {
			if os.IsNotExist(err) {
				return nil // removed while walking: the next scan sees it
			}
			return err
		}
		files = append(files, file{p, info})
		lines = append(lines, fmt.Sprintf("%s %s %d %d", p, info.Mode().Type(), info.Size(), info.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		return "", nil, pipeline.Retryable("dir", status.StepFetch, fmt.Errorf("read %s: %w", root, err))
	}
	sort.Strings(lines)
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	return strings.Join(lines, "\n"), files, nil
}

// digest hashes the files: the content of regular files up to
// MaxFileBytes, the target of links, the size and time of anything else.
func (d *Dir) digest(files []file) string {
	max := d.MaxFileBytes
	if max <= 0 {
		max = schema.DefaultMaxFileBytes
	}
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%s\x00", f.path, f.info.Mode().Type())
		switch {
		case f.info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(f.path)
			fmt.Fprintf(h, "%s\x00", target)
		case f.info.Mode().IsRegular() && f.info.Size() <= max:
			hashFile(h, f.path, max)
		default:
			fmt.Fprintf(h, "%d %d\x00", f.info.Size(), f.info.ModTime().UnixNano())
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// hashFile hashes at most max bytes of the regular file p, opened
// without blocking and without following a link swapped in meanwhile.
func hashFile(h hash.Hash, p string, max int64) {
	f, err := os.OpenFile(p, os.O_RDONLY|openFlags, 0)
	if err != nil {
		fmt.Fprintf(h, "unreadable %v\x00", err)
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return
	}
	n, _ := io.Copy(h, io.LimitReader(f, max))
	fmt.Fprintf(h, "\x00%d\x00", n)
}

// Next returns the directory as a revision when its files changed since
// the last one returned (the first call returns it as it is).
func (d *Dir) Next(ctx context.Context) (pipeline.Revision, error) {
	for {
		stamp, files, err := d.scan()
		if err != nil {
			// Once it is readable again, its revision is attempted again
			// (even unchanged), so that the status shows it recovered.
			d.stamp, d.last = "", ""
			return pipeline.Revision{}, err
		}
		if stamp != d.stamp {
			d.stamp = stamp
			if name := "dir@" + d.digest(files); name != d.last {
				d.last = name
				return pipeline.Revision{Name: name, Dir: d.Path}, nil
			}
		}
		if !wait(ctx.Done(), d.Poll) {
			return pipeline.Revision{}, ctx.Err()
		}
	}
}
