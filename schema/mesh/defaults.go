package mesh

import "slices"

// Resolve returns a copy of s with its name, the names of its ports and
// versions, its routes in precedence order (SortRoutes), and every field
// that a mesh default covers filled in from d.
// The loader applies it to every service; the compiler applies it again so
// that a hand-built model never yields a half-configured resource. It
// never modifies s, and applying it twice changes nothing.
func Resolve(name string, s Service, d Defaults) Service {
	s.Name = name
	s.Namespace = firstNonEmpty(s.Namespace, d.Namespace, "default")
	s.ServiceAccount = firstNonEmpty(s.ServiceAccount, name)
	s.MTLS = MTLSMode(firstNonEmpty(string(s.MTLS), string(d.MTLS), string(MTLSStrict)))
	if s.Timeout == nil && d.Timeout.Duration != 0 {
		t := d.Timeout
		s.Timeout = &t
	}
	if s.Retries == nil {
		r := d.Retries
		s.Retries = &r
	}
	if s.CircuitBreaker == nil {
		s.CircuitBreaker = d.CircuitBreaker
	}
	if s.OutlierDetection == nil {
		s.OutlierDetection = d.OutlierDetection
	}
	ports := make(map[string]Port, len(s.Ports))
	for pn, p := range s.Ports {
		p.Name = pn
		ports[pn] = p
	}
	s.Ports = ports
	versions := make(map[string]*Version, len(s.Versions))
	for vn, v := range s.Versions {
		if v == nil {
			continue
		}
		c := *v
		c.Name = vn
		versions[vn] = &c
	}
	s.Versions = versions
	if s.Routes != nil {
		s.Routes = slices.Clone(s.Routes)
		SortRoutes(s.Routes)
	}
	return s
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
