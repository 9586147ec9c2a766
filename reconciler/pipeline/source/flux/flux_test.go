package flux_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/internal/fluxtest"
	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/pipeline/source/flux"
)

// repoFiles is a mesh repository whose mesh lives in mesh/ (with a dev
// environment) and whose organisation policies live in org/.
func repoFiles(reviewsRoute string) map[string]string {
	return map[string]string{
		"README.md":                     "not part of the mesh\n",
		"mesh/cue.mod/module.cue":       "module: \"example.com/shop\"\nlanguage: version: \"v0.17.0\"\n",
		"mesh/environments/dev/dev.cue": "package shop\n",
		"mesh/mesh.cue": `package shop

import "weft.dev/weft"

mesh: weft.#Mesh & {
	name:        "shop"
	trustDomain: "shop.example"
	defaults: {namespace: "shop", mtls: "disable"}
	services: {
		frontend: {
			ports: http: {port: 8080, protocol: "http"}
			versions: v1: {labels: version: "v1", endpoints: ["127.0.0.1:8080"]}
			calls: ["reviews"]
			timeout:   "2s"
			rateLimit: {requestsPerSecond: 100, burst: 200}
		}
		reviews: {
			ports: http: {port: 9080, protocol: "http"}
			versions: v1: {labels: version: "v1", endpoints: ["127.0.0.1:9080"]}
			timeout: "2s"
			routes: all: {
				match: path: prefix: "/"
				headers: request: set: {"x-mesh-route": "` + reviewsRoute + `"}
			}
		}
	}
}
`,
		"org/team.rego": `package weft.rules.no_route_named_forbidden

deny contains {"msg": "route header x-mesh-route may not be \"forbidden\"", "path": ["mesh", "services", "reviews"]} if {
	input.mesh.services.reviews.routes.all.headers.request.set["x-mesh-route"] == "forbidden"
}
`,
	}
}

// TestFetchAndVetAFluxArtifact: a commit on a real git server becomes a
// GitRepository artifact of the real source-controller; Fetch downloads
// it, checks its digest and unpacks it; the pipeline's gate vets the
// mesh in spec.path with the policies of spec.policies.
// Source.Next returns the artifact, then, after a second commit, the next
// one.
func TestFetchAndVetAFluxArtifact(t *testing.T) {
	env := kubetest.Start(t, kubetest.Options{Scheme: fluxtest.Scheme()})
	srv := fluxtest.StartGitServer(t)
	sc := fluxtest.StartSourceController(t, env)
	repo := srv.CreateRepo(t, "shop")
	first := repo.Commit(t, repoFiles("one"), "first")
	key := client.ObjectKey{Namespace: "default", Name: "shop"}
	sc.CreateGitRepository(t, key.Namespace, key.Name, repo.URL)
	art := sc.WaitForArtifact(t, key, fluxtest.Revision(fluxtest.Branch, first), 2*time.Minute)

	ctx := context.Background()
	f := flux.NewFetcher(flux.Options{TempDir: t.TempDir()})
	ref := flux.Ref{Path: "./mesh", Policies: []string{"org"}}
	rev, err := f.Fetch(ctx, art, ref)
	if err != nil {
		t.Fatal(err)
	}
	if rev.Name != art.Revision || filepath.Base(rev.Dir) != "mesh" || len(rev.PolicyDirs) != 1 {
		t.Errorf("revision %+v, want name %s, dir .../mesh and one policy folder", rev, art.Revision)
	}
	gate := &pipeline.Gate{}
	rep, err := gate.Vet(ctx, rev.Dir, pipeline.VetOptions{Env: "dev", Revision: rev.Name, PolicyDirs: rev.PolicyDirs})
	if err != nil || rep.Failed() {
		t.Fatalf("vet of the fetched artifact: %v %+v", err, rep)
	}
	root := filepath.Dir(rev.Dir)
	rev.Done()
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("Done left %s: %v", root, err)
	}

	// The organisation's policy denies the next commit.
	second := repo.Commit(t, repoFiles("forbidden"), "second")
	sc.RequestReconcile(t, key)
	art2 := sc.WaitForArtifact(t, key, fluxtest.Revision(fluxtest.Branch, second), 2*time.Minute)
	rev2, err := f.Fetch(ctx, art2, ref)
	if err != nil {
		t.Fatal(err)
	}
	defer rev2.Done()
	rep, err = gate.Vet(ctx, rev2.Dir, pipeline.VetOptions{Env: "dev", Revision: rev2.Name, PolicyDirs: rev2.PolicyDirs})
	if err != nil {
		t.Fatal(err)
	}
	var found string
	for _, e := range rep.Envs {
		for _, fd := range e.Findings {
			if fd.Rule == "no_route_named_forbidden" {
				found = fmt.Sprintf("%s:%d", fd.Pos.File, fd.Pos.Line)
			}
		}
	}
	if found != "mesh.cue:17" { // relative to the CUE module, as weft vet reports it
		t.Errorf("the org policy's finding is at %q, want mesh.cue:17 (services.reviews)", found)
	}

	// Source.Next: the current artifact at once, then nothing new until
	// the next commit.
	src := &flux.Source{Fetcher: f, Ref: ref, Reader: sc.Client, Kind: sourcev1.GitRepositoryKind, Key: key, Poll: 100 * time.Millisecond}
	got, err := src.Next(ctx)
	if err != nil || got.Name != art2.Revision {
		t.Fatalf("Next = %q, %v; want %s", got.Name, err, art2.Revision)
	}
	got.Done()
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if got, err := src.Next(short); err != context.DeadlineExceeded {
		t.Fatalf("Next with no new artifact = %q, %v; want the deadline", got.Name, err)
	}
	third := repo.Commit(t, repoFiles("three"), "third")
	sc.RequestReconcile(t, key)
	got, err = src.Next(ctx)
	if err != nil || got.Name != fluxtest.Revision(fluxtest.Branch, third) {
		t.Fatalf("Next after a commit = %q, %v; want %s", got.Name, err, fluxtest.Revision(fluxtest.Branch, third))
	}
	got.Done()
}

// tarball is a gzipped tar of files.
func tarball(t *testing.T, files map[string]string) ([]byte, string) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), "sha256:" + hex.EncodeToString(sum[:])
}

// The failures a real source-controller does not produce on demand (a
// tampered or oversized download, a 404, a path that is not there) are
// served by a test server: each is typed as the controller needs it.
func TestFetchFailures(t *testing.T) {
	body, digest := tarball(t, map[string]string{"mesh/mesh.cue": "package shop\n", "big.txt": strings.Repeat("x", 4096)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gone.tar.gz" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	art := func(path, digest string) *meta.Artifact {
		return &meta.Artifact{URL: srv.URL + path, Digest: digest, Revision: "main@sha1:0123456789ab"}
	}
	for _, tt := range []struct {
		name     string
		opts     flux.Options
		art      *meta.Artifact
		ref      flux.Ref
		stalling bool
		want     string
	}{
		{"tampered", flux.Options{}, art("/a.tar.gz", "sha256:"+strings.Repeat("0", 64)), flux.Ref{Path: "mesh"}, false, "computed digest doesn't match"},
		{"gone", flux.Options{}, art("/gone.tar.gz", digest), flux.Ref{Path: "mesh"}, false, "not found"},
		{"no path", flux.Options{}, art("/a.tar.gz", digest), flux.Ref{Path: "./environments"}, true, `spec.path "environments" is not in the artifact`},
		{"no policy folder", flux.Options{}, art("/a.tar.gz", digest), flux.Ref{Path: "mesh", Policies: []string{"org"}}, true, `spec.policies "org" is not in the artifact`},
		{"path leaves", flux.Options{}, art("/a.tar.gz", digest), flux.Ref{Path: "../etc"}, true, "must be relative and stay inside the artifact"},
		{"download limit", flux.Options{MaxDownloadBytes: 64}, art("/a.tar.gz", digest), flux.Ref{Path: "mesh"}, true, "over the download limit of 64 bytes (--artifact-max-download-size)"},
		{"untar limit", flux.Options{MaxUntarBytes: 1024}, art("/a.tar.gz", digest), flux.Ref{Path: "mesh"}, true, "unpacks to more than 1024 bytes (--artifact-max-untar-size)"},
		{"no artifact", flux.Options{}, nil, flux.Ref{}, false, "the source has no artifact yet"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.TempDir, tt.opts.Retries = t.TempDir(), -1
			_, err := flux.NewFetcher(tt.opts).Fetch(context.Background(), tt.art, tt.ref)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Fetch: %v, want %q", err, tt.want)
			}
			if pipeline.IsStalling(err) != tt.stalling || pipeline.IsRetryable(err) == tt.stalling || pipeline.StepOf(err) != "fetch" {
				t.Errorf("Fetch: %v: stalling %v retryable %v step %q, want stalling=%v at step fetch",
					err, pipeline.IsStalling(err), pipeline.IsRetryable(err), pipeline.StepOf(err), tt.stalling)
			}
			if entries, _ := os.ReadDir(tt.opts.TempDir); len(entries) > 0 {
				t.Errorf("a failed fetch left %d entries in the temp dir", len(entries))
			}
		})
	}
}

func TestRelPaths(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/weft-artifact-123/mesh/mesh.cue:3:1: bad":                            "mesh/mesh.cue:3:1: bad",
		"see also: /var/tmp/x/weft-artifact-9/a.cue:1:2 and weft-artifact-1/b.cue": "see also: a.cue:1:2 and b.cue",
		"no path here": "no path here",
	} {
		if got := flux.RelPaths(in); got != want {
			t.Errorf("RelPaths(%q) = %q, want %q", in, got, want)
		}
	}
}
