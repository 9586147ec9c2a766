package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// Kind is what a [Tree] entry is.
type Kind int

// The kinds of entries.
const (
	KindDir Kind = iota
	KindFile
	KindSymlink
)

func (k Kind) String() string {
	switch k {
	case KindDir:
		return "directory"
	case KindFile:
		return "file"
	case KindSymlink:
		return "symlink"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Entry is one file system object of a layer.
type Entry struct {
	// Path is absolute and clean in the image ("/usr/sbin/iptables").
	Path string
	Kind Kind
	// Mode holds the permission bits (and setuid/setgid/sticky); the
	// type comes from Kind.
	Mode fs.FileMode
	// UID and GID own the entry (numeric; the layer carries no names).
	UID, GID int
	// Data is a file's content.
	Data []byte
	// Target is a symlink's target, as stored (relative or absolute).
	Target string
}

// Tree is the content of one layer: entries by image path. Parent
// directories that were not added explicitly are created root-owned with
// mode 0755. The zero value is not usable; call [NewTree].
type Tree struct {
	entries map[string]*Entry
	// sources remembers where a file was copied from, for error messages.
	sources map[string]string
}

// NewTree returns an empty tree.
func NewTree() *Tree {
	return &Tree{entries: map[string]*Entry{}, sources: map[string]string{}}
}

// Add puts e in the tree. Adding an equal entry again is a no-op; adding a
// different one at the same path, or an entry below a symlink or a file,
// is an error naming both.
func (t *Tree) Add(e Entry) error {
	p, err := cleanPath(e.Path)
	if err != nil {
		return err
	}
	e.Path = p
	if e.Kind == KindSymlink && e.Target == "" {
		return fmt.Errorf("ociimage: symlink %s: empty target", p)
	}
	if e.Mode&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
		return fmt.Errorf("ociimage: %s: mode %v has type bits; the kind says the type", p, e.Mode)
	}
	for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
		if parent, ok := t.entries[dir]; ok && parent.Kind != KindDir {
			return fmt.Errorf("ociimage: cannot add %s: its parent %s is a %s in this layer", p, dir, parent.Kind)
		}
	}
	if old, ok := t.entries[p]; ok {
		if old.Kind == e.Kind && old.Mode == e.Mode && old.UID == e.UID && old.GID == e.GID &&
			old.Target == e.Target && bytes.Equal(old.Data, e.Data) {
			return nil
		}
		if old.Kind == KindDir && e.Kind == KindDir && old.implicit() {
			t.entries[p] = &e
			return nil
		}
		return fmt.Errorf("ociimage: %s added twice, differently: a %s (%s) and a %s", p, old.Kind, t.describe(p), e.Kind)
	}
	t.entries[p] = &e
	for dir := path.Dir(p); dir != "/"; dir = path.Dir(dir) {
		if _, ok := t.entries[dir]; !ok {
			t.entries[dir] = &Entry{Path: dir, Kind: KindDir, Mode: 0o755, UID: implicitOwner}
		}
	}
	return nil
}

// implicitOwner marks a directory that Add created for a child; it is
// written as root-owned, and an explicit Dir may replace it.
const implicitOwner = -1

func (e *Entry) implicit() bool { return e.UID == implicitOwner }

// Dir adds a root-owned directory.
func (t *Tree) Dir(p string, mode fs.FileMode) error {
	return t.Add(Entry{Path: p, Kind: KindDir, Mode: mode})
}

// File adds a root-owned file holding data.
func (t *Tree) File(p string, data []byte, mode fs.FileMode) error {
	return t.Add(Entry{Path: p, Kind: KindFile, Mode: mode, Data: data})
}

// Symlink adds a symlink p -> target.
func (t *Tree) Symlink(p, target string) error {
	return t.Add(Entry{Path: p, Kind: KindSymlink, Mode: 0o777, Target: target})
}

// CopyFile adds the build host's file src at p, root-owned, with mode
// (the host file's own mode and times are ignored: they depend on how it
// was unpacked).
func (t *Tree) CopyFile(p, src string, mode fs.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("ociimage: %s: %w", p, err)
	}
	if err := t.File(p, data, mode); err != nil {
		return err
	}
	if cp, err := cleanPath(p); err == nil {
		t.sources[cp] = src
	}
	return nil
}

// Paths lists the tree's paths, sorted.
func (t *Tree) Paths() []string {
	out := make([]string, 0, len(t.entries))
	for p := range t.entries {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Entry returns the entry at p.
func (t *Tree) Entry(p string) (Entry, bool) {
	e, ok := t.entries[path.Clean(p)]
	if !ok {
		return Entry{}, false
	}
	out := *e
	if out.implicit() {
		out.UID = 0
	}
	return out, true
}

func (t *Tree) describe(p string) string {
	if src, ok := t.sources[p]; ok {
		return "from " + src
	}
	return "added before"
}

// Tar returns the layer: a tar of every entry sorted by path (a parent
// before its children), each stamped with mtime, owned by its numeric
// UID/GID with no user or group names.
func (t *Tree) Tar(mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	for _, p := range t.Paths() {
		e := t.entries[p]
		uid, gid := e.UID, e.GID
		if e.implicit() {
			uid, gid = 0, 0
		}
		h := &tar.Header{
			Name:    strings.TrimPrefix(p, "/"),
			Mode:    int64(e.Mode.Perm()) | modeBits(e.Mode),
			Uid:     uid,
			Gid:     gid,
			ModTime: mtime,
		}
		switch e.Kind {
		case KindDir:
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case KindFile:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.Data))
		case KindSymlink:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = e.Target
		}
		if err := w.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("ociimage: tar header of %s: %w", p, err)
		}
		if e.Kind == KindFile {
			if _, err := w.Write(e.Data); err != nil {
				return nil, fmt.Errorf("ociimage: tar %s: %w", p, err)
			}
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("ociimage: tar: %w", err)
	}
	return buf.Bytes(), nil
}

// modeBits are the tar header's setuid/setgid/sticky bits (c_ISUID…).
func modeBits(m fs.FileMode) int64 {
	var b int64
	if m&fs.ModeSetuid != 0 {
		b |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		b |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		b |= 0o1000
	}
	return b
}

func cleanPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("ociimage: path %q is not absolute", p)
	}
	c := path.Clean(p)
	if c == "/" {
		return "", fmt.Errorf("ociimage: path %q is the root", p)
	}
	return c, nil
}
