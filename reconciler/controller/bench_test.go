package controller_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/apis/meta"

	"github.com/weft-dev/weft/internal/meshgen"
	"github.com/weft-dev/weft/reconciler/pipeline"
	"github.com/weft-dev/weft/reconciler/pipeline/source/flux"
	"github.com/weft-dev/weft/reconciler/xds"
)

// BenchmarkFluxArtifactReconcile is what the controller spends on a new
// revision of a 1,000-service mesh (internal/meshgen: 2 versions, 2
// endpoints and 3 dependencies per service; 2,000 proxy classes) before
// the proxies are sent anything: fetch (Flux's ArchiveFetcher: HTTP
// download of the gzipped tarball, digest check, untar) + the pipeline
// (load, vet with every default policy, compile, publish: every class's
// snapshot built and checked by the xDS server). fetch-ms and
// pipeline-ms are the two parts per revision; every iteration is a new
// revision of the same artifact.
func BenchmarkFluxArtifactReconcile(b *testing.B) {
	src := meshgen.Source(meshgen.Spec{Services: 1000, Endpoints: 2, Calls: 3})
	src = strings.ReplaceAll(src, "\t\t\tports: http: port: 8080\n", "\t\t\tports: http: port: 8080\n\t\t\ttimeout: \"3s\"\n")
	body, digest := tarGz(b, map[string]string{
		"mesh/cue.mod/module.cue": "module: \"example.com/gen\"\nlanguage: version: \"v0.17.0\"\n",
		"mesh/mesh.cue":           src,
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	defer srv.Close()
	xs := xds.New(xds.Options{Logger: slog.New(slog.DiscardHandler)})
	defer xs.Stop()
	p := &pipeline.Pipeline{Gate: &pipeline.Gate{}, Publisher: xs}
	f := flux.NewFetcher(flux.Options{TempDir: b.TempDir()})
	ctx := context.Background()
	var fetching, running time.Duration
	b.ResetTimer()
	for i := range b.N {
		art := &meta.Artifact{URL: srv.URL + "/gen.tar.gz", Digest: digest, Revision: fmt.Sprintf("main@sha1:%040x", i+1)}
		t0 := time.Now()
		rev, err := f.Fetch(ctx, art, flux.Ref{Path: "mesh"})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := p.Reconcile(ctx, rev); err != nil {
			b.Fatal(err)
		}
		rev.Done()
		fetching += t1.Sub(t0)
		running += time.Since(t1)
	}
	b.ReportMetric(float64(fetching.Milliseconds())/float64(b.N), "fetch-ms")
	b.ReportMetric(float64(running.Milliseconds())/float64(b.N), "pipeline-ms")
	b.ReportMetric(float64(len(body))/1024, "artifact-KiB")
}

// tarGz is a gzipped tarball of files and its sha256 digest.
func tarGz(tb testing.TB, files map[string]string) ([]byte, string) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return buf.Bytes(), "sha256:" + hex.EncodeToString(sum[:])
}
