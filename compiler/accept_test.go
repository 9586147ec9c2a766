package compiler

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// reviewsWith is frontend -> reviews with f applied to reviews. In the
// builders' positions, reviews is mesh.cue:50 and its route i is at line
// 55+3i.
func reviewsWith(f func(rv *mesh.Service)) *mesh.Model {
	rv := svc("reviews", 9080, "v1", "v2")
	f(rv)
	return newModel(calls(svc("frontend", 8080), "reviews"), rv)
}

func gateErrors(t *testing.T, m *mesh.Model) schema.Errors {
	t.Helper()
	_, err := Compile(m, nil, Options{})
	var es schema.Errors
	if !errors.As(err, &es) {
		t.Fatalf("Compile: %v, want schema.Errors from the gate", err)
	}
	return es
}

// TestGateModel: each value Envoy rejects is reported at the field that
// holds it (its path, the file:line of the nearest written position), with
// what is wrong and a fix.
func TestGateModel(t *testing.T) {
	route := func(r mesh.Route) func(*mesh.Service) {
		return func(rv *mesh.Service) {
			r.Name = "r0"
			rv.Routes = []mesh.Route{r}
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*mesh.Service)
		path   string
		line   int
		msg    string
	}{
		{"regex too large", route(mesh.Route{Match: mesh.Match{Path: &mesh.StringMatch{Regex: ptr("^/v4/advisory/[0-9a-z-]{36}/clone$")}}}),
			"mesh.services.reviews.routes.r0.match.path.regex", 55, "RE2 program of 118 instructions"},
		{"regex invalid", route(mesh.Route{Match: mesh.Match{Headers: map[string]mesh.StringMatch{"x-a": {Regex: ptr("?")}}}}),
			`mesh.services.reviews.routes.r0.match.headers."x-a".regex`, 55, "no argument for repetition operator"},
		{"empty prefix", route(mesh.Route{Match: mesh.Match{Headers: map[string]mesh.StringMatch{"x-a": {Prefix: ptr("")}}}}),
			`mesh.services.reviews.routes.r0.match.headers."x-a".prefix`, 55, "an empty prefix"},
		{"set host", func(rv *mesh.Service) {
			rv.Headers = &mesh.Headers{Request: &mesh.HeaderOps{Set: map[string]string{"Host": "x"}}}
		}, "mesh.services.reviews.headers.request.set.Host", 50, "Host header"},
		{"remove :path", func(rv *mesh.Service) {
			rv.Headers = &mesh.Headers{Request: &mesh.HeaderOps{Remove: []string{"x-ok", ":path"}}}
		}, "mesh.services.reviews.headers.request.remove[1]", 50, "pseudo-header :path"},
		{"response :status", func(rv *mesh.Service) {
			rv.Headers = &mesh.Headers{Response: &mesh.HeaderOps{Set: map[string]string{":status": "200"}}}
		}, `mesh.services.reviews.headers.response.set.":status"`, 50, "pseudo-header :status"},
		{"value with NUL", route(mesh.Route{Match: prefix("/"), Headers: &mesh.Headers{Request: &mesh.HeaderOps{Add: map[string]string{"x-a": "a\x00b"}}}}),
			`mesh.services.reviews.routes.r0.headers.request.add."x-a"`, 55, "NUL, CR or LF"},
		{"value too long", func(rv *mesh.Service) {
			rv.Headers = &mesh.Headers{Request: &mesh.HeaderOps{Set: map[string]string{"x-a": strings.Repeat("%", 8193)}}}
		}, `mesh.services.reviews.headers.request.set."x-a"`, 50, "header value of 16386 bytes once each % is written %%"},
		{"names differ in case", func(rv *mesh.Service) {
			rv.Headers = &mesh.Headers{Request: &mesh.HeaderOps{Set: map[string]string{"X-A": "1", "x-a": "2"}}}
		}, `mesh.services.reviews.headers.request.set."x-a"`, 50, "header x-a is also written as X-A"},
		{"name not a token", func(rv *mesh.Service) {
			rv.Headers = &mesh.Headers{Response: &mesh.HeaderOps{Add: map[string]string{"x y": "1"}}}
		}, `mesh.services.reviews.headers.response.add."x y"`, 50, "does not allow in a field name"},
		{"fault delay 0", route(mesh.Route{Match: prefix("/"), Fault: &mesh.Fault{Delay: &mesh.FaultDelay{Percent: 1}}}),
			"mesh.services.reviews.routes.r0.fault.delay.duration", 55, "a fault delay of 0"},
		{"outlier interval 0", func(rv *mesh.Service) {
			rv.OutlierDetection = &mesh.OutlierDetection{Interval: &mesh.Duration{}}
		}, "mesh.services.reviews.outlierDetection.interval", 50, "interval of 0"},
		{"timeout too long", func(rv *mesh.Service) { rv.Timeout = &mesh.Duration{Duration: 9223372036 * time.Second} },
			"mesh.services.reviews.timeout", 50, "Envoy accepts less than 9223372036s"},
		{"rate limit too large", func(rv *mesh.Service) { rv.RateLimit = &mesh.RateLimit{RequestsPerSecond: 1 << 32} },
			"mesh.services.reviews.rateLimit.requestsPerSecond", 50, "more than Envoy's token bucket holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			es := gateErrors(t, reviewsWith(tc.mutate))
			if len(es) != 1 {
				t.Fatalf("%d errors, want 1:\n%v", len(es), es)
			}
			e := es[0]
			if e.Path != tc.path || e.Pos.File != "mesh.cue" || e.Pos.Line != tc.line || !strings.Contains(e.Msg, tc.msg) || e.Fix == "" {
				t.Errorf("got %v\nwant mesh.cue:%d %s: ...%s... with a fix", e, tc.line, tc.path, tc.msg)
			}
		})
	}
}

// Every problem of a revision is reported at once, in file order, and the
// values a service inherits from the mesh defaults are reported once, at
// the defaults.
func TestGateReportsAll(t *testing.T) {
	m := reviewsWith(func(rv *mesh.Service) {
		rv.Routes = []mesh.Route{
			{Name: "a", Match: mesh.Match{Path: &mesh.StringMatch{Regex: ptr("(")}}},
			{Name: "b", Match: prefix("/"), Headers: &mesh.Headers{Request: &mesh.HeaderOps{Remove: []string{"host"}}}},
		}
	})
	m.Defaults.Timeout = mesh.Duration{Duration: 9223372036 * time.Second}
	m.Positions["mesh.defaults.timeout"] = mesh.Pos{File: "mesh.cue", Line: 3, Column: 2}
	for _, s := range m.Services {
		s.Timeout = nil // inherit the default
	}
	es := gateErrors(t, m)
	var got []string
	for _, e := range es {
		got = append(got, e.Path)
	}
	want := []string{"mesh.defaults.timeout", "mesh.services.reviews.routes.a.match.path.regex", "mesh.services.reviews.routes.b.headers.request.remove[0]"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("paths %v, want %v:\n%v", got, want, es)
	}
}

// Header values are literal text: a % reaches Envoy as %%, which Envoy
// turns back into %, instead of being read as a substitution command.
func TestHeaderValuesAreLiteral(t *testing.T) {
	m := reviewsWith(func(rv *mesh.Service) {
		rv.Headers = &mesh.Headers{Response: &mesh.HeaderOps{Set: map[string]string{"x-progress": "100%", "x-peer": "%DOWNSTREAM_REMOTE_ADDRESS%"}}}
	})
	res, err := Compile(m, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	vh := routeConfig(t, res.Class("frontend-v1"), OutboundHTTPRouteName).VirtualHosts[0]
	got := map[string]string{}
	for _, h := range vh.ResponseHeadersToAdd {
		got[h.Header.Key] = h.Header.Value
	}
	if got["x-progress"] != "100%%" || got["x-peer"] != "%%DOWNSTREAM_REMOTE_ADDRESS%%" {
		t.Errorf("emitted values %v", got)
	}
}

// The backstop: problems the model checks cannot see (here planted in the
// emitted resources, as a compiler bug would) are found in the resources,
// including inside a packed HTTP filter, and located through provenance
// at the definition that produced them.
func TestGateBackstop(t *testing.T) {
	m := reviewsWith(func(rv *mesh.Service) {
		rv.Routes = []mesh.Route{{Name: "api", Match: prefix("/api")}}
	})
	c := &compilation{m: m, svcs: resolve(m), opts: Options{}.withDefaults(m), gate: true}

	// frontend's outbound route to reviews' route 0, and a virtual host
	// header edit.
	fe, packed, _, err := c.assemble(c.svcs["frontend"], "v1", inputFingerprints{})
	if err != nil {
		t.Fatal(err)
	}
	vh := routeConfig(t, fe, OutboundHTTPRouteName).VirtualHosts[0]
	vh.Routes[0].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "a{1001}"}}
	vh.RequestHeadersToAdd = append(vh.RequestHeadersToAdd, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: ":path", Value: "/x"}})
	es := c.findingErrors(c.checkResources(packed, nil, fe.Resources), fe.Provenance)
	wantErrors(t, es,
		`mesh.cue:55:5: mesh.services.reviews.routes.api: Envoy would reject route configuration "outbound|http", virtual_hosts[0].routes[0].match.safe_regex.regex: regex "a{1001}" is not valid RE2`,
		`mesh.cue:50:3: mesh.services.reviews: Envoy would reject route configuration "outbound|http", virtual_hosts[0].request_headers_to_add[`)

	// reviews' inbound RBAC filter: a packed message.
	rv, packed, _, err := c.assemble(c.svcs["reviews"], "v1", inputFingerprints{})
	if err != nil {
		t.Fatal(err)
	}
	planted := false
	for _, msg := range packed {
		if r, ok := msg.(*rbachttpv3.RBAC); ok && !planted && r.Rules != nil {
			if r.Rules.Policies == nil {
				r.Rules.Policies = map[string]*rbacv3.Policy{}
			}
			r.Rules.Policies["bad"] = &rbacv3.Policy{
				Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
					Name: "x-a", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
						MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "x{97}"}},
					}},
				}}}},
				Principals: []*rbacv3.Principal{},
			}
			planted = true
		}
	}
	es = c.findingErrors(c.checkResources(packed, nil, rv.Resources), rv.Provenance)
	wantErrors(t, es,
		`mesh.cue:50:3: mesh.services.reviews: Envoy would reject listener "inbound", filter_chains[0].filters[0].typed_config.http_filters[1].typed_config.rules.policies[bad].principals: value must contain at least 1 item(s)`,
		`mesh.cue:50:3: mesh.services.reviews: Envoy would reject listener "inbound", filter_chains[0].filters[0].typed_config.http_filters[1].typed_config.rules.policies[bad].permissions[0].header.string_match.safe_regex.regex: regex "x{97}" compiles to an RE2 program of 101 instructions`)
}

func wantErrors(t *testing.T, es schema.Errors, prefixes ...string) {
	t.Helper()
	for _, p := range prefixes {
		found := false
		for _, e := range es {
			found = found || strings.HasPrefix(e.Error(), p)
		}
		if !found {
			t.Errorf("no error starts with\n\t%s\nerrors:\n%v", p, es)
		}
	}
	if len(es) != len(prefixes) {
		t.Errorf("%d errors, want %d:\n%v", len(es), len(prefixes), es)
	}
}

func routeConfig(t *testing.T, c *Class, name string) *routev3.RouteConfiguration {
	t.Helper()
	for _, r := range c.Resources[resource.RouteType] {
		if rc := r.(*routev3.RouteConfiguration); rc.Name == name {
			return rc
		}
	}
	t.Fatalf("%s has no route configuration %s", c.Name, name)
	return nil
}
