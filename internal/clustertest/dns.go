package clustertest

import (
	"context"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The cluster DNS: the names Kubernetes gives Services, answered from the
// apiserver, so that pods reach a Service by name
// (weft-controller.weft-system.svc) as in any cluster. kubelet puts
// NodeIP in every pod's resolv.conf (clusterDNS) with the usual search
// list (<ns>.svc.cluster.local svc.cluster.local cluster.local, ndots 5).
//
// It answers A queries for <service>.<namespace>.svc.cluster.local: the
// ClusterIP, or for a headless Service the ready addresses of its
// EndpointSlices; AAAA and other types for such names get an empty
// answer; every other name, NXDOMAIN (the netns has no way out, so there
// is nothing to forward to). It is not CoreDNS: no pod records, no SRV,
// no caching (every query reads the apiserver, in the same netns).
// It runs inside the netns proxy process.

const dnsTTL = 5 // seconds

// serveDNS serves UDP and TCP on addr until an error.
func serveDNS(addr, kubeconfigPath string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	r := &resolver{cs: cs}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- r.serveUDP(pc) }()
	go func() { errc <- r.serveTCP(ln) }()
	return <-errc
}

type resolver struct{ cs kubernetes.Interface }

func (r *resolver) serveUDP(pc net.PacketConn) error {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		q := append([]byte(nil), buf[:n]...)
		go func() {
			if out := r.answer(q, 512); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}()
	}
}

func (r *resolver) serveTCP(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			var l [2]byte
			for {
				if _, err := readFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, int(l[0])<<8|int(l[1]))
				if _, err := readFull(c, q); err != nil {
					return
				}
				out := r.answer(q, 65535)
				if out == nil {
					return
				}
				if _, err := c.Write(append([]byte{byte(len(out) >> 8), byte(len(out))}, out...)); err != nil {
					return
				}
			}
		}()
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// answer builds the reply to one query message (nil: drop it).
func (r *resolver) answer(query []byte, limit int) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	rcode := dnsmessage.RCodeSuccess
	known, ips, err := r.lookup(ctx, q.Name.String())
	switch {
	case err != nil:
		rcode = dnsmessage.RCodeServerFailure
	case !known:
		rcode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{
		ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RCode: rcode,
	})
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	if q.Type == dnsmessage.TypeA && q.Class == dnsmessage.ClassINET {
		for _, ip := range ips {
			_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: dnsTTL},
				dnsmessage.AResource{A: ip.As4()})
		}
	}
	out, err := b.Finish()
	if err != nil || len(out) > limit {
		return nil
	}
	return out
}

// lookup resolves <service>.<namespace>.svc.<ClusterDomain>. known is
// false for a name that does not exist.
func (r *resolver) lookup(ctx context.Context, fqdn string) (known bool, ips []netip.Addr, err error) {
	name := strings.ToLower(strings.TrimSuffix(fqdn, "."))
	rest, ok := strings.CutSuffix(name, ".svc."+ClusterDomain)
	if !ok {
		return false, nil, nil
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 2 {
		return false, nil, nil
	}
	svcName, ns := parts[0], parts[1]
	svc, err := r.cs.CoreV1().Services(ns).Get(ctx, svcName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, err
	}
	if svc.Spec.ClusterIP != "" && svc.Spec.ClusterIP != "None" {
		ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
		if err != nil {
			return true, nil, nil
		}
		return true, []netip.Addr{ip}, nil
	}
	slices, err := r.cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + svcName,
	})
	if err != nil {
		return true, nil, err
	}
	seen := map[netip.Addr]bool{}
	for _, s := range slices.Items {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil && ip.Is4() && !seen[ip] {
					seen[ip] = true
					ips = append(ips, ip)
				}
			}
		}
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
	return true, ips, nil
}
