package schema

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"cuelang.org/go/cue/inject/embed"
	"cuelang.org/go/cue/parser"

	"github.com/weft-dev/weft/schema/mesh"
)

// Limits bound what the loader reads from a mesh repository. A file over
// MaxFileBytes, or a load that reads more than MaxTotalBytes in all, fails
// with an Error naming the file and the limit.
//
// The defaults were picked from measurements: the 1,000-service benchmark
// mesh (internal/meshgen, 10 endpoints and 3 calls per service) is one
// 0.7 MB file; the 5,000-service one is 3.5 MB. CUE's evaluation holds
// about 40 to 60 bytes per byte of source (236 MB allocated for the
// 1,000-service mesh), so the total bounds the memory of a load to the
// order of 1 GB.
type Limits struct {
	// MaxFileBytes is the size of the largest file read (0: DefaultMaxFileBytes).
	MaxFileBytes int64
	// MaxTotalBytes is the most read by one load, every file (CUE files
	// and embedded ones) together (0: DefaultMaxTotalBytes).
	MaxTotalBytes int64
}

// Default limits (see Limits).
const (
	DefaultMaxFileBytes  int64 = 4 << 20  // 4 MiB
	DefaultMaxTotalBytes int64 = 16 << 20 // 16 MiB
)

// WithDefaults returns l with its zero fields set to the defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxFileBytes <= 0 {
		l.MaxFileBytes = DefaultMaxFileBytes
	}
	if l.MaxTotalBytes <= 0 {
		l.MaxTotalBytes = DefaultMaxTotalBytes
	}
	return l
}

// source is what one load reads of a mesh repository: every CUE file of
// its module and every file those @embed, read and checked by readSource.
type source struct {
	files   map[string][]byte // by slash path below the module root
	total   int64
	refused map[string]*Error
}

// Refused lists the refused files, sorted by position.
func (s *source) Refused() Errors {
	out := make(Errors, 0, len(s.refused))
	for _, e := range s.refused {
		out = append(out, e)
	}
	return out.sorted()
}

// readSource reads the CUE module at root for one load. It is the only
// reader of the repository: cue/load is then given exactly these files
// (as an overlay on a directory that does not exist on disk), so neither
// CUE nor @embed can read anything else. It reads every .cue file of the
// module — but those in hidden directories, hidden or "_" files, and the
// schema's package directory, which the loader serves itself — then every
// file they @embed. Only regular files inside the module are read:
//
//   - a symbolic link is followed only when its target is inside the
//     module; a .cue file, an embedded file, or a directory under cue.mod/
//     that links out of it is refused (other directory links out of the
//     module are not followed);
//   - a device, FIFO or socket is refused and never opened for reading (a
//     FIFO swapped in after the check is opened non-blocking and refused);
//   - a file over limits.MaxFileBytes, or one that brings the total read
//     over limits.MaxTotalBytes, is refused.
//
// Every refusal is an *Error naming the file (relative to root), or the
// @embed attribute that asked for it. The error return is a failure to
// read a directory, or the end of ctx.
func readSource(ctx context.Context, root string, limits Limits) (*source, error) {
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", root, err)
	}
	r := &reader{ctx: ctx, real: real, limits: limits.WithDefaults(), seen: map[string]bool{},
		src: &source{files: map[string][]byte{}, refused: map[string]*Error{}}}
	if err := r.walk(".", real); err != nil {
		return nil, err
	}
	if err := r.embeds(); err != nil {
		return nil, err
	}
	return r.src, nil
}

type reader struct {
	ctx    context.Context
	real   string // the module root, symbolic links resolved
	limits Limits
	seen   map[string]bool // directories walked, on disk
	src    *source
}

var schemaDir = path.Dir(filepath.ToSlash(SchemaFile))

// walk reads the CUE files of directory rel (slash path below the root),
// which is dir on disk.
func (r *reader) walk(rel, dir string) error {
	if err := r.ctx.Err(); err != nil {
		return err
	}
	r.seen[dir] = true
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", rel, unwrapPath(err))
	}
	for _, e := range entries {
		name := e.Name()
		child, disk := path.Join(rel, name), filepath.Join(dir, name)
		if strings.HasPrefix(name, ".") || child == schemaDir {
			continue
		}
		cueFile := strings.HasSuffix(name, ".cue") && !strings.HasPrefix(name, "_")
		switch t := e.Type(); {
		case t.IsDir():
			if err := r.walk(child, disk); err != nil {
				return err
			}
		case t&fs.ModeSymlink != 0:
			if err := r.link(child, disk, cueFile); err != nil {
				return err
			}
		case cueFile:
			r.read(child, disk, nil)
		}
	}
	return nil
}

// link handles the symbolic link child (disk on disk).
func (r *reader) link(child, disk string, cueFile bool) error {
	target, err := filepath.EvalSymlinks(disk)
	if err != nil {
		if cueFile {
			r.refuse(child, nil, fmt.Sprintf("is a symbolic link that cannot be resolved: %v", unwrapPath(err)), "fix or remove the link")
		}
		return nil
	}
	inside := within(target, r.real)
	fi, err := os.Stat(target)
	if err != nil {
		return nil
	}
	switch {
	case fi.IsDir() && inside:
		if r.seen[target] {
			return nil // a loop, or a directory walked already
		}
		return r.walk(child, target)
	case fi.IsDir():
		if strings.HasPrefix(child, "cue.mod/") {
			r.refuse(child, nil, outside(target, r.real), "copy the package into cue.mod, or point the link at a directory inside the module")
		}
	case !cueFile:
	case !inside:
		r.refuse(child, nil, outside(target, r.real), "copy the file into the repository, or point the link at a file inside it")
	default:
		r.read(child, target, nil)
	}
	return nil
}

func outside(target, root string) string {
	return fmt.Sprintf("is a symbolic link to %s, outside the CUE module (%s): weft reads only files inside the mesh repository", target, root)
}

// refuse records that the file rel was refused; by is the @embed that
// asked for it (nil for a CUE file).
func (r *reader) refuse(rel string, by *embed.Embed, msg, fix string) {
	if r.src.refused[rel] != nil {
		return
	}
	e := &Error{Pos: mesh.Pos{File: filepath.FromSlash(rel)}, Msg: msg, Fix: fix}
	if by != nil {
		p := by.Attribute.Pos
		e.Pos = mesh.Pos{File: filepath.FromSlash(by.FilePath), Line: p.Line(), Column: p.Column()}
		e.Msg = fmt.Sprintf("@embed of %s: the file %s", rel, msg)
	}
	r.src.refused[rel] = e
}

// read reads the regular file rel (disk on disk) within the limits.
func (r *reader) read(rel, disk string, by *embed.Embed) {
	if _, done := r.src.files[rel]; done {
		return
	}
	max := r.limits.MaxFileBytes
	fi, err := os.Stat(disk)
	if err != nil {
		r.refuse(rel, by, fmt.Sprintf("cannot be read: %v", unwrapPath(err)), "")
		return
	}
	if fi.Mode().IsRegular() && fi.Size() > max {
		r.refuse(rel, by, fmt.Sprintf("is %s, over the limit of %s per file", FormatBytes(fi.Size()), FormatBytes(max)),
			"split the file, or raise the limit (--max-file-size)")
		return
	}
	b, mode, err := readRegular(disk, fi, max)
	switch {
	case err != nil:
		r.refuse(rel, by, fmt.Sprintf("cannot be read: %v", unwrapPath(err)), "")
	case !mode.IsRegular():
		r.refuse(rel, by, fmt.Sprintf("is %s, not a regular file: weft reads only regular files", kind(mode)),
			"remove it from the mesh repository")
	case int64(len(b)) > max: // it grew since the Stat
		r.refuse(rel, by, fmt.Sprintf("is more than %s, the limit per file", FormatBytes(max)),
			"split the file, or raise the limit (--max-file-size)")
	default:
		r.src.total += int64(len(b))
		if r.src.total > r.limits.MaxTotalBytes {
			r.refuse(rel, by, fmt.Sprintf("brings what the loader read to %s, over the limit of %s for the whole source", FormatBytes(r.src.total), FormatBytes(r.limits.MaxTotalBytes)),
				"make the mesh repository smaller, or raise the limit (--max-source-size)")
			return
		}
		r.src.files[rel] = b
	}
}

// readRegular reads the file at p if it is a regular file: non-regular files are never opened for reading; the open does not
// block (a FIFO swapped in after the Stat) nor follow a final symbolic
// link (p is resolved already), and reads at most max+1 bytes.
func readRegular(p string, fi fs.FileInfo, max int64) ([]byte, fs.FileMode, error) {
	if !fi.Mode().IsRegular() {
		return nil, fi.Mode(), nil
	}
	f, err := os.OpenFile(p, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fi.Mode(), nil
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	return b, fi.Mode(), err
}

// embeds reads the files that the CUE files read so far @embed.
func (r *reader) embeds() error {
	names := make([]string, 0, len(r.src.files))
	for n := range r.src.files {
		names = append(names, n)
	}
	sort.Strings(names)
	stat := os.DirFS(r.real) // for globbing and stat only; reads go through read
	for _, n := range names {
		if err := r.ctx.Err(); err != nil {
			return err
		}
		data := r.src.files[n]
		if !bytes.Contains(data, []byte("@embed")) {
			continue
		}
		f, err := parser.ParseFile(n, data)
		if err != nil {
			continue // CUE reports it
		}
		embeds, _ := embed.EmbeddedPaths(n, f)
		for _, e := range embeds {
			found, err := e.FindAll(stat)
			if err != nil {
				continue // CUE reports it
			}
			for _, p := range found {
				r.readEmbedded(p, e)
			}
		}
	}
	return nil
}

func (r *reader) readEmbedded(rel string, by *embed.Embed) {
	if _, done := r.src.files[rel]; done {
		return
	}
	disk := filepath.Join(r.real, filepath.FromSlash(rel))
	target, err := filepath.EvalSymlinks(disk)
	if err != nil {
		return // missing: CUE reports it
	}
	if !within(target, r.real) {
		r.refuse(rel, by, outside(target, r.real), "copy the file into the repository, or point the link at a file inside it")
		return
	}
	r.read(rel, target, by)
}

func within(p, root string) bool {
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator)) || root == string(filepath.Separator)
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// kind names a file mode that is not a regular file.
func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a unix socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "not a regular file (" + m.Type().String() + ")"
}

// FormatBytes writes a size the way the limits' flags take it: "512 B",
// "4 MiB" (exact), "2.93 KiB" (two decimals, trailing zeros dropped).
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB"}
	div, i := int64(unit), 0
	for n >= div*unit && i < len(units)-1 {
		div *= unit
		i++
	}
	if n%div == 0 {
		return fmt.Sprintf("%d %s", n/div, units[i])
	}
	s := strings.TrimRight(fmt.Sprintf("%.2f", float64(n)/float64(div)), "0")
	return strings.TrimSuffix(s, ".") + " " + units[i]
}
