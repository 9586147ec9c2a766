package schema

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ResolveEnv is the one place that says which repository and environment
// a command line names. Every command (`weft vet`, `build`, `up`, `status`)
// and Load itself resolve through it, so `weft vet DIR/prod` and
// `weft vet DIR --env prod` load, vet and compile the same thing:
//
//   - env given: dir and env as they are (Load finds the environment's
//     directory, DIR/environments/ENV or DIR/ENV: see EnvDir);
//   - dir is an environment directory of its CUE module (ROOT/environments/NAME
//     or ROOT/NAME, NAME among Environments(ROOT)): the module root
//     (absolute) and NAME;
//   - otherwise dir and "" (the base).
func ResolveEnv(dir, env string) (repo, environment string) {
	if env != "" {
		return dir, env
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return dir, ""
	}
	root := moduleRoot(abs, abs)
	if root == abs {
		return dir, ""
	}
	name := filepath.Base(abs)
	for _, e := range Environments(root) {
		if d, err := EnvDir(root, e); e == name && err == nil && d == abs {
			return root, name
		}
	}
	return dir, ""
}

// EnvDir returns the directory of environment env of the repository at dir
// (absolute): DIR/environments/ENV, else DIR/ENV. An empty env is the
// base, dir itself. An env that is not a plain directory name, or that
// names no directory, is an error listing the known environments.
func EnvDir(dir, env string) (string, error) {
	if env == "" {
		return dir, nil
	}
	if strings.ContainsAny(env, `/\`) || env == "." || env == ".." || strings.HasPrefix(env, ".") {
		return "", fmt.Errorf("environment %q: must be a directory name such as dev", env)
	}
	for _, d := range []string{filepath.Join(dir, "environments", env), filepath.Join(dir, env)} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d, nil
		}
	}
	return "", fmt.Errorf("environment %q: no directory %s or %s (known: %s)",
		env, filepath.Join(dir, "environments", env), filepath.Join(dir, env), strings.Join(Environments(dir), ", "))
}

// Environments lists the environment overlays of a mesh repository: the
// subdirectories of DIR/environments, or else of DIR, holding CUE files
// (cue.mod and hidden directories excluded), sorted.
func Environments(dir string) []string {
	for _, base := range []string{filepath.Join(dir, "environments"), dir} {
		if envs := envsIn(base); len(envs) > 0 {
			return envs
		}
	}
	return nil
}

func envsIn(base string) []string {
	var envs []string
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		if !e.IsDir() || e.Name() == "cue.mod" || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if files, _ := filepath.Glob(filepath.Join(base, e.Name(), "*.cue")); len(files) > 0 {
			envs = append(envs, e.Name())
		}
	}
	sort.Strings(envs)
	return envs
}
