package compiler

import (
	"fmt"
	"time"

	"github.com/weft-dev/weft/schema/mesh"
)

// Builders for hand-written test meshes. newModel resolves defaults the
// way the loader does, so that the golden files show realistic output.

func ptr[T any](v T) *T { return &v }

func dur(s string) *mesh.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return &mesh.Duration{Duration: d}
}

// svc is a service with one HTTP port and the given versions (default
// v1), each with one static endpoint.
func svc(name string, port uint32, versions ...string) *mesh.Service {
	s := &mesh.Service{
		Name:     name,
		Ports:    map[string]mesh.Port{"http": {Name: "http", Port: port, Protocol: mesh.HTTP}},
		Versions: map[string]*mesh.Version{},
	}
	if len(versions) == 0 {
		versions = []string{"v1"}
	}
	for i, v := range versions {
		s.Versions[v] = &mesh.Version{
			Name:      v,
			Labels:    map[string]string{"version": v},
			Replicas:  1,
			Endpoints: []string{fmt.Sprintf("%s:%d", ipFor(name, i), port)},
		}
	}
	return s
}

// withPorts replaces a service's ports.
func withPorts(s *mesh.Service, ports ...mesh.Port) *mesh.Service {
	s.Ports = map[string]mesh.Port{}
	for _, p := range ports {
		s.Ports[p.Name] = p
	}
	return s
}

// ipFor gives each (service, version) a distinct documentation address.
func ipFor(name string, version int) string {
	h := 0
	for _, c := range name {
		h = (h*31 + int(c)) % 200
	}
	return fmt.Sprintf("10.0.%d.%d", h, 10+version)
}

// calls sets a service's dependencies and returns it.
func calls(s *mesh.Service, deps ...string) *mesh.Service {
	s.Calls = deps
	return s
}

func prefix(p string) mesh.Match { return mesh.Match{Path: &mesh.StringMatch{Prefix: ptr(p)}} }

const testRevision = "main@sha1:0123456789abcdef"

// newModel builds the "shop" mesh from services, resolving defaults as the
// loader does, and records a source position for every service and route.
func newModel(svcs ...*mesh.Service) *mesh.Model {
	m := &mesh.Model{
		Name:        "shop",
		TrustDomain: "shop.example",
		Defaults: mesh.Defaults{
			Namespace: "shop",
			MTLS:      mesh.MTLSStrict,
			Timeout:   *dur("15s"),
			Retries:   mesh.Retries{Attempts: 2, On: []string{"connect-failure", "refused-stream", "reset"}},
		},
		Services:  map[string]*mesh.Service{},
		Revision:  testRevision,
		Positions: mesh.Positions{},
	}
	line := 10
	for _, s := range svcs {
		m.Services[s.Name] = s
		m.Positions[mesh.ServicePath(s.Name)] = mesh.Pos{File: "mesh.cue", Line: line, Column: 3}
		for i, r := range s.Routes {
			m.Positions[mesh.RoutePath(s.Name, r.Name)] = mesh.Pos{File: "mesh.cue", Line: line + 5 + 3*i, Column: 5}
		}
		line += 40
	}
	resolveLikeLoader(m)
	return m
}

// resolveLikeLoader fills defaulted fields into every service.
func resolveLikeLoader(m *mesh.Model) {
	for _, s := range m.Services {
		if s.Namespace == "" {
			s.Namespace = m.Defaults.Namespace
		}
		if s.ServiceAccount == "" {
			s.ServiceAccount = s.Name
		}
		if s.MTLS == "" {
			s.MTLS = m.Defaults.MTLS
		}
		if s.Timeout == nil {
			s.Timeout = ptr(m.Defaults.Timeout)
		}
		if s.Retries == nil {
			s.Retries = ptr(m.Defaults.Retries)
		}
		if s.CircuitBreaker == nil {
			s.CircuitBreaker = m.Defaults.CircuitBreaker
		}
		if s.OutlierDetection == nil {
			s.OutlierDetection = m.Defaults.OutlierDetection
		}
	}
}
