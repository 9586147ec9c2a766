package schema

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"cuelang.org/go/cue"

	"github.com/weft-dev/weft/schema/mesh"
)

// checker collects the cross-reference errors that CUE's type system does
// not express. Every check runs; all failures are reported together.
type checker struct {
	m   *mesh.Model
	v   cue.Value
	out Errors
}

func check(m *mesh.Model, v cue.Value) Errors {
	c := &checker{m: m, v: v}
	for _, name := range m.ServiceNames() {
		s := m.Services[name]
		c.ports(s)
		c.endpoints(s)
		c.calls(s)
		c.routes(s)
		c.authz(s)
		c.slo(s)
	}
	return c.out
}

func (c *checker) errorf(path, fix, format string, args ...any) {
	c.out = append(c.out, &Error{Pos: c.m.Positions.Lookup(path), Path: path, Msg: fmt.Sprintf(format, args...), Fix: fix})
}

func (c *checker) ports(s *mesh.Service) {
	seen := map[uint32]string{}
	for _, pn := range mesh.SortedKeys(s.Ports) {
		p := s.Ports[pn]
		if other, dup := seen[p.Port]; dup {
			c.errorf(mesh.ServicePath(s.Name)+".ports."+mesh.Label(pn), "give each port of a service its own number",
				"port %d is declared twice (%s and %s)", p.Port, other, pn)
		}
		seen[p.Port] = pn
	}
}

func (c *checker) endpoints(s *mesh.Service) {
	for _, vn := range s.VersionNames() {
		for i, ep := range s.Versions[vn].Endpoints {
			path := fmt.Sprintf("%s.versions.%s.endpoints[%d]", mesh.ServicePath(s.Name), mesh.Label(vn), i)
			_, port, err := net.SplitHostPort(ep)
			if n, perr := strconv.Atoi(port); err != nil || perr != nil || n <= 0 || n > 65535 {
				c.errorf(path, `write "host:port" with a port from 1 to 65535, e.g. "127.0.0.1:8080"`, "invalid endpoint %q", ep)
			}
		}
	}
}

func (c *checker) calls(s *mesh.Service) {
	seen := map[string]bool{}
	for i, callee := range s.Calls {
		path := fmt.Sprintf("%s.calls[%d]", mesh.ServicePath(s.Name), i)
		switch {
		case callee == s.Name:
			c.errorf(path, "remove it: a service reaches itself without the mesh", "service %s lists itself in calls", s.Name)
		case c.m.Services[callee] == nil:
			c.errorf(path, c.knownServices("add a service named "+callee+" or call one of"), "call to unknown service %q", callee)
		case seen[callee]:
			c.errorf(path, "remove the duplicate", "service %q is listed twice in calls", callee)
		}
		seen[callee] = true
	}
}

func (c *checker) routes(s *mesh.Service) {
	if len(s.Routes) > 0 && !hasHTTPPort(s) {
		c.errorf(mesh.ServicePath(s.Name)+".routes", "add an http or grpc port, or remove the routes",
			"routes need an http or grpc port; service %s has only tcp ports", s.Name)
	}
	names := map[string]int{}
	for i, r := range s.Routes {
		path := mesh.RoutePath(s.Name, i)
		if r.Name != "" {
			if j, dup := names[r.Name]; dup {
				c.errorf(path+".name", fmt.Sprintf("rename one of routes[%d] and routes[%d]", j, i),
					"duplicate route name %q (also routes[%d])", r.Name, j)
			}
			names[r.Name] = i
		}
		c.split(s, path, r)
		if r.Mirror != nil {
			c.mirror(s, path+".mirror", r.Mirror)
		}
	}
}

func (c *checker) split(s *mesh.Service, path string, r mesh.Route) {
	if r.To == nil {
		return
	}
	if len(r.To) == 0 {
		c.errorf(path+".to", "name at least one version, or remove to: to send traffic to every version", "empty split")
		return
	}
	sum := 0
	for _, vn := range mesh.SortedKeys(r.To) {
		sum += r.To[vn]
		if s.Versions[vn] == nil {
			c.errorf(path+".to."+mesh.Label(vn), "use one of the versions "+strings.Join(s.VersionNames(), ", ")+" or declare versions: "+vn,
				"unknown version %q of service %s", vn, s.Name)
		}
	}
	if sum != 100 {
		c.errorf(path+".to", "change the weights so they sum to 100", "split weights sum to %d, want 100", sum)
	}
}

func (c *checker) mirror(s *mesh.Service, path string, mr *mesh.Mirror) {
	target := c.m.Services[mr.To]
	switch {
	case target == nil:
		c.errorf(path+".to", c.knownServices("mirror to one of"), "mirror to unknown service %q", mr.To)
	case mr.To == s.Name:
		c.errorf(path+".to", "mirror to another service (a shadow deployment)", "service %s mirrors to itself", s.Name)
	case mr.Version != "" && target.Versions[mr.Version] == nil:
		c.errorf(path+".version", "use one of the versions "+strings.Join(target.VersionNames(), ", "),
			"unknown version %q of service %s", mr.Version, mr.To)
	case !hasHTTPPort(target):
		c.errorf(path+".to", "mirror to a service with an http or grpc port", "mirror target %s has no http or grpc port", mr.To)
	}
}

func (c *checker) authz(s *mesh.Service) {
	if s.Authz == nil {
		return
	}
	for kind, rules := range map[string][]mesh.AuthzRule{"allow": s.Authz.Allow, "deny": s.Authz.Deny} {
		for i, r := range rules {
			for j, from := range r.From {
				if from != "*" && c.m.Services[from] == nil {
					path := fmt.Sprintf("%s.authz.%s[%d].from[%d]", mesh.ServicePath(s.Name), kind, i, j)
					c.errorf(path, c.knownServices(`name a service of the mesh or "*";`), "authz %s rule names unknown service %q", kind, from)
				}
			}
		}
	}
}

func (c *checker) knownServices(prefix string) string {
	names := c.m.ServiceNames()
	if len(names) > 8 {
		names = append(names[:8], "...")
	}
	return prefix + " " + strings.Join(names, ", ")
}

func hasHTTPPort(s *mesh.Service) bool {
	for _, p := range s.Ports {
		if p.Protocol != mesh.TCP {
			return true
		}
	}
	return false
}

// slo checks that every latency bound is a bucket bound of the request
// duration histogram (mesh.LatencyBucketsMs).
func (c *checker) slo(s *mesh.Service) {
	if s.SLO == nil {
		return
	}
	var bounds []string
	for _, b := range mesh.LatencyBucketsMs {
		bounds = append(bounds, (time.Duration(b) * time.Millisecond).String())
	}
	for _, o := range s.SLO.Latency.Objectives() {
		if !mesh.IsLatencyBucket(o.Bound) {
			c.errorf(mesh.ServicePath(s.Name)+".slo.latency."+o.Name,
				"use one of the histogram bucket bounds: "+strings.Join(bounds, ", "),
				"latency bound %s is not a bucket bound of the request duration histogram", o.Bound)
		}
	}
}
