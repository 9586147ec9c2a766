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
		c.rateLimit(mesh.ServicePath(s.Name)+".rateLimit", s.RateLimit)
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
	for _, r := range s.Routes {
		path := mesh.RoutePath(s.Name, r.Name)
		c.split(s, path, r)
		if r.Mirror != nil {
			c.mirror(s, path, r)
		}
		c.rateLimit(path+".rateLimit", r.RateLimit)
	}
	c.unreachable(s)
}

// unreachable reports each route that an earlier route (in precedence
// order) always wins over: every request it matches, the earlier one
// matches too (mesh.Match.Covers).
func (c *checker) unreachable(s *mesh.Service) {
	for j := range s.Routes {
		late := &s.Routes[j]
		for i := range j {
			early := &s.Routes[i]
			if !early.Match.Covers(late.Match) {
				continue
			}
			matchPath := mesh.RoutePath(s.Name, late.Name) + ".match"
			earlyPos := c.m.Positions.Lookup(mesh.RoutePath(s.Name, early.Name) + ".match")
			e := &Error{
				Pos:  c.m.Positions.Lookup(matchPath),
				Path: matchPath,
				Msg: fmt.Sprintf("route %q can never match: route %q (%s) comes first and matches every request it does (%s)",
					late.Name, early.Name, earlyPos, precedenceReason(early, late)),
				Fix: unreachableFix(early, late),
			}
			if earlyPos.IsValid() {
				e.Also = []mesh.Pos{earlyPos}
			}
			c.out = append(c.out, e)
			break
		}
	}
}

// precedenceReason says why early comes before late.
func precedenceReason(early, late *mesh.Route) string {
	switch {
	case early.Priority != late.Priority:
		return fmt.Sprintf("priority %d > %d", early.Priority, late.Priority)
	case mesh.ComparePrecedence(&mesh.Route{Match: early.Match}, &mesh.Route{Match: late.Match}) != 0:
		return "its match takes precedence"
	default:
		return "same precedence, and its name sorts first"
	}
}

func unreachableFix(early, late *mesh.Route) string {
	if late.Match.Covers(early.Match) {
		return fmt.Sprintf("the two routes match the same requests: merge them, or change the match of %q or %q", early.Name, late.Name)
	}
	return fmt.Sprintf("add priority: %d to route %q so that it is tried before %q, or narrow the match of %q",
		early.Priority+1, late.Name, early.Name, early.Name)
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

// mirror checks a route's mirror (path is the route's). A route may
// mirror to a version of its own service that it sends no live traffic:
// a copy to a version that also gets the request itself would reach it
// twice.
func (c *checker) mirror(s *mesh.Service, route string, r mesh.Route) {
	mr, path := r.Mirror, route+".mirror"
	target := c.m.Services[mr.To]
	switch {
	case target == nil:
		c.errorf(path+".to", c.knownServices("mirror to one of"), "mirror to unknown service %q", mr.To)
	case mr.To == s.Name && mr.Version == "":
		c.errorf(path+".to", "name the version that receives the copies (mirror.version), or mirror to another service",
			"service %s mirrors to all of its own versions, so every copy would reach a version that serves the request too", s.Name)
	case mr.Version != "" && target.Versions[mr.Version] == nil:
		c.errorf(path+".version", "use one of the versions "+strings.Join(target.VersionNames(), ", "),
			"unknown version %q of service %s", mr.Version, mr.To)
	case mr.To == s.Name && (r.To == nil || r.To[mr.Version] > 0):
		c.errorf(path+".version", fmt.Sprintf("send the route's traffic to other versions (to: {v1: 100}) or mirror to a version it does not send to; %s", liveVersions(r)),
			"route mirrors to version %s of its own service, which already gets the route's live traffic", mr.Version)
	case !hasHTTPPort(target):
		c.errorf(path+".to", "mirror to a service with an http or grpc port", "mirror target %s has no http or grpc port", mr.To)
	}
}

// liveVersions says which versions a route sends live traffic to.
func liveVersions(r mesh.Route) string {
	if r.To == nil {
		return "without to, it sends to every version"
	}
	var live []string
	for _, v := range mesh.SortedKeys(r.To) {
		if r.To[v] > 0 {
			live = append(live, v)
		}
	}
	return "it sends to " + strings.Join(live, ", ")
}

// rateLimit checks that a rate limit is written in exactly one form:
// requestsPerSecond, or requests and per (at least MinRateLimitPer).
func (c *checker) rateLimit(path string, rl *mesh.RateLimit) {
	if rl == nil {
		return
	}
	perForm := rl.Requests > 0 || rl.Per != nil
	switch {
	case rl.RequestsPerSecond > 0 && perForm:
		c.errorf(path, `keep one: {requestsPerSecond: N} or {requests: N, per: "60s"}`,
			"rate limit sets both requestsPerSecond and requests/per")
	case rl.Requests > 0 && rl.Per == nil:
		c.errorf(path+".requests", fmt.Sprintf(`add the refill period, e.g. per: "60s" for %d requests a minute`, rl.Requests),
			"rate limit has requests but no per")
	case rl.Per != nil && rl.Requests == 0:
		c.errorf(path+".per", "add requests: the number of requests allowed per "+rl.Per.String(),
			"rate limit has per but no requests")
	case rl.Per != nil && rl.Per.Duration < mesh.MinRateLimitPer:
		c.errorf(path+".per", fmt.Sprintf(`use a period of at least %s (Envoy's shortest fill interval), e.g. {requests: %d, per: "1s"} for the same rate`,
			mesh.MinRateLimitPer, max(1, int(float64(rl.Requests)*float64(time.Second)/float64(rl.Per.Duration)))),
			"rate limit period %s is shorter than %s", rl.Per, mesh.MinRateLimitPer)
	case !perForm && rl.RequestsPerSecond == 0:
		c.errorf(path, `write {requestsPerSecond: N} or {requests: N, per: "60s"}`, "rate limit sets no rate")
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
