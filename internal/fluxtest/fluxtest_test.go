package fluxtest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/internal/fluxtest"
	"github.com/weft-dev/weft/internal/kubetest"
)

// TestGitServer: what Repo.Commit pushed is what a plain `git clone` of the
// server's URL gets.
func TestGitServer(t *testing.T) {
	srv := fluxtest.StartGitServer(t)
	repo := srv.CreateRepo("mesh")
	sha := repo.Commit(map[string]string{"mesh.cue": "package shop\n", "env/dev/values.cue": "package shop\nreplicas: 2\n"}, "first")

	dir := filepath.Join(t.TempDir(), "clone")
	out, err := exec.Command("git", "clone", "--quiet", "--branch", fluxtest.Branch, repo.URL, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("git clone %s: %v\n%s", repo.URL, err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "env", "dev", "values.cue"))
	if err != nil || string(got) != "package shop\nreplicas: 2\n" {
		t.Fatalf("cloned env/dev/values.cue = %q (%v), want what was committed", got, err)
	}
	head, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil || strings.TrimSpace(string(head)) != sha {
		t.Fatalf("cloned HEAD %q (%v), want the pushed commit %s", head, err, sha)
	}
}

// TestGitRepositoryArtifact: the real source-controller turns a commit on
// the loopback git server into an artifact whose bytes match
// status.artifact.digest, and a second commit, announced with
// reconcile.fluxcd.io/requestedAt, into a new revision.
func TestGitRepositoryArtifact(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{})
	srv := fluxtest.StartGitServer(t)
	sc := fluxtest.StartSourceController(t, env)

	repo := srv.CreateRepo("mesh")
	first := repo.Commit(map[string]string{"mesh.cue": "package shop\nrevision: 1\n"}, "first")
	key := client.ObjectKey{Namespace: "default", Name: "mesh"}
	created := time.Now()
	sc.CreateGitRepository(key.Namespace, key.Name, repo.URL)
	art := sc.WaitForArtifact(key, fluxtest.Revision(fluxtest.Branch, first), 2*time.Minute)
	t.Logf("GitRepository created -> artifact Ready: %s", time.Since(created).Round(time.Millisecond))
	if !strings.HasPrefix(art.URL, sc.StorageURL+"/") || !strings.HasPrefix(art.Digest, "sha256:") {
		t.Errorf("artifact url %s digest %s, want a sha256 digest and a URL under %s", art.URL, art.Digest, sc.StorageURL)
	}
	if got := fluxtest.FetchArtifact(t, art)["mesh.cue"]; got != "package shop\nrevision: 1\n" {
		t.Errorf("first artifact's mesh.cue = %q, want the first commit's", got)
	}

	second := repo.Commit(map[string]string{"mesh.cue": "package shop\nrevision: 2\n"}, "second")
	pushed := time.Now()
	sc.RequestReconcile(key)
	art2 := sc.WaitForArtifact(key, fluxtest.Revision(fluxtest.Branch, second), 2*time.Minute)
	t.Logf("second commit pushed + requestedAt -> new artifact Ready: %s", time.Since(pushed).Round(time.Millisecond))
	if art2.Digest == art.Digest {
		t.Errorf("second artifact has the first one's digest %s", art.Digest)
	}
	if got := fluxtest.FetchArtifact(t, art2)["mesh.cue"]; got != "package shop\nrevision: 2\n" {
		t.Errorf("second artifact's mesh.cue = %q, want the second commit's", got)
	}
}
