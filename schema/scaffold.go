package schema

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed all:scaffold
var scaffoldFS embed.FS

// GitIgnore is the .gitignore `weft init` writes (or completes): weft's
// state directory if given inside the repository, and build output.
const GitIgnore = ".gitignore"

// Scaffold writes a new mesh repository into dir: cue.mod with the schema
// (so the plain `cue vet ./...` works without weft), a small base mesh,
// dev and prod environments, and a .gitignore that keeps weft's state
// (CA keys, tokens) and build output out of git. It refuses to overwrite
// existing files, but for .gitignore, which gets the lines it lacks.
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
		if name == "gitignore" {
			name = GitIgnore // a dot file would not be embedded without all:
		}
		files[filepath.FromSlash(name)] = []byte(strings.ReplaceAll(string(b), "{{module}}", module))
		return nil
	})
	if err != nil {
		return fmt.Errorf("read scaffold: %w", err)
	}
	ignore := files[GitIgnore]
	delete(files, GitIgnore)
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
	return completeGitIgnore(filepath.Join(dir, GitIgnore), ignore)
}

// completeGitIgnore writes want into the .gitignore at p, or appends the
// lines of want that the existing file lacks.
func completeGitIgnore(p string, want []byte) error {
	have, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.WriteFile(p, want, 0o644); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	present := map[string]bool{}
	for _, l := range strings.Split(string(have), "\n") {
		present[strings.TrimSpace(l)] = true
	}
	var add []string
	for _, l := range strings.Split(string(want), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") && !present[l] {
			add = append(add, l)
		}
	}
	if len(add) == 0 {
		return nil
	}
	text := string(have)
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	text += "# weft: local state and build output\n" + strings.Join(add, "\n") + "\n"
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		return fmt.Errorf("init: %w", err)
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
