package main

import (
	"errors"
	"os/exec"
	"strings"

	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

var errorsAs = errors.As

// loadModel loads DIR for one environment; an empty revision is taken
// from git.
func loadModel(dir, env, revision string) (*mesh.Model, error) {
	if revision == "" {
		revision = gitRevision(dir)
	}
	return schema.Load(dir, schema.Options{Env: env, Revision: revision})
}

// gitRevision is the commit checked out in dir ("-dirty" when the work
// tree has changes), or "local" outside a git repository.
func gitRevision(dir string) string {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "local"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", dir, "status", "--porcelain", "--", ".").Output(); err == nil && len(st) > 0 {
		rev += "-dirty"
	}
	return rev
}
