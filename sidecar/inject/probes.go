package inject

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-dev/weft/sidecar/agent"
)

func intOrString(port int) intstr.IntOrString { return intstr.FromInt32(int32(port)) }

// rewriteProbes points the app containers' HTTP, TCP and gRPC probes at
// the agent: kubelet's probes come from the node, in plaintext, and the
// redirect would hand them to the proxy's inbound listener, which admits
// only the mesh. Each becomes an HTTP GET of
// /app-health/<container>/<livez|readyz|startupz> on the agent's health
// port, with its timing unchanged; the agent probes the app on 127.0.0.1
// as kubelet would have (agent.AppProbe). previous holds the probes an
// earlier injection rewrote: a probe that already points at the agent
// keeps its original from there. A probe that cannot be rewritten (a
// Host, a port name the container does not declare) is left as written,
// with a warning.
func rewriteProbes(spec *corev1.PodSpec, previous agent.AppProbes) (agent.AppProbes, []string) {
	probes := agent.AppProbes{}
	var warnings []string
	for i := range spec.Containers {
		c := &spec.Containers[i]
		for _, p := range []struct {
			kind  string
			probe *corev1.Probe
		}{{"livez", c.LivenessProbe}, {"readyz", c.ReadinessProbe}, {"startupz", c.StartupProbe}} {
			if p.probe == nil {
				continue
			}
			path := agent.AppHealthPath(c.Name, p.kind)
			if g := p.probe.HTTPGet; g != nil && g.Path == path && g.Port.IntValue() == HealthPort {
				if orig, ok := previous[path]; ok {
					probes[path] = orig
				} else {
					warnings = append(warnings, fmt.Sprintf("container %s: the %s probe already points at the agent (%s) and its original is unknown: it will fail", c.Name, p.kind, path))
				}
				continue
			}
			ap, why := appProbe(c, p.probe)
			if why != "" {
				warnings = append(warnings, fmt.Sprintf("container %s: %s probe left as written (%s): kubelet's plaintext probe reaches the proxy's inbound listener", c.Name, p.kind, why))
				continue
			}
			if ap == nil { // exec: runs in the container, no network
				continue
			}
			probes[path] = *ap
			p.probe.ProbeHandler = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intOrString(HealthPort), Scheme: corev1.URISchemeHTTP,
			}}
		}
	}
	return probes, warnings
}

// appProbe is what the agent must do for probe of container c: nil for an
// exec probe, or why it cannot.
func appProbe(c *corev1.Container, probe *corev1.Probe) (*agent.AppProbe, string) {
	ap := &agent.AppProbe{TimeoutSeconds: probe.TimeoutSeconds}
	switch h := probe.ProbeHandler; {
	case h.HTTPGet != nil:
		if h.HTTPGet.Host != "" {
			return nil, "it names the host " + h.HTTPGet.Host
		}
		port, why := containerPort(c, h.HTTPGet.Port)
		if why != "" {
			return nil, why
		}
		ap.Kind, ap.Port, ap.Path = agent.ProbeHTTP, port, h.HTTPGet.Path
		if h.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			ap.Kind = agent.ProbeHTTPS
		}
		for _, hd := range h.HTTPGet.HTTPHeaders {
			ap.Headers = append(ap.Headers, agent.ProbeHeader{Name: hd.Name, Value: hd.Value})
		}
	case h.TCPSocket != nil:
		if h.TCPSocket.Host != "" {
			return nil, "it names the host " + h.TCPSocket.Host
		}
		port, why := containerPort(c, h.TCPSocket.Port)
		if why != "" {
			return nil, why
		}
		ap.Kind, ap.Port = agent.ProbeTCP, port
	case h.GRPC != nil:
		ap.Kind, ap.Port = agent.ProbeGRPC, h.GRPC.Port
		if h.GRPC.Service != nil {
			ap.GRPCService = *h.GRPC.Service
		}
	default:
		return nil, ""
	}
	return ap, ""
}

// containerPort resolves a probe's port (a number, or the name of one of
// the container's ports).
func containerPort(c *corev1.Container, p intstr.IntOrString) (int32, string) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Sprintf("port %d", p.IntVal)
		}
		return p.IntVal, ""
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, ""
		}
	}
	return 0, fmt.Sprintf("the container declares no port named %q", p.StrVal)
}
