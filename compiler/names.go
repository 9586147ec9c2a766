package compiler

import (
	"fmt"

	"github.com/weft-dev/weft/schema/mesh"
)

// Resource names. The scheme is documented in doc.go; every name a class's
// resources use is built here and nowhere else.
const (
	// OutboundListenerName is the HTTP listener the app sends its requests to.
	OutboundListenerName = "outbound"
	// InboundListenerName is the listener that receives the service's traffic.
	InboundListenerName = "inbound"
	// OutboundHTTPRouteName is the route configuration of the outbound listener.
	OutboundHTTPRouteName = "outbound|http"
	// SDSClusterName is the (bootstrap) cluster that reaches the agent's SDS server.
	SDSClusterName = "sds-grpc"
	// CertSecretName is the SDS secret holding the workload certificate and key.
	CertSecretName = "default"
	// RootCASecretName is the SDS secret holding the mesh trust bundle.
	RootCASecretName = "ROOTCA"
)

// ClassName is the name of the proxy class of a service version.
func ClassName(service, version string) string { return service + "-" + version }

// VersionClusterName is the cluster of one version of a service port:
// "outbound|<port>|<version>|<name>.<namespace>".
func VersionClusterName(s *mesh.Service, port uint32, version string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", port, version, s.Host())
}

// ServiceClusterName is the cluster of all versions of a service port:
// "outbound|<port>||<name>.<namespace>".
func ServiceClusterName(s *mesh.Service, port uint32) string {
	return VersionClusterName(s, port, "")
}

// InboundClusterName is the cluster to the local app: "inbound|<port>".
func InboundClusterName(port uint32) string { return fmt.Sprintf("inbound|%d", port) }

// InboundRouteName is the route configuration of an inbound HTTP/gRPC port:
// "inbound|<port>".
func InboundRouteName(port uint32) string { return fmt.Sprintf("inbound|%d", port) }

// OutboundTCPListenerName is the listener of a TCP dependency port:
// "outbound|<port>|<name>.<namespace>".
func OutboundTCPListenerName(s *mesh.Service, port uint32) string {
	return fmt.Sprintf("outbound|%d|%s", port, s.Host())
}

// VirtualHostName is the outbound virtual host of a service port:
// "<name>.<namespace>:<port>".
func VirtualHostName(s *mesh.Service, port uint32) string {
	return fmt.Sprintf("%s:%d", s.Host(), port)
}

// statPrefix turns a resource name into a stat prefix ('|' and ':' are legal
// in Envoy names but awkward in stats tags).
func statPrefix(name string) string {
	b := []byte(name)
	for i, c := range b {
		if c == '|' || c == ':' {
			b[i] = '_'
		}
	}
	return string(b)
}
