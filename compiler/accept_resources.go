package compiler

import (
	"fmt"
	"strings"
	"sync"
	"unicode"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// The backstop of the acceptance gate: every emitted resource, and every
// configuration packed in an Any inside one, is checked against the proto
// constraints Envoy enforces (go-control-plane's generated ValidateAll,
// the same protoc-gen-validate rules Envoy is built with), and every regex
// and header mutation against the rules of rules.go. A finding is located
// through the class's provenance: the definition of the route, or of the
// service, that produced the offending part.

// finding is a problem in one resource.
type finding struct {
	typ  resource.Type
	name string // resource name
	part string // proto path inside the resource ("virtual_hosts[1].routes[0].match")
	msg  string
}

// resourceChecker walks resources. packed maps the Anys the compiler packed
// to their messages; other Anys are unmarshaled.
type resourceChecker struct {
	packed  map[*anypb.Any]proto.Message
	regexes *regexCache // shared cache of regexProblem
	typ     resource.Type
	name    string
	path    []seg // the current proto path
	out     []finding
}

// checkResources runs the backstop over a class's resources: the generated
// validation and the walk of every resource, then of every message the
// compiler packed into an Any (each once; a finding in one is then located
// by searching the resources for its Any). A message the classes share (an
// outbound cluster, its load assignment, the Anys in shared) is checked
// once per compilation, by the first class that has it: its findings,
// located at the same definition for every class, are reported once.
func (c *compilation) checkResources(packed map[*anypb.Any]proto.Message, shared map[*anypb.Any]bool, res map[resource.Type][]types.Resource) []finding {
	rc := &resourceChecker{packed: packed, regexes: &c.regexes}
	for _, t := range ResourceTypes {
		for _, r := range res[t] {
			if (t == resource.ClusterType || t == resource.EndpointType) && !c.firstCheck(r) {
				continue // shared with a class checked before (an outbound cluster)
			}
			rc.typ, rc.name, rc.path = t, cache.GetResourceName(r), rc.path[:0]
			rc.validate(r)
			rc.walk(r.ProtoReflect())
		}
	}
	for a, m := range packed {
		if shared[a] && !c.firstCheck(a) {
			continue
		}
		before := len(rc.out)
		rc.typ, rc.name, rc.path = "", "", rc.path[:0]
		rc.validate(m)
		rc.walk(m.ProtoReflect())
		if len(rc.out) == before {
			continue
		}
		typ, name, at := locateAny(packed, res, a)
		for i := range rc.out[before:] {
			f := &rc.out[before+i]
			f.typ, f.name = typ, name
			f.part = joinPath(at, f.part)
		}
	}
	return rc.out
}

func joinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "." + b
}

func (rc *resourceChecker) regex(re string) *problem { return rc.regexes.problem(re) }

// regexCache is regexProblem once per distinct pattern, safe for the
// concurrent classes of one compilation.
type regexCache struct {
	mu sync.Mutex
	m  map[string]*problem
}

func (rc *regexCache) problem(re string) *problem {
	rc.mu.Lock()
	p, ok := rc.m[re]
	rc.mu.Unlock()
	if ok {
		return p
	}
	p = regexProblem(re)
	rc.mu.Lock()
	if rc.m == nil {
		rc.m = map[string]*problem{}
	}
	rc.m[re] = p
	rc.mu.Unlock()
	return p
}

func (rc *resourceChecker) report(part, msg string) {
	rc.out = append(rc.out, finding{typ: rc.typ, name: rc.name, part: part, msg: msg})
}

// here renders the current path, followed by more.
func (rc *resourceChecker) here(more ...string) string {
	parts := make([]string, 0, len(rc.path)+len(more))
	for _, s := range rc.path {
		parts = append(parts, s.String())
	}
	return strings.Join(append(parts, more...), ".")
}

// validate runs the generated proto validation on m (recursive, except into
// Anys, which walk unpacks and validates on their own).
func (rc *resourceChecker) validate(m proto.Message) {
	v, ok := m.(interface{ ValidateAll() error })
	if !ok {
		return
	}
	err := v.ValidateAll()
	if err == nil {
		return
	}
	for _, pr := range pgvProblems(err) {
		rc.report(rc.here(pr[0]), pr[1])
	}
}

// pgvError is the shape of protoc-gen-validate's errors.
type pgvError interface {
	Field() string
	Reason() string
	Cause() error
	Key() bool
}

// pgvProblems flattens a validation error (one error, or several from
// ValidateAll, each possibly caused by more) into pairs of proto path
// ("virtual_hosts[0].routes[1].match.safe_regex.regex") and the innermost
// reason.
func pgvProblems(err error) [][2]string {
	if multi, ok := err.(interface{ AllErrors() []error }); ok {
		var out [][2]string
		for _, e := range multi.AllErrors() {
			out = append(out, pgvProblems(e)...)
		}
		return out
	}
	pe, ok := err.(pgvError)
	if !ok {
		return [][2]string{{"", err.Error()}}
	}
	field := snakeField(pe.Field())
	if pe.Cause() == nil {
		return [][2]string{{field, pe.Reason()}}
	}
	var out [][2]string
	for _, inner := range pgvProblems(pe.Cause()) {
		out = append(out, [2]string{joinPath(field, inner[0]), inner[1]})
	}
	return out
}

// snakeField turns a generated field name ("VirtualHosts[1]") into the
// proto one ("virtual_hosts[1]").
func snakeField(f string) string {
	name, index, _ := strings.Cut(f, "[")
	var b strings.Builder
	for i, r := range name {
		if unicode.IsUpper(r) {
			if i > 0 && name[i-1] != '_' {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	if index != "" {
		b.WriteString("[" + index)
	}
	return b.String()
}

// walk visits m and the parts of it that can hold a regex or a header
// mutation (see relevantFields). Anys are not entered: checkResources
// visits what the compiler packed on its own.
func (rc *resourceChecker) walk(m protoreflect.Message) {
	switch x := m.Interface().(type) {
	case *matcherv3.RegexMatcher:
		if p := rc.regex(x.GetRegex()); p != nil {
			rc.report(rc.here("regex"), p.msg)
		}
		return
	case *matcherv3.StringMatcher:
		// The common leaf (RBAC principals, SANs, header matches): only its
		// safe_regex can hold a target.
		if re := x.GetSafeRegex(); re != nil {
			if p := rc.regex(re.GetRegex()); p != nil {
				rc.report(rc.here("safe_regex", "regex"), p.msg)
			}
		}
		return
	case *corev3.HeaderValueOption:
		h := x.GetHeader()
		if p := mutationNameProblem(h.GetKey()); p != nil {
			rc.report(rc.here("header", "key"), p.msg)
		}
		if p := emittedValueProblem(h.GetValue()); p != nil {
			rc.report(rc.here("header", "value"), p.msg)
		}
		return
	case *routev3.RouteConfiguration:
		rc.removals(x.GetRequestHeadersToRemove(), x.GetResponseHeadersToRemove())
	case *routev3.VirtualHost:
		rc.removals(x.GetRequestHeadersToRemove(), x.GetResponseHeadersToRemove())
	case *routev3.Route:
		rc.removals(x.GetRequestHeadersToRemove(), x.GetResponseHeadersToRemove())
	}
	for _, fd := range relevantFields(m.Descriptor()) {
		if !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				rc.path = append(rc.path, seg{name: fd.Name(), index: i})
				rc.walk(l.Get(i).Message())
				rc.path = rc.path[:len(rc.path)-1]
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				rc.path = append(rc.path, seg{name: fd.Name(), index: -1, key: k.String()})
				rc.walk(mv.Message())
				rc.path = rc.path[:len(rc.path)-1]
				return true
			})
		default:
			rc.path = append(rc.path, seg{name: fd.Name(), index: -1})
			rc.walk(v.Message())
			rc.path = rc.path[:len(rc.path)-1]
		}
	}
}

// targets are the messages walk checks.
var targets = map[protoreflect.FullName]bool{
	"envoy.type.matcher.v3.RegexMatcher":       true,
	"envoy.config.core.v3.HeaderValueOption":   true,
	"envoy.config.route.v3.RouteConfiguration": true,
	"envoy.config.route.v3.VirtualHost":        true,
	"envoy.config.route.v3.Route":              true,
}

var (
	relevantMu   sync.Mutex
	relevant     = map[protoreflect.FullName][]protoreflect.FieldDescriptor{} // guarded by relevantMu
	relevantDone sync.Map                                                     // FullName -> []FieldDescriptor, read without the lock
)

// relevantFields are the message fields (single, list, or map values) of
// md through which a target can be reached without entering an Any. They
// are computed once per message type: a fixed point over every type md
// reaches, since message types nest recursively (RBAC permissions).
func relevantFields(md protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	if fs, ok := relevantDone.Load(md.FullName()); ok {
		return fs.([]protoreflect.FieldDescriptor)
	}
	relevantMu.Lock()
	defer relevantMu.Unlock()
	if fs, ok := relevant[md.FullName()]; ok {
		return fs
	}
	// Every type reachable from md.
	all := map[protoreflect.FullName]protoreflect.MessageDescriptor{}
	var collect func(protoreflect.MessageDescriptor)
	collect = func(d protoreflect.MessageDescriptor) {
		if _, ok := all[d.FullName()]; ok || d.FullName() == "google.protobuf.Any" {
			return
		}
		all[d.FullName()] = d
		for _, f := range messageFields(d) {
			collect(f.Message())
		}
	}
	collect(md)
	matters := map[protoreflect.FullName]bool{}
	for changed := true; changed; {
		changed = false
		for name, d := range all {
			if matters[name] {
				continue
			}
			m := targets[name]
			for _, f := range messageFields(d) {
				m = m || matters[f.Message().FullName()]
			}
			if m {
				matters[name], changed = true, true
			}
		}
	}
	for name, d := range all {
		if _, ok := relevant[name]; ok {
			continue
		}
		var fs []protoreflect.FieldDescriptor
		for _, f := range messageFields(d) {
			if matters[f.Message().FullName()] {
				fs = append(fs, f)
			}
		}
		relevant[name] = fs
		relevantDone.Store(name, fs)
	}
	return relevant[md.FullName()]
}

// messageFields are the fields of d that hold messages (for a map, its
// values), except Anys.
func messageFields(d protoreflect.MessageDescriptor) []protoreflect.FieldDescriptor {
	var out []protoreflect.FieldDescriptor
	fields := d.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		if f.IsMap() {
			f = f.MapValue()
		}
		if f.Kind() != protoreflect.MessageKind && f.Kind() != protoreflect.GroupKind {
			continue
		}
		if f.Message().FullName() == "google.protobuf.Any" {
			continue
		}
		out = append(out, fields.Get(i))
	}
	return out
}

// locateAny finds the resource, and the path in it, of an Any the compiler
// packed (searching through the other packed messages); "" if none holds
// it.
func locateAny(packed map[*anypb.Any]proto.Message, res map[resource.Type][]types.Resource, target *anypb.Any) (resource.Type, string, string) {
	for _, t := range ResourceTypes {
		for _, r := range res[t] {
			if path, ok := findAny(packed, r.ProtoReflect(), target, ""); ok {
				return t, cache.GetResourceName(r), path
			}
		}
	}
	return "", "", ""
}

func findAny(packed map[*anypb.Any]proto.Message, m protoreflect.Message, target *anypb.Any, path string) (string, bool) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		if a == target {
			return path, true
		}
		inner, ok := packed[a]
		if !ok {
			return "", false
		}
		m = inner.ProtoReflect()
	}
	var found string
	var ok bool
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len() && !ok; i++ {
				found, ok = findAny(packed, v.List().Get(i).Message(), target, joinPath(path, seg{name: fd.Name(), index: i}.String()))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				found, ok = findAny(packed, mv.Message(), target, joinPath(path, seg{name: fd.Name(), index: -1, key: k.String()}.String()))
				return !ok
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			found, ok = findAny(packed, v.Message(), target, joinPath(path, string(fd.Name())))
		}
		return !ok
	})
	return found, ok
}

// seg is one step of a proto path: a field, with its list index (-1 for
// none) or map key.
type seg struct {
	name  protoreflect.Name
	index int
	key   string
}

func (s seg) String() string {
	switch {
	case s.index >= 0:
		return fmt.Sprintf("%s[%d]", s.name, s.index)
	case s.key != "":
		return fmt.Sprintf("%s[%s]", s.name, s.key)
	}
	return string(s.name)
}

func (rc *resourceChecker) removals(req, resp []string) {
	for _, l := range []struct {
		field string
		names []string
	}{{"request_headers_to_remove", req}, {"response_headers_to_remove", resp}} {
		for i, n := range l.names {
			if p := mutationNameProblem(n); p != nil {
				rc.report(rc.here(fmt.Sprintf("%s[%d]", l.field, i)), p.msg)
			}
		}
	}
}

// findingErrors turns findings into positioned errors through the class's
// provenance.
func (c *compilation) findingErrors(fs []finding, ps Provenances) schema.Errors {
	var out schema.Errors
	seen := map[string]bool{}
	for _, f := range fs {
		p, _ := ps.Lookup(ProvenanceRef{Type: f.typ, Name: f.name, Part: f.part})
		pos, path := c.locate(p)
		where := f.part
		if where != "" {
			where = ", " + where
		}
		e := &schema.Error{
			Pos:  pos,
			Path: path,
			Msg:  fmt.Sprintf("Envoy would reject %s %q%s: %s", typeNoun[f.typ], f.name, where, f.msg),
			Fix:  "change the definition at this position; weft's checks of the definition should have named the field (please report this message to weft's maintainers)",
		}
		if k := e.Error(); !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

var typeNoun = map[resource.Type]string{
	resource.ListenerType: "listener",
	resource.RouteType:    "route configuration",
	resource.ClusterType:  "cluster",
	resource.EndpointType: "load assignment",
}

// locate recovers the position (with its column) and CUE path of a
// provenance: the shortest written path of that service on that line.
func (c *compilation) locate(p Provenance) (mesh.Pos, string) {
	sp := mesh.ServicePath(p.Service)
	best, bestPos := "", mesh.Pos{File: p.File, Line: p.Line}
	for path, pos := range c.m.Positions {
		if pos.File != p.File || pos.Line != p.Line || (path != sp && !strings.HasPrefix(path, sp+".")) {
			continue
		}
		if best == "" || len(path) < len(best) || (len(path) == len(best) && path < best) {
			best, bestPos = path, pos
		}
	}
	if best == "" {
		best = sp
	}
	return bestPos, best
}

// firstCheck reports whether m (a resource or a packed Any) is checked
// for the first time in this compilation.
func (c *compilation) firstCheck(m any) bool {
	_, seen := c.checked.LoadOrStore(m, struct{}{})
	return !seen
}
