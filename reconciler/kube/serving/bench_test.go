package serving_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/weft-dev/weft/internal/kubetest"
	"github.com/weft-dev/weft/internal/meshgen"
	cav1 "github.com/weft-dev/weft/reconciler/api/ca/v1"
	"github.com/weft-dev/weft/reconciler/ca"
	"github.com/weft-dev/weft/reconciler/kube/kubetesting"
	"github.com/weft-dev/weft/reconciler/kube/workload"
)

// Sizes of BenchmarkServingMemory.
const (
	benchServices  = 1000
	benchPerVer    = 5   // pods (endpoints) per version: 10 per service, 10,000 in all
	benchClients   = 100 // delta clients: versions v1 and v2 of the first 50 services
	benchChanges   = 20
	benchNamespace = "gen" // meshgen's
)

func benchPod(svc, v string, i int) string { return fmt.Sprintf("%s-%s-%d", svc, v, i) }

// BenchmarkServingMemory: the serving side of one controller replica (a
// process of its own, composed as TestTwoReplicasFailover's) with a
// 1,000-service mesh (meshgen: 2 versions and 3 dependencies each, 2,000
// proxy classes) whose 10,000 endpoints come from 1,000 EndpointSlices
// and 10,000 pods in the test apiserver, and 100 delta ADS clients of 100
// classes (mTLS, bound to their pods). Reported: the replica's resident
// memory once everything is served (rss-MB, goal <= 300) and its peak
// (peak-rss-MB), and, over 20 changes of one endpoint of a service that
// some clients call, the time from the EndpointSlice write until every
// client that calls the service has received the new load assignments
// (p50-ms, max-ms).
func BenchmarkServingMemory(b *testing.B) {
	env := kubetest.Start(b, kubetest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	fast := rest.CopyConfig(env.Config)
	fast.QPS, fast.Burst = 2000, 4000
	cs := kubernetes.NewForConfigOrDie(fast)
	kubetesting.Namespace(b, cs, benchNamespace)

	started := time.Now()
	names := make([]string, benchServices)
	for s := range names {
		names[s] = fmt.Sprintf("svc-%05d", s)
	}
	ip := func(s, v, i int) string { return fmt.Sprintf("10.%d.%d.%d", 10*v+i, s>>8, s&255) }
	parallel(b, benchServices, func(s int) {
		var eps []kubetesting.Endpoint
		for v := 1; v <= 2; v++ {
			for i := range benchPerVer {
				name := benchPod(names[s], fmt.Sprintf("v%d", v), i)
				createPodFast(b, ctx, cs, benchNamespace, name, names[s], fmt.Sprintf("v%d", v))
				eps = append(eps, kubetesting.Endpoint{IP: ip(s, v, i), Pod: name})
			}
		}
		if _, err := cs.DiscoveryV1().EndpointSlices(benchNamespace).Create(ctx, kubetesting.Slice(benchNamespace, names[s], names[s]+"-a", eps...), metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	})
	b.Logf("created %d pods and %d EndpointSlices in %s", benchServices*2*benchPerVer, benchServices, time.Since(started).Round(time.Second))

	dir := b.TempDir()
	if err := meshgen.Write(dir, meshgen.Spec{Services: benchServices, Calls: 3}); err != nil {
		b.Fatal(err)
	}
	r := startReplica(b, replicaConfig{Name: "bench", Kubeconfig: kubetesting.ControllerKubeconfig(b, env), Namespace: "weft-system",
		TrustDomain: "gen.example", MeshDir: dir, Revision: "r1"})
	st := r.waitState(b, 5*time.Minute, "r1 served with every endpoint", func(st replicaState) bool {
		return st.Ready && st.Reconciled == "r1" && st.Endpoints == benchServices*2*benchPerVer
	})
	if st.Excluded != 0 || len(st.XDS.Classes) != 2*benchServices {
		b.Fatalf("served %d classes, %d endpoints left out", len(st.XDS.Classes), st.Excluded)
	}
	served, _ := procMemory(b, r.cmd.Process.Pid)

	// The clients: certificates signed with the root (read as an admin).
	root := &corev1.Secret{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "weft-system", Name: "weft-ca-root"}, root); err != nil {
		b.Fatal(err)
	}
	c, err := ca.New(ca.Config{TrustDomain: "gen.example", RootCertPEM: root.Data["tls.crt"], RootKeyPEM: root.Data["tls.key"]})
	if err != nil {
		b.Fatal(err)
	}
	clients := make([]*kubetesting.XDSClient, benchClients)
	classOf := make([]string, benchClients)
	for k := range clients {
		svc, v := names[k/2], fmt.Sprintf("v%d", k%2+1)
		id := cav1.Identity{TrustDomain: "gen.example", Namespace: benchNamespace, ServiceAccount: svc}
		key, csr := kubetesting.CSR(b, id.String())
		iss, err := c.SignCSR(csr, id, 0)
		if err != nil {
			b.Fatal(err)
		}
		cert := tlsCert(iss, key)
		clients[k] = kubetesting.NewXDSClient(r.xds, credentials.NewTLS(kubetesting.MTLS(cert, root.Data["tls.crt"], serverName)),
			&corev3.Node{Id: workload.NodeID(benchPod(svc, v, 0), benchNamespace)})
		classOf[k] = svc + "-" + v
		go clients[k].Run(ctx)
	}
	for k, cl := range clients {
		v := st.XDS.Classes[classOf[k]]
		if err := cl.Wait(ctx, "every type at "+v, func(s kubetesting.ClientState) bool { return allAt(s, v) }); err != nil {
			b.Fatal(err)
		}
	}
	r.waitState(b, time.Minute, "the clients in sync", inSync(benchClients, st.XDS.Classes))
	connected, _ := procMemory(b, r.cmd.Process.Pid)
	if path := os.Getenv("WEFT_BENCH_ALLOCS_PROFILE"); path != "" {
		saveProfile(b, r.web, "allocs", path+".before")
		defer saveProfile(b, r.web, "allocs", path+".after")
	}

	// Endpoint changes: service s (2..49) is called by s-1, s-2, s-3.
	var took []time.Duration
	b.ResetTimer()
	for i := range benchChanges {
		s := 4 + i*2
		var callers []*kubetesting.XDSClient
		for k := range clients {
			if d := s - k/2; d >= 1 && d <= 3 {
				callers = append(callers, clients[k])
			}
		}
		counts := make([]int, len(callers))
		for j, cl := range callers {
			counts[j] = cl.State().Responses[resource.EndpointType]
		}
		cluster := fmt.Sprintf("outbound|8080|v1|%s.%s", names[s], benchNamespace)
		t0 := time.Now()
		var eps []kubetesting.Endpoint
		for v := 1; v <= 2; v++ {
			for j := range benchPerVer {
				if v == 1 && j == 0 {
					continue // the change: v1's first pod goes
				}
				eps = append(eps, kubetesting.Endpoint{IP: ip(s, v, j), Pod: benchPod(names[s], fmt.Sprintf("v%d", v), j)})
			}
		}
		kubetesting.ApplySlice(b, cs, kubetesting.Slice(benchNamespace, names[s], names[s]+"-a", eps...))
		var last time.Time
		for j, cl := range callers {
			n := counts[j]
			if err := cl.Wait(ctx, "the load assignment of "+cluster, func(st kubetesting.ClientState) bool {
				return st.Responses[resource.EndpointType] > n
			}); err != nil {
				b.Fatal(err)
			}
			at, ok := lastEDS(cl.State().Log, cluster)
			if !ok {
				b.Fatalf("client %s received load assignments without %s", cl.Node.GetId(), cluster)
			}
			if at.After(last) {
				last = at
			}
		}
		took = append(took, last.Sub(t0))
	}
	b.StopTimer()
	rss, peak := procMemory(b, r.cmd.Process.Pid)
	anon := procLines(b, r.cmd.Process.Pid, "RssAnon", "RssFile")
	live := liveHeap(b, r.web)
	b.ReportMetric(live, "heap-live-MB")
	if path := os.Getenv("WEFT_BENCH_HEAP_PROFILE"); path != "" {
		saveProfile(b, r.web, "heap", path)
	}
	b.ReportMetric(rss, "rss-MB")
	b.ReportMetric(peak, "peak-rss-MB")
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
	b.Logf("replica: %.0f MB resident once r1 is served, %.0f MB with the %d clients, %.0f MB after the endpoint changes (peak %.0f MB; %s), %.0f MB live heap after a GC; endpoint change -> its 6 calling clients updated: p50 %s, max %s",
		served, connected, benchClients, rss, peak, anon, live, took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond))
}

// lastEDS is when the last load assignments response, which must hold
// cluster, arrived.
func lastEDS(log []kubetesting.Response, cluster string) (time.Time, bool) {
	for i := len(log) - 1; i >= 0; i-- {
		if log[i].Type == resource.EndpointType {
			return log[i].At, slices.Contains(log[i].Names, cluster)
		}
	}
	return time.Time{}, false
}

// tlsCert is an issued certificate with its key.
func tlsCert(iss *ca.Issued, key crypto.Signer) *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{iss.Cert.Raw}, PrivateKey: key, Leaf: iss.Cert}
}

// createPodFast creates a pod without status (nothing reads it here).
func createPodFast(b testing.TB, ctx context.Context, cs kubernetes.Interface, ns, name, svc, version string) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"mesh.weft.dev/service": svc, "version": version}},
		Spec: corev1.PodSpec{ServiceAccountName: svc, NodeName: "node-1", AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "app", Image: "localhost/app:dev"}}},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
}

// parallel runs f(0..n-1) on 16 workers.
func parallel(b testing.TB, n int, f func(int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// procMemory is a process's resident and peak resident memory in MB
// (VmRSS and VmHWM of /proc/<pid>/status).
func procMemory(b testing.TB, pid int) (rss, peak float64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		if err != nil {
			b.Fatal(err)
		}
		if k == "VmRSS" {
			rss = float64(kb) / 1024
		} else {
			peak = float64(kb) / 1024
		}
	}
	return rss, peak
}

// saveProfile writes the replica's heap or allocs profile to path (after a
// GC: gc=1).
func saveProfile(b testing.TB, addr, kind, path string) {
	resp, err := http.Get("http://" + addr + "/debug/pprof/" + kind + "?gc=1")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		b.Fatal(err)
	}
}

// procLines are the named lines of /proc/<pid>/status, joined.
func procLines(b testing.TB, pid int, names ...string) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && slices.Contains(names, k) {
			out = append(out, k+" "+strings.Join(strings.Fields(v), " "))
		}
	}
	return strings.Join(out, ", ")
}

// liveHeap is the replica's heap in MB right after a GC.
func liveHeap(b testing.TB, addr string) float64 {
	resp, err := http.Get("http://" + addr + "/heap")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]uint64
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		b.Fatal(err)
	}
	return float64(m["heapAlloc"]) / (1 << 20)
}
