package diff

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/weft-dev/weft/schema/mesh"
)

// Line kinds: what a summary line is about.
const (
	KindService = "service" // a service added or removed
	KindVersion = "version" // a version added, removed or changed
	KindRoute   = "route"   // a route added or removed, or a field of one
	KindSplit   = "split"   // a route's weights
	KindTimeout = "timeout" // a route's or service's timeout
	KindRetries = "retries" // a route's or service's retry policy
	KindCalls   = "calls"   // a dependency added or dropped
	KindAuthz   = "authz"   // an authorization edge, or an authz rule
	KindField   = "field"   // any other field of a service
	KindMesh    = "mesh"    // the mesh's name, trust domain or defaults
	KindClass   = "class"   // a compiled change no other line explains
	KindEnv     = "env"     // an environment added or removed
	KindCount   = "count"   // how many classes changed and did not
)

// Line is one line of a summary, in the user's terms.
type Line struct {
	Text string `json:"text"`
	Kind string `json:"kind"`
	// Services are the services the line is about (the first is the one
	// whose definition changed); a line about the whole mesh has none.
	Services []string `json:"services,omitempty"`
}

// modelLines are the summary lines of the differences between two models
// of one environment, in order: the mesh, services added and removed, the
// changes of each service, authorization edges.
func modelLines(old, cur *mesh.Model) []Line {
	var out []Line
	out = append(out, meshLines(old, cur)...)
	inherit := inheritedChanges(old, cur)
	for _, name := range unionNames(old.ServiceNames(), cur.ServiceNames()) {
		a, b := old.Services[name], cur.Services[name]
		switch {
		case a == nil:
			out = append(out, Line{Text: fmt.Sprintf("new service %s (%s)", name, strings.Join(b.VersionNames(), ", ")), Kind: KindService, Services: []string{name}})
		case b == nil:
			out = append(out, Line{Text: "service " + name + " removed", Kind: KindService, Services: []string{name}})
		default:
			out = append(out, serviceLines(name, a, b, inherit)...)
		}
	}
	return append(out, edgeLines(old, cur)...)
}

// meshLines: the mesh's own fields and its defaults, one line per field.
func meshLines(old, cur *mesh.Model) []Line {
	var out []Line
	if old.Name != cur.Name {
		out = append(out, Line{Text: fmt.Sprintf("mesh name %s → %s", old.Name, cur.Name), Kind: KindMesh})
	}
	if old.TrustDomain != cur.TrustDomain {
		out = append(out, Line{Text: fmt.Sprintf("trust domain %s → %s (every identity changes)", old.TrustDomain, cur.TrustDomain), Kind: KindMesh})
	}
	for _, f := range fieldDiffs(old.Defaults, cur.Defaults) {
		out = append(out, Line{Text: "defaults." + f.Path + " " + f.Old + " → " + f.New, Kind: KindMesh})
	}
	return out
}

// inheritedChanges are, per service, the fields whose change comes from
// mesh.defaults alone: the service had the old default and has the new
// one. They are told once, as the defaults' line.
func inheritedChanges(old, cur *mesh.Model) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	type field struct {
		name string
		get  func(*mesh.Service) any
		def  func(*mesh.Defaults) any
	}
	fields := []field{
		{"namespace", func(s *mesh.Service) any { return s.Namespace }, func(d *mesh.Defaults) any { return d.Namespace }},
		{"mtls", func(s *mesh.Service) any { return s.MTLS }, func(d *mesh.Defaults) any { return d.MTLS }},
		{"timeout", func(s *mesh.Service) any { return s.Timeout }, func(d *mesh.Defaults) any { return &d.Timeout }},
		{"retries", func(s *mesh.Service) any { return s.Retries }, func(d *mesh.Defaults) any { return &d.Retries }},
		{"circuitBreaker", func(s *mesh.Service) any { return s.CircuitBreaker }, func(d *mesh.Defaults) any { return d.CircuitBreaker }},
		{"outlierDetection", func(s *mesh.Service) any { return s.OutlierDetection }, func(d *mesh.Defaults) any { return d.OutlierDetection }},
	}
	for _, f := range fields {
		if reflect.DeepEqual(f.def(&old.Defaults), f.def(&cur.Defaults)) {
			continue
		}
		for name, a := range old.Services {
			b := cur.Services[name]
			if b != nil && reflect.DeepEqual(f.get(a), f.def(&old.Defaults)) && reflect.DeepEqual(f.get(b), f.def(&cur.Defaults)) {
				if out[name] == nil {
					out[name] = map[string]bool{}
				}
				out[name][f.name] = true
			}
		}
	}
	return out
}

// serviceLines are the lines of one service present on both sides.
func serviceLines(name string, a, b *mesh.Service, inherit map[string]map[string]bool) []Line {
	var out []Line
	add := func(kind, text string, services ...string) {
		out = append(out, Line{Text: text, Kind: kind, Services: append([]string{name}, services...)})
	}
	// Versions.
	for _, v := range unionNames(a.VersionNames(), b.VersionNames()) {
		va, vb := a.Versions[v], b.Versions[v]
		switch {
		case va == nil:
			add(KindVersion, fmt.Sprintf("%s: new version %s", name, v))
		case vb == nil:
			add(KindVersion, fmt.Sprintf("%s: version %s removed", name, v))
		default:
			for _, f := range fieldDiffs(*va, *vb) {
				add(KindVersion, fmt.Sprintf("%s version %s: %s %s → %s", name, v, f.Path, f.Old, f.New))
			}
		}
	}
	// Routes, by name.
	ra, rb := routesByName(a.Routes), routesByName(b.Routes)
	for _, r := range unionNames(mesh.SortedKeys(ra), mesh.SortedKeys(rb)) {
		x, y := ra[r], rb[r]
		label := fmt.Sprintf("%s route %q", name, r)
		switch {
		case x == nil:
			add(KindRoute, fmt.Sprintf("%s: new route %q%s", name, r, routeShape(y)), mirrorTarget(y)...)
		case y == nil:
			add(KindRoute, fmt.Sprintf("%s: route %q removed", name, r), mirrorTarget(x)...)
		default:
			if w := weights(x.To, y.To); w != "" {
				add(KindSplit, label+": "+w)
			}
			if !reflect.DeepEqual(x.Timeout, y.Timeout) {
				add(KindTimeout, fmt.Sprintf("%s: timeout %s → %s", label, routeTimeout(x, a), routeTimeout(y, b)))
			}
			if !reflect.DeepEqual(x.Retries, y.Retries) {
				add(KindRetries, fmt.Sprintf("%s: retries %s → %s", label, routeRetries(x, a), routeRetries(y, b)))
			}
			rest := cmpopts.IgnoreFields(mesh.Route{}, "To", "Timeout", "Retries")
			for _, f := range fieldDiffs(*x, *y, rest) {
				add(KindRoute, fmt.Sprintf("%s: %s %s → %s", label, f.Path, f.Old, f.New), append(mirrorTarget(x), mirrorTarget(y)...)...)
			}
		}
	}
	// Calls, as a set.
	for _, c := range minus(sortedSet(b.Calls), sortedSet(a.Calls)) {
		add(KindCalls, fmt.Sprintf("%s now calls %s", name, c), c)
	}
	for _, c := range minus(sortedSet(a.Calls), sortedSet(b.Calls)) {
		add(KindCalls, fmt.Sprintf("%s no longer calls %s", name, c), c)
	}
	inh := inherit[name]
	if !reflect.DeepEqual(a.Timeout, b.Timeout) && !inh["timeout"] {
		add(KindTimeout, fmt.Sprintf("%s: timeout %s → %s", name, durationText(a.Timeout), durationText(b.Timeout)))
	}
	if !reflect.DeepEqual(a.Retries, b.Retries) && !inh["retries"] {
		add(KindRetries, fmt.Sprintf("%s: retries %s → %s", name, retriesText(a.Retries), retriesText(b.Retries)))
	}
	// Authorization: its edges are told for the whole mesh (edgeLines);
	// the rules themselves one by one.
	out = append(out, authzLines(name, authzOf(a), authzOf(b))...)
	// Everything else, field by field: a field added to the model later
	// is covered without anyone listing it here.
	rest := cmpopts.IgnoreFields(mesh.Service{}, "Name", "Versions", "Routes", "Calls", "Timeout", "Retries", "Authz")
	for _, f := range fieldDiffs(*a, *b, rest) {
		top, _, _ := strings.Cut(f.Path, ".")
		top, _, _ = strings.Cut(top, "[")
		if inh[top] {
			continue
		}
		add(KindField, fmt.Sprintf("%s: %s %s → %s", name, f.Path, f.Old, f.New))
	}
	return out
}

// authzLines: each allow or deny rule that differs, written whole
// ("orders: authz.allow[0] from frontend, cart → from cart, reviews"),
// and an allow list written or dropped.
func authzLines(name string, a, b mesh.Authz) []Line {
	var out []Line
	add := func(text string) {
		out = append(out, Line{Text: name + ": " + text, Kind: KindAuthz, Services: []string{name}})
	}
	written := func(z mesh.Authz) bool { return z.AllowSet || len(z.Allow) > 0 }
	switch {
	case written(a) && !written(b):
		add("authz.allow removed: the services that call it are allowed")
	case !written(a) && written(b) && len(b.Allow) == 0:
		add("authz.allow written empty: nobody is allowed")
	}
	for _, kind := range []string{"allow", "deny"} {
		ra, rb := a.Allow, b.Allow
		if kind == "deny" {
			ra, rb = a.Deny, b.Deny
		}
		for i := range max(len(ra), len(rb)) {
			var x, y string
			if i < len(ra) {
				x = ruleText(ra[i])
			}
			if i < len(rb) {
				y = ruleText(rb[i])
			}
			switch {
			case x == y:
			case x == "":
				add(fmt.Sprintf("new authz.%s[%d] %s", kind, i, y))
			case y == "":
				add(fmt.Sprintf("authz.%s[%d] %s removed", kind, i, x))
			default:
				add(fmt.Sprintf("authz.%s[%d] %s → %s", kind, i, x, y))
			}
		}
	}
	return out
}

// ruleText: "from cart, web; methods GET; paths /orders/*" ("any
// request" for a rule without conditions).
func ruleText(r mesh.AuthzRule) string {
	var parts []string
	for _, f := range []struct {
		name string
		vals []string
	}{{"from", r.From}, {"methods", r.Methods}, {"paths", r.Paths}} {
		if len(f.vals) > 0 {
			parts = append(parts, f.name+" "+strings.Join(f.vals, ", "))
		}
	}
	if len(parts) == 0 {
		return "(any request)"
	}
	return strings.Join(parts, "; ")
}

func authzOf(s *mesh.Service) mesh.Authz {
	if s.Authz == nil {
		return mesh.Authz{}
	}
	return *s.Authz
}

func routesByName(rs mesh.Routes) map[string]*mesh.Route {
	out := make(map[string]*mesh.Route, len(rs))
	for i := range rs {
		out[rs[i].Name] = &rs[i]
	}
	return out
}

func mirrorTarget(r *mesh.Route) []string {
	if r.Mirror == nil {
		return nil
	}
	return []string{r.Mirror.To}
}

// routeShape is a new route's weights, for its line.
func routeShape(r *mesh.Route) string {
	if len(r.To) == 0 {
		return ""
	}
	var parts []string
	for _, v := range mesh.SortedKeys(r.To) {
		parts = append(parts, fmt.Sprintf("%s %d", v, r.To[v]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// weights: "v1 90 → 50, v3 10 → 50" for the versions whose weight
// changed (a version a side does not name has weight 0, as compiled),
// "" when none did.
func weights(a, b map[string]int) string {
	var parts []string
	for _, v := range unionNames(mesh.SortedKeys(a), mesh.SortedKeys(b)) {
		if a[v] != b[v] {
			parts = append(parts, fmt.Sprintf("%s %d → %d", v, a[v], b[v]))
		}
	}
	return strings.Join(parts, ", ")
}

func routeTimeout(r *mesh.Route, s *mesh.Service) string {
	if r.Timeout != nil {
		return durationText(r.Timeout)
	}
	return durationText(s.Timeout) + " (the service's)"
}

func routeRetries(r *mesh.Route, s *mesh.Service) string {
	if r.Retries != nil {
		return retriesText(r.Retries)
	}
	return retriesText(s.Retries) + " (the service's)"
}

func durationText(d *mesh.Duration) string {
	if d == nil {
		return "none"
	}
	return d.String()
}

// retriesText: "2 attempts, 500ms per try, on connect-failure,5xx".
func retriesText(r *mesh.Retries) string {
	if r == nil {
		return "none"
	}
	s := fmt.Sprintf("%d attempts", r.Attempts)
	if r.Attempts == 1 {
		s = "1 attempt"
	}
	if r.PerTryTimeout != nil {
		s += ", " + r.PerTryTimeout.String() + " per try"
	}
	if len(r.On) > 0 {
		s += ", on " + strings.Join(r.On, ",")
	}
	return s
}

// FieldDiff is one field that differs: its path, and the old and new
// values as text ("(none)" where a side has no value).
type FieldDiff struct {
	Path string `json:"path"`
	Old  string `json:"old"`
	New  string `json:"new"`
}

// None is how a missing value is written.
const None = "(none)"

// fieldDiffs compares two model values with go-cmp and returns every leaf
// that differs, with its path in the schema's field names (json tags),
// map keys and route names in brackets. Routes are compared by name,
// nil and empty alike.
func fieldDiffs(a, b any, opts ...cmp.Option) []FieldDiff {
	r := &modelReporter{}
	opts = append(opts,
		cmp.Reporter(r),
		cmpopts.EquateEmpty(),
		cmp.Transformer("byName", func(rs mesh.Routes) map[string]mesh.Route {
			out := make(map[string]mesh.Route, len(rs))
			for _, x := range rs {
				out[x.Name] = x
			}
			return out
		}),
		cmp.Comparer(func(x, y mesh.Duration) bool { return x.Duration == y.Duration }),
	)
	cmp.Equal(a, b, opts...)
	return r.diffs
}

// modelReporter collects the leaves go-cmp finds different.
type modelReporter struct {
	path  cmp.Path
	diffs []FieldDiff
}

func (r *modelReporter) PushStep(ps cmp.PathStep) { r.path = append(r.path, ps) }
func (r *modelReporter) PopStep()                 { r.path = r.path[:len(r.path)-1] }

func (r *modelReporter) Report(rs cmp.Result) {
	if rs.Equal() {
		return
	}
	vx, vy := r.path.Last().Values()
	r.diffs = append(r.diffs, FieldDiff{Path: modelPath(r.path), Old: valueText(vx), New: valueText(vy)})
}

// modelPath writes a go-cmp path in the schema's terms:
// "routes.split.fault.delay.percent" is written `routes["split"]...`.
func modelPath(p cmp.Path) string {
	var b strings.Builder
	for i, step := range p {
		switch s := step.(type) {
		case cmp.StructField:
			parent := p[i-1].Type()
			for parent.Kind() == reflect.Pointer {
				parent = parent.Elem()
			}
			name := s.Name()
			if f, ok := parent.FieldByName(name); ok {
				if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag != "" && tag != "-" {
					name = tag
				}
			}
			if name == "Duration" && parent == reflect.TypeFor[mesh.Duration]() {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(name)
		case cmp.MapIndex:
			fmt.Fprintf(&b, "[%s]", keyText(s.Key()))
		case cmp.SliceIndex:
			x, y := s.SplitKeys()
			if y < 0 {
				y = x
			}
			fmt.Fprintf(&b, "[%d]", y)
		}
	}
	return b.String()
}

func keyText(k reflect.Value) string {
	if k.Kind() == reflect.String {
		s := k.String()
		if mesh.Label(s) == s {
			return s
		}
		return strconv.Quote(s)
	}
	return fmt.Sprint(k.Interface())
}

// valueText writes a model value compactly: scalars as they are,
// durations as "2s", anything else as JSON (map keys sorted).
func valueText(v reflect.Value) string {
	if !v.IsValid() {
		return None
	}
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return None
		}
		v = v.Elem()
	}
	if v.Type() == reflect.TypeFor[mesh.Duration]() {
		return v.Interface().(mesh.Duration).String()
	}
	switch v.Kind() {
	case reflect.String:
		if v.String() == "" {
			return `""`
		}
		return v.String()
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return fmt.Sprint(v.Interface())
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 {
			return None
		}
	}
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return fmt.Sprint(v.Interface())
	}
	return string(b)
}

func unionNames(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out
}

func sortedSet(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return slices.Compact(out)
}
