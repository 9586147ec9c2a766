package fluxtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Revision is the artifact revision that source-controller reports for a
// commit on a branch: "BRANCH@sha1:SHA".
func Revision(branch, sha string) string { return branch + "@sha1:" + sha }

// CreateGitRepository creates a GitRepository (namespace/name) that follows
// [Branch] of url. Its interval is an hour: a test gets new revisions
// fetched with [SourceController.RequestReconcile], not by waiting.
func (sc *SourceController) CreateGitRepository(namespace, name, url string) *sourcev1.GitRepository {
	sc.t.Helper()
	repo := &sourcev1.GitRepository{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: sourcev1.GitRepositorySpec{
			URL:       url,
			Reference: &sourcev1.GitRepositoryRef{Branch: Branch},
			Interval:  metav1.Duration{Duration: time.Hour},
			Timeout:   &metav1.Duration{Duration: 30 * time.Second},
		},
	}
	if err := sc.Client.Create(context.Background(), repo); err != nil {
		sc.t.Fatalf("fluxtest: creating GitRepository %s/%s: %v", namespace, name, err)
	}
	return repo
}

// RequestReconcile sets the reconcile.fluxcd.io/requestedAt annotation on the
// GitRepository, as `flux reconcile source git` does, and returns its value.
func (sc *SourceController) RequestReconcile(key client.ObjectKey) string {
	t := sc.t
	t.Helper()
	value := time.Now().Format(time.RFC3339Nano)
	repo := &sourcev1.GitRepository{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, meta.ReconcileRequestAnnotation, value)
	if err := sc.Client.Patch(context.Background(), repo, client.RawPatch("application/merge-patch+json", []byte(patch))); err != nil {
		t.Fatalf("fluxtest: annotating GitRepository %s: %v", key, err)
	}
	return value
}

// WaitForArtifact waits until the GitRepository key is Ready with an artifact
// of the given revision (see [Revision]) and returns that artifact. It
// fails the test after timeout, showing the object's conditions.
func (sc *SourceController) WaitForArtifact(key client.ObjectKey, revision string, timeout time.Duration) *meta.Artifact {
	sc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	repo := &sourcev1.GitRepository{}
	for {
		err := sc.Client.Get(ctx, key, repo)
		if err == nil && apimeta.IsStatusConditionTrue(repo.Status.Conditions, meta.ReadyCondition) &&
			repo.Status.Artifact.HasRevision(revision) {
			return repo.Status.Artifact
		}
		select {
		case <-ctx.Done():
			sc.t.Fatalf("fluxtest: GitRepository %s has no Ready artifact of revision %s after %s (get: %v)\n%s",
				key, revision, timeout, err, describe(repo))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func describe(repo *sourcev1.GitRepository) string {
	var b strings.Builder
	if a := repo.Status.Artifact; a != nil {
		fmt.Fprintf(&b, "artifact: revision %s digest %s url %s\n", a.Revision, a.Digest, a.URL)
	}
	for _, c := range repo.Status.Conditions {
		fmt.Fprintf(&b, "condition %s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	return b.String()
}

// FetchArtifact downloads the artifact from its URL, checks that its
// SHA-256 is the artifact's digest ("sha256:HEX"), and returns the regular
// files of the gzipped tarball (slash-separated path -> content). Any
// mismatch or malformed archive fails the test.
func FetchArtifact(t testing.TB, a *meta.Artifact) map[string]string {
	t.Helper()
	files, err := fetchArtifact(a)
	if err != nil {
		t.Fatalf("fluxtest: artifact %s (%s): %v", a.Revision, a.URL, err)
	}
	return files
}

func fetchArtifact(a *meta.Artifact) (map[string]string, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Get(a.URL)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET: %s", resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != a.Digest {
		return nil, fmt.Errorf("downloaded %d bytes with digest %s, status.artifact.digest is %s", len(data), got, a.Digest)
	}
	return untar(data)
}

func untar(data []byte) (map[string]string, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not gzip: %w", err)
	}
	tr := tar.NewReader(zr)
	files := map[string]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("tar: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("tar %s: %w", h.Name, err)
		}
		files[h.Name] = string(b)
	}
}
