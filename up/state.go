package up

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/weft-dev/weft/schema"
)

// DefaultStateDir is where `weft up` keeps the state of the mesh
// repository at dir, environment env (the CA root and its key, the
// workload tokens, logs) when no --state-dir is given: outside the
// repository, so that no `git add -A` stages a secret. It is
// $XDG_STATE_HOME/weft/<name>-<hash>, else ~/.local/state/weft/<name>-<hash>,
// where name is the module root's base name (with "-<env>") and hash the
// first 12 hex digits of the SHA-256 of its absolute path and env: one
// state per repository and environment, found again by `weft status`.
// dir and env are resolved with schema.ResolveEnv first.
func DefaultStateDir(dir, env string) (string, error) {
	dir, env = schema.ResolveEnv(dir, env)
	root := schema.ModuleRoot(dir)
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real // the same repository by any path
	}
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" || !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("state directory: no $XDG_STATE_HOME and no home directory (%v): pass --state-dir", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	name := filepath.Base(root)
	if env != "" {
		name += "-" + env
	}
	sum := sha256.Sum256([]byte(root + "\x00" + env))
	return filepath.Join(base, "weft", name+"-"+hex.EncodeToString(sum[:])[:12]), nil
}

// checkStateDir refuses a state directory that a `git add -A` would
// stage: one inside a git work tree that git does not ignore (git
// check-ignore). Outside any work tree, or without git, it is fine.
func checkStateDir(state string) error {
	probe := state
	for {
		if fi, err := os.Stat(probe); err == nil && fi.IsDir() {
			break
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			return nil
		}
		probe = parent
	}
	top, err := exec.Command("git", "-C", probe, "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return nil // not in a work tree (or no git)
	}
	tree := strings.TrimSpace(string(top))
	realState := state
	if r, err := filepath.EvalSymlinks(probe); err == nil {
		rest, _ := filepath.Rel(probe, state)
		realState = filepath.Join(r, rest)
	}
	rel, err := filepath.Rel(tree, realState)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return nil
	}
	key := filepath.Join(rel, "ca", "root-key.pem")
	cmd := exec.Command("git", "-C", tree, "check-ignore", "-q", "--", key)
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil // ignored
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return fmt.Errorf("state directory %s is inside the git work tree %s and git does not ignore it: "+
			"the CA root key and the workload tokens it holds would be committed by `git add -A`; "+
			"add /%s/ to %s, or leave --state-dir out (the default is outside the repository)",
			state, tree, filepath.ToSlash(rel), filepath.Join(tree, ".gitignore"))
	default:
		return fmt.Errorf("state directory %s: git check-ignore in %s: %v", state, tree, err)
	}
}

// maxSocketPath is the longest unix socket path the agents accept
// (sun_path is 108 bytes on Linux, 104 on BSDs).
const maxSocketPath = 100

// runtimeDir is a short private directory for the agents' unix sockets,
// which a long state directory would push over maxSocketPath:
// $XDG_RUNTIME_DIR/weft/<hash>, else /tmp/weft-<uid>/<hash>, where hash
// is the first 12 hex digits of the SHA-256 of the state directory. Each
// directory weft creates there is 0700; an existing one must belong to
// this user and be 0700, or it is refused (another user could otherwise
// reach the agents' sockets, which serve workload keys).
func runtimeDir(state string) (string, error) {
	sum := sha256.Sum256([]byte(state))
	hash := hex.EncodeToString(sum[:])[:12]
	var base string
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && filepath.IsAbs(x) {
		if fi, err := os.Stat(x); err == nil && fi.IsDir() {
			base = filepath.Join(x, "weft")
		}
	}
	if base == "" || len(filepath.Join(base, hash))+len("/x.sock")+32 > maxSocketPath {
		base = filepath.Join(os.TempDir(), "weft-"+strconv.Itoa(os.Getuid()))
	}
	for _, d := range []string{base, filepath.Join(base, hash)} {
		if err := privateDir(d); err != nil {
			return "", err
		}
	}
	return filepath.Join(base, hash), nil
}

// privateDir makes d (mode 0700) or checks that it is a directory of
// this user's with mode 0700.
func privateDir(d string) error {
	if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("runtime directory: %w", err)
	}
	fi, err := os.Lstat(d)
	if err != nil {
		return fmt.Errorf("runtime directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("runtime directory %s is not a directory", d)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("runtime directory %s belongs to uid %d, not to this user (%d): remove it", d, st.Uid, os.Getuid())
	}
	if fi.Mode().Perm() != 0o700 {
		return fmt.Errorf("runtime directory %s has mode %#o, want 0700: remove it or chmod 700 it", d, fi.Mode().Perm())
	}
	return nil
}

// socketPath is the agent socket of a node in the runtime directory: the
// node id, or its hash when that would be too long.
func socketPath(runtime, nodeID string) string {
	p := filepath.Join(runtime, nodeID+".sock")
	if len(p) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(nodeID))
	return filepath.Join(runtime, hex.EncodeToString(sum[:])[:16]+".sock")
}
