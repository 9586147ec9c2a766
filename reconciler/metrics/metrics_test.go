package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/weft-dev/weft/reconciler/api/status"
)

// TestMetricsExposition: what /metrics shows after a served revision, a
// refused one, and with proxies in each state. (The live values — pushes,
// signings, in-sync Envoys — are checked against real Envoys and a real
// Prometheus in up.TestPrometheusGoldenSignals; a NACKing proxy is built
// here because a real one needs a config Envoy rejects.)
func TestMetricsExposition(t *testing.T) {
	expiry := time.Unix(1_900_000_000, 0)
	st := status.Status{Revision: "main@sha1:abc", Proxies: []status.Proxy{
		{NodeID: "a", Connected: true, InSync: true, Version: "v2", CertExpiry: expiry.Add(time.Hour)},
		{NodeID: "b", Connected: true, Version: "v2", LastNACK: &status.NACK{Version: "v2"}, CertExpiry: expiry},
		{NodeID: "c", Connected: false, CertExpiry: expiry.Add(-time.Hour)}, // gone: not counted
	}}
	m, err := New(nil, func() status.Status { return st })
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveStep(status.StepLoad, 20*time.Millisecond, nil)
	m.ObserveStep(status.StepCompile, 5*time.Millisecond, nil)
	m.ObserveStep(status.StepPublish, time.Millisecond, nil)
	m.ObserveStep(status.StepLoad, time.Millisecond, errors.New("syntax"))
	m.RevisionFailed(status.StepVet)

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", Path, nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`weft_served_revision_info{revision="main@sha1:abc"} 1`,
		`weft_revisions_applied_total 1`,
		`weft_revisions_failed_total{step="load"} 1`,
		`weft_revisions_failed_total{step="vet"} 1`,
		`weft_revisions_failed_total{step="compile"} 0`,
		`weft_pipeline_step_duration_seconds_count{step="load"} 2`,
		`weft_xds_proxies{state="connected"} 2`,
		`weft_xds_proxies{state="in_sync"} 1`,
		`weft_xds_proxies{state="nacking"} 1`,
		`weft_certificate_earliest_expiry_timestamp_seconds 1.9e+09`,
		`weft_ca_certificates_signed_total 0`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}
