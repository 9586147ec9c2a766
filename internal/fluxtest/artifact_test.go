package fluxtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/apis/meta"
)

// A tampered download (which the real source-controller does not produce)
// is refused with both digests; an intact one yields its files.
func TestFetchArtifactVerifiesDigest(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	body := "package shop\n"
	if err := tw.WriteHeader(&tar.Header{Name: "mesh.cue", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	tarball := buf.Bytes()
	sum := sha256.Sum256(tarball)
	digest := "sha256:" + hex.EncodeToString(sum[:])

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(tarball) }))
	defer srv.Close()

	files, err := fetchArtifact(&meta.Artifact{URL: srv.URL + "/a.tar.gz", Digest: digest})
	if err != nil || files["mesh.cue"] != body {
		t.Fatalf("intact artifact: files %v, err %v", files, err)
	}
	wrong := "sha256:" + strings.Repeat("0", 64)
	_, err = fetchArtifact(&meta.Artifact{URL: srv.URL + "/a.tar.gz", Digest: wrong})
	if err == nil || !strings.Contains(err.Error(), "with digest "+digest+", status.artifact.digest is "+wrong) {
		t.Fatalf("tampered artifact: err %v, want both digests", err)
	}
}
