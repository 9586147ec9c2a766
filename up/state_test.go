package up_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/sidecar/agent"
	"github.com/weft-dev/weft/up"
)

// Issue 8 item 6, the attack: `weft init`, `git commit`, `weft up .`, then
// `git add -A` must stage nothing — no CA root key, no token. The state is
// outside the repository by default; a --state-dir inside it is refused
// unless git ignores it, and the .gitignore of weft init ignores .weft/.
// The state directory here is long enough that sockets in it would not
// fit a unix socket path: they live in the short runtime directory.
func TestInitCommitUpStagesNoSecret(t *testing.T) {
	stateHome := filepath.Join(t.TempDir(), strings.Repeat("a-long-state-home-", 5))
	t.Setenv("XDG_STATE_HOME", stateHome)
	repo := t.TempDir()
	if err := schema.Scaffold(repo, "example.com/mesh"); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "init", "-q", "-b", "main")
	git(t, repo, "add", "-A")
	git(t, repo, "commit", "-q", "-m", "weft init")

	tm := startMesh(t, repo, func(o *up.Options) { o.StateDir = "" })
	state, err := up.DefaultStateDir(repo, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(state, filepath.Join(stateHome, "weft")+string(filepath.Separator)) || len(state) < 100 {
		t.Fatalf("default state dir %s, want a long one below $XDG_STATE_HOME/weft", state)
	}
	if _, err := os.Stat(filepath.Join(state, "ca", ca.RootKeyFileName)); err != nil {
		t.Fatalf("the CA root key is not in the default state dir: %v", err)
	}
	if addr, err := up.StatusAddr(state); err != nil || addr != tm.StatusAddr() {
		t.Errorf("weft status finds %q, %v in the default state dir; want %s", addr, err, tm.StatusAddr())
	}
	if n := len(tm.Instances()); n != 3 {
		t.Errorf("%d instances, want web and api's 3", n)
	}
	stagesNothing(t, repo)

	// A --state-dir inside the work tree that git does not ignore.
	_, err = up.Start(context.Background(), up.Options{Dir: repo, StateDir: filepath.Join(repo, "state")})
	if err == nil || !strings.Contains(err.Error(), "is inside the git work tree") || !strings.Contains(err.Error(), "git add -A") {
		t.Errorf("up.Start with an unignored state dir in the repository = %v, want a refusal", err)
	}
	// .weft/, which weft init's .gitignore ignores, is accepted.
	m, err := up.Start(context.Background(), up.Options{Dir: repo, StateDir: filepath.Join(repo, ".weft"), IPBase: ipBase(),
		RunApp: up.InProcessDemoApp, RunSidecar: func(ctx context.Context, _ *agent.Agent) error { <-ctx.Done(); return nil }})
	if err != nil {
		t.Fatalf("up.Start with .weft/ in the repository: %v", err)
	}
	if err := m.Stop(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(repo, ".weft", "ca", ca.RootKeyFileName)); err != nil {
		t.Fatal(err)
	}
	stagesNothing(t, repo)
}

// stagesNothing runs `git add -A` in repo and fails if anything is staged.
func stagesNothing(t *testing.T, repo string) {
	t.Helper()
	git(t, repo, "add", "-A")
	if staged := git(t, repo, "diff", "--cached", "--name-only"); staged != "" {
		t.Errorf("git add -A staged:\n%s", staged)
	}
}

// A CA root key that group or others can read stops weft up with what to
// do.
func TestUpRefusesReadableRootKey(t *testing.T) {
	dir := t.TempDir()
	writeMesh(t, dir, splitWith(100, 0))
	state := t.TempDir()
	if _, err := ca.New(ca.Config{TrustDomain: "t.example", StateDir: filepath.Join(state, "ca")}); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(state, "ca", ca.RootKeyFileName)
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := up.Start(ctx, up.Options{Dir: dir, StateDir: state, IPBase: ipBase(), Poll: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "root key "+key+" has mode 0644") || !strings.Contains(err.Error(), "--allow-insecure-key-permissions") {
		t.Fatalf("up.Start with a 0644 root key = %v, want a refusal", err)
	}
}
