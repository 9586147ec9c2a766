package ociimage

import (
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LibraryDirs are where [Tree.AddELF] looks for a DT_NEEDED library that
// the object's own DT_RUNPATH/DT_RPATH does not provide: the default
// search path of glibc's dynamic loader on Debian (multiarch folders
// first), for amd64 and arm64.
var LibraryDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
	"/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
	"/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// AddELF copies the build host's ELF program or library src to p (mode),
// then every shared library it needs, recursively: its program
// interpreter (PT_INTERP) and each DT_NEEDED name, found as the dynamic
// loader finds it (DT_RUNPATH or DT_RPATH with $ORIGIN, then
// [LibraryDirs]), skipping candidates of another ELF class or machine.
// A library lands at its host path with the folders resolved
// (/lib/x86_64-linux-gnu/libc.so.6 is stored as
// /usr/lib/x86_64-linux-gnu/libc.so.6 on a merged-/usr host, so the image
// needs the same /lib -> usr/lib links: [Tree.UsrMerge]); a library that
// is a symlink is stored as that symlink plus its target. A statically
// linked program adds nothing else. A library that cannot be found is an
// error naming the object that needs it.
func (t *Tree) AddELF(p, src string, mode fs.FileMode) error {
	if err := t.CopyFile(p, src, mode); err != nil {
		return err
	}
	seen := map[string]bool{}
	return t.addDeps(src, seen)
}

// AddLibrary copies the build host's shared object at hostPath (for a
// dlopen()ed module that no DT_NEEDED names, such as an xtables
// extension) to the same path in the image, with its own dependencies.
func (t *Tree) AddLibrary(hostPath string) error {
	seen := map[string]bool{}
	return t.addHostObject(hostPath, seen)
}

// UsrMerge adds Debian's merged-/usr links: /bin, /sbin, /lib and /lib64
// point into /usr.
func (t *Tree) UsrMerge() error {
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		if err := t.Symlink("/"+d, "usr/"+d); err != nil {
			return err
		}
	}
	return nil
}

func (t *Tree) addDeps(obj string, seen map[string]bool) error {
	f, err := elf.Open(obj)
	if err != nil {
		return fmt.Errorf("ociimage: %s: %w", obj, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_INTERP {
			continue
		}
		b := make([]byte, prog.Filesz)
		if _, err := prog.ReadAt(b, 0); err != nil {
			return fmt.Errorf("ociimage: %s: reading PT_INTERP: %w", obj, err)
		}
		interp := strings.TrimRight(string(b), "\x00")
		if err := t.addHostObject(interp, seen); err != nil {
			return fmt.Errorf("ociimage: program interpreter of %s: %w", obj, err)
		}
	}
	// A statically linked program has no dynamic section: no names.
	needed, err := f.DynString(elf.DT_NEEDED)
	if err != nil {
		return fmt.Errorf("ociimage: %s: DT_NEEDED: %w", obj, err)
	}
	if len(needed) == 0 {
		return nil
	}
	dirs, err := searchPath(f, obj)
	if err != nil {
		return err
	}
	for _, name := range needed {
		lib, err := findLibrary(name, dirs, f.Class, f.Machine)
		if err != nil {
			return fmt.Errorf("ociimage: %s needs %s: %w", obj, name, err)
		}
		if err := t.addHostObject(lib, seen); err != nil {
			return err
		}
	}
	return nil
}

// addHostObject stores hostPath (following symlinks, each stored) and its
// dependencies at their canonical host paths.
func (t *Tree) addHostObject(hostPath string, seen map[string]bool) error {
	for range 40 {
		dir, err := filepath.EvalSymlinks(filepath.Dir(hostPath))
		if err != nil {
			return fmt.Errorf("ociimage: %w", err)
		}
		p := filepath.Join(dir, filepath.Base(hostPath))
		if seen[p] {
			return nil
		}
		seen[p] = true
		st, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("ociimage: %w", err)
		}
		if st.Mode()&fs.ModeSymlink == 0 {
			if err := t.CopyFile(p, p, st.Mode().Perm()); err != nil {
				return err
			}
			return t.addDeps(p, seen)
		}
		target, err := os.Readlink(p)
		if err != nil {
			return fmt.Errorf("ociimage: %w", err)
		}
		if err := t.Symlink(p, target); err != nil {
			return err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		hostPath = target
	}
	return fmt.Errorf("ociimage: %s: too many levels of symbolic links", hostPath)
}

// searchPath is DT_RUNPATH (else DT_RPATH) with $ORIGIN expanded, then
// LibraryDirs.
func searchPath(f *elf.File, obj string) ([]string, error) {
	var own []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		vals, err := f.DynString(tag)
		if err != nil {
			return nil, fmt.Errorf("ociimage: %s: %v: %w", obj, tag, err)
		}
		for _, v := range vals {
			for _, d := range strings.Split(v, ":") {
				if d == "" {
					continue
				}
				d = strings.NewReplacer("$ORIGIN", filepath.Dir(obj), "${ORIGIN}", filepath.Dir(obj)).Replace(d)
				own = append(own, d)
			}
		}
		if len(own) > 0 {
			break
		}
	}
	return append(own, LibraryDirs...), nil
}

func findLibrary(name string, dirs []string, class elf.Class, machine elf.Machine) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	var tried []string
	for _, d := range dirs {
		p := filepath.Join(d, name)
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		ok := f.Class == class && f.Machine == machine
		f.Close()
		if ok {
			return p, nil
		}
		tried = append(tried, p+" (another ELF class or machine)")
	}
	if len(tried) > 0 {
		return "", fmt.Errorf("not found for %v %v; skipped %s", class, machine, strings.Join(tried, ", "))
	}
	return "", fmt.Errorf("not found in %s", strings.Join(dirs, ":"))
}
