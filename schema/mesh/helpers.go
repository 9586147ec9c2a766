package mesh

import (
	"fmt"
	"sort"
)

// ServiceNames returns the service names in order.
func (m *Model) ServiceNames() []string { return sortedKeys(m.Services) }

// SPIFFEID is the workload identity of a service.
func (m *Model) SPIFFEID(s *Service) string {
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", m.TrustDomain, s.Namespace, s.ServiceAccount)
}

// FQDN is the service's cluster-local DNS name.
func (s *Service) FQDN() string { return s.Name + "." + s.Namespace + ".svc.cluster.local" }

// Host is the short "<name>.<namespace>" form used in resource names.
func (s *Service) Host() string { return s.Name + "." + s.Namespace }

// PortList returns the ports ordered by number, then name.
func (s *Service) PortList() []Port {
	ps := make([]Port, 0, len(s.Ports))
	for _, p := range s.Ports {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Port != ps[j].Port {
			return ps[i].Port < ps[j].Port
		}
		return ps[i].Name < ps[j].Name
	})
	return ps
}

// VersionNames returns the version names in order.
func (s *Service) VersionNames() []string { return sortedKeys(s.Versions) }

// Callers returns, in order, the services that list s in their calls.
func (m *Model) Callers(s *Service) []string {
	var out []string
	for _, name := range m.ServiceNames() {
		for _, c := range m.Services[name].Calls {
			if c == s.Name {
				out = append(out, name)
				break
			}
		}
	}
	return out
}

// SortedKeys returns a map's keys in order; the model's maps are only ever
// iterated through it so that output never depends on map order.
func SortedKeys[V any](m map[string]V) []string { return sortedKeys(m) }

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
