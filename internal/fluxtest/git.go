package fluxtest

import (
	"context"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/internal/tooltest"
)

// Branch is the branch that [GitServer.CreateRepo] creates and
// [Repo.Commit] pushes to.
const Branch = "main"

// GitServer serves the bare repositories under Root over git's smart HTTP
// protocol at URL (http://127.0.0.1:PORT), pushes included.
type GitServer struct {
	URL  string
	Root string
	t    testing.TB
}

// StartGitServer starts git-http-backend behind net/http/cgi on a free
// 127.0.0.1 port, serving t.TempDir(); t.Cleanup stops it. It fails the
// test if git or its git-http-backend is missing (Debian: package git).
func StartGitServer(t testing.TB) *GitServer {
	t.Helper()
	backend := filepath.Join(strings.TrimSpace(git(t, "", "--exec-path")), "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("fluxtest: git's HTTP server %s: %v (install git)", backend, err)
	}
	s := &GitServer{Root: t.TempDir(), t: t}
	stderr := &tooltest.Output{}
	h := &cgi.Handler{
		Path: backend,
		Env: []string{
			"GIT_PROJECT_ROOT=" + s.Root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"HOME=" + s.Root,
		},
		Stderr: stderr,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if t.Failed() && stderr.String() != "" {
			t.Logf("--- git-http-backend stderr:\n%s", stderr)
		}
	})
	s.URL = "http://" + ln.Addr().String()
	return s
}

// Repo is a repository on a [GitServer] and a working clone of it.
type Repo struct {
	// URL is the repository's clone URL, for a GitRepository's spec.url.
	URL string
	// Dir is the working clone that Commit writes into.
	Dir string
	t   testing.TB
}

// CreateRepo creates the bare repository NAME.git (default branch [Branch],
// pushes allowed) and a working clone of it in t.TempDir().
func (s *GitServer) CreateRepo(name string) *Repo {
	s.t.Helper()
	bare := filepath.Join(s.Root, name+".git")
	git(s.t, "", "init", "--quiet", "--bare", "--initial-branch="+Branch, bare)
	git(s.t, bare, "config", "http.receivepack", "true")
	r := &Repo{URL: s.URL + "/" + name + ".git", Dir: filepath.Join(s.t.TempDir(), name), t: s.t}
	git(s.t, "", "init", "--quiet", "--initial-branch="+Branch, r.Dir)
	git(s.t, r.Dir, "remote", "add", "origin", r.URL)
	return r
}

// Commit writes files (slash-separated path relative to the repository ->
// content), commits everything with message and pushes it to [Branch] over
// HTTP. It returns the commit's full SHA-1.
func (r *Repo) Commit(files map[string]string, message string) string {
	r.t.Helper()
	for name, content := range files {
		p := filepath.Join(r.Dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	git(r.t, r.Dir, "add", "--all")
	git(r.t, r.Dir, "commit", "--quiet", "--allow-empty", "-m", message)
	git(r.t, r.Dir, "push", "--quiet", "origin", "HEAD:refs/heads/"+Branch)
	return strings.TrimSpace(git(r.t, r.Dir, "rev-parse", "HEAD"))
}

// git runs git in dir ("" for the current one) with a configuration of its
// own (no system or user config, a fixed identity, no prompts) and returns
// its stdout; a failure fails the test with git's output.
func git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+os.DevNull,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=weft test", "GIT_AUTHOR_EMAIL=test@weft.dev",
		"GIT_COMMITTER_NAME=weft test", "GIT_COMMITTER_EMAIL=test@weft.dev",
	)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s (in %s): %v\n%s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return string(out)
}
