package schema

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed all:scaffold
var scaffoldFS embed.FS

// Scaffold writes a new mesh repository into dir: cue.mod with the schema
// (so the plain `cue vet ./...` works without weft), a small base mesh and
// dev and prod environments. It refuses to overwrite existing files.
func Scaffold(dir, module string) error {
	files := map[string][]byte{SchemaFile: schemaSource}
	err := fs.WalkDir(scaffoldFS, "scaffold", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := scaffoldFS.ReadFile(p)
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(strings.TrimPrefix(p, "scaffold/"), ".tmpl")
		files[filepath.FromSlash(name)] = []byte(strings.ReplaceAll(string(b), "{{module}}", module))
		return nil
	})
	if err != nil {
		return fmt.Errorf("read scaffold: %w", err)
	}
	for name := range files {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("init %s: %s already exists; choose an empty directory", dir, name)
		}
	}
	for _, name := range SortedNames(files) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return fmt.Errorf("init: %w", err)
		}
	}
	return nil
}

// SortedNames returns the keys of a file map in order.
func SortedNames(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
