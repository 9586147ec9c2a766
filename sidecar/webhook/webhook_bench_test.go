package webhook_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkPodCreate measures what injection adds to creating a pod: one
// Pods.Create through a real kube-apiserver (and etcd) per iteration, in
// the namespace labelled weft.dev/inject=enabled (the apiserver calls the
// webhook over TLS on loopback, the injector patches the pod, the
// apiserver validates and stores the native sidecar) and in an unlabelled
// one (the webhook's namespace selector skips the call). time/op is the
// mean; p50-ms and p90-ms are over the iterations. No kubelet runs: this
// is the admission part of a pod's start, the node's part is
// tests.BenchmarkPodSidecars (netinit, proxy ready).
func BenchmarkPodCreate(b *testing.B) {
	a := startInjectingAPIServer(b)
	ctx := context.Background()
	n := 0
	for _, v := range []struct{ name, ns string }{{"injected", "shop"}, {"not-injected", "plain"}} {
		b.Run(v.name, func(b *testing.B) {
			ds := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				n++
				start := time.Now()
				p, err := a.cs.CoreV1().Pods(v.ns).Create(ctx, appPod(fmt.Sprintf("bench-%d", n), nil), metav1.CreateOptions{})
				ds = append(ds, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if injected := len(weftContainers(p)) == 2; injected != (v.ns == "shop") {
					b.Fatalf("pod in %s has weft containers %v", v.ns, weftContainers(p))
				}
			}
			b.StopTimer()
			slices.Sort(ds)
			ms := func(q float64) float64 { return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000 }
			b.ReportMetric(ms(0.5), "p50-ms")
			b.ReportMetric(ms(0.9), "p90-ms")
		})
	}
}
