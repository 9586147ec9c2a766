package policies

import (
	"encoding"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/weft-dev/weft/schema/mesh"
)

// Input is what one evaluation of the policies sees.
type Input struct {
	// Model is the mesh of one environment (or the base alone), loaded and
	// validated by schema.Load.
	Model *mesh.Model
	// Splits are the traffic splits of the repository's environments, by
	// environment name (see SplitsOf); the canary rule compares the
	// model's splits with them. Nil leaves input.splits empty.
	Splits map[string]Splits
}

// Splits are the traffic splits of one environment: service name -> route
// name -> the route's weights by version (its to), for the routes that
// have one.
type Splits map[string]map[string]map[string]int

// SplitsOf returns the splits of every service of m: what input.splits
// holds for one environment. It is cheap (a pass over the routes) and
// keeps nothing else of the model.
func SplitsOf(m *mesh.Model) Splits {
	out := Splits{}
	for name, s := range m.Services {
		for _, r := range s.Routes {
			if r.To == nil {
				continue
			}
			if out[name] == nil {
				out[name] = map[string]map[string]int{}
			}
			out[name][r.Name] = r.To
		}
	}
	return out
}

// EnvName is the environment name the policies use for a model's
// environment: BaseEnv for the base alone.
func EnvName(env string) string {
	if env == "" {
		return BaseEnv
	}
	return env
}

// inheritable are the service fields the loader fills from mesh.defaults
// when a service leaves them unset; input.mesh.services[_].inherited
// names those that were.
var inheritable = []struct {
	field string
	get   func(*mesh.Service, *mesh.Defaults) (any, any)
}{
	{"namespace", func(s *mesh.Service, d *mesh.Defaults) (any, any) { return s.Namespace, d.Namespace }},
	{"mtls", func(s *mesh.Service, d *mesh.Defaults) (any, any) { return s.MTLS, d.MTLS }},
	{"timeout", func(s *mesh.Service, d *mesh.Defaults) (any, any) { return s.Timeout, &d.Timeout }},
	{"retries", func(s *mesh.Service, d *mesh.Defaults) (any, any) { return s.Retries, &d.Retries }},
	{"circuitBreaker", func(s *mesh.Service, d *mesh.Defaults) (any, any) { return s.CircuitBreaker, d.CircuitBreaker }},
	{"outlierDetection", func(s *mesh.Service, d *mesh.Defaults) (any, any) { return s.OutlierDetection, d.OutlierDetection }},
}

// inherited reports the fields of s that came from the mesh defaults: not
// written for the service (no position) and equal to the default. The
// equality guard keeps a value set through a CUE pattern or comprehension
// (which has no position of its own) from counting as inherited unless it
// is the default anyway.
func inherited(m *mesh.Model, name string, s *mesh.Service) []string {
	var out []string
	base := mesh.ServicePath(name) + "."
	for _, f := range inheritable {
		if _, written := m.Positions[base+f.field]; written {
			continue
		}
		v, d := f.get(s, &m.Defaults)
		if reflect.DeepEqual(v, d) {
			out = append(out, f.field)
		}
	}
	return out
}

// BuildInput converts an evaluation's input to the document the rules see,
// directly as an OPA value (no JSON round trip):
//
//   - input.mesh is the model as its JSON encoding has it (the field names
//     and shapes of the CUE schema: routes keyed by route name, durations
//     as strings), with three differences that make rules simpler: lists
//     are never null (an absent list is []), an authz allow list written
//     empty is [] (an absent one is left out), and each service has "inherited",
//     an object whose keys are the fields the loader resolved from
//     mesh.defaults (the service did not write them).
//   - input.routes is the effective route table of every service with an
//     http or grpc port, by service name, as the compiler builds it: one
//     entry per route in precedence order, then the implicit catch-all
//     route that the compiler adds when the last route does not match every
//     request. Each entry has service, index (its place in the table; -1
//     for the implicit route), name (not for the implicit route), timeout
//     and retries (the route's own, else the service's) with
//     timeoutFrom and retriesFrom ("route", "service" or "defaults"), the
//     timeout and the retries' perTryTimeout (when set) in nanoseconds as
//     timeoutNs and perTryTimeoutNs, and rateLimit (the route's own, when
//     it has one).
//   - input.environment ("base" for the base alone), input.revision, and
//     input.splits (see Input.Splits), which always has the evaluated
//     environment's own splits.
//
// Services are encoded concurrently: the cost grows linearly with the
// mesh and is shared between the machine's cores.
func BuildInput(in Input) ast.Value {
	m := in.Model
	names := mesh.SortedKeys(m.Services)
	type encoded struct{ service, routes *ast.Term }
	out := make([]encoded, len(names))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(names)/64))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := newInterner()
			for i := w; i < len(names); i += workers {
				name := names[i]
				s := m.Services[name]
				inh := inherited(m, name, s)
				obj := encode(st, reflect.ValueOf(s)).Value.(ast.Object)
				emptyAllow(obj, s)
				io := ast.NewObjectWithCapacity(len(inh))
				for _, f := range inh {
					io.Insert(ast.InternedTerm(f), ast.InternedTerm(true))
				}
				obj.Insert(ast.InternedTerm("inherited"), ast.NewTerm(io))
				out[i] = encoded{service: ast.NewTerm(obj), routes: routeTable(st, name, s, obj, inh)}
			}
		}()
	}
	wg.Wait()
	services := ast.NewObjectWithCapacity(len(names))
	routes := ast.NewObjectWithCapacity(len(names))
	for i, name := range names {
		key := ast.StringTerm(name)
		services.Insert(key, out[i].service)
		if out[i].routes != nil {
			routes.Insert(key, out[i].routes)
		}
	}
	st := newInterner()
	meshObj := ast.NewObject(
		ast.Item(ast.InternedTerm("name"), ast.StringTerm(m.Name)),
		ast.Item(ast.InternedTerm("trustDomain"), ast.StringTerm(m.TrustDomain)),
		ast.Item(ast.InternedTerm("defaults"), encode(st, reflect.ValueOf(&m.Defaults))),
		ast.Item(ast.InternedTerm("services"), ast.NewTerm(services)),
	)
	if m.Observability != nil {
		meshObj.Insert(ast.InternedTerm("observability"), encode(st, reflect.ValueOf(m.Observability)))
	}
	all := in.Splits
	if env := EnvName(m.Environment); all[env] == nil {
		// The environment's own splits, so that rules can compare
		// input.splits entries whole.
		all = maps.Clone(all)
		if all == nil {
			all = map[string]Splits{}
		}
		all[env] = SplitsOf(m)
	}
	splits := ast.NewObjectWithCapacity(len(all))
	for _, env := range mesh.SortedKeys(all) {
		splits.Insert(ast.StringTerm(env), encode(st, reflect.ValueOf(all[env])))
	}
	return ast.NewObject(
		ast.Item(ast.InternedTerm("mesh"), ast.NewTerm(meshObj)),
		ast.Item(ast.InternedTerm("routes"), ast.NewTerm(routes)),
		ast.Item(ast.InternedTerm("environment"), ast.StringTerm(EnvName(m.Environment))),
		ast.Item(ast.InternedTerm("revision"), ast.StringTerm(m.Revision)),
		ast.Item(ast.InternedTerm("splits"), ast.NewTerm(splits)),
	)
}

// emptyAllow writes an allow list that was written empty (authz: allow:
// [], which admits nobody) as [] rather than leaving it out like an
// absent one (which means the default callers).
func emptyAllow(svc ast.Object, s *mesh.Service) {
	if s.Authz == nil || !s.Authz.AllowSet || len(s.Authz.Allow) > 0 {
		return
	}
	if t := svc.Get(ast.InternedTerm("authz")); t != nil {
		if az, ok := t.Value.(ast.Object); ok {
			az.Insert(ast.InternedTerm("allow"), ast.ArrayTerm())
		}
	}
}

// routeTable is input.routes[name]: nil for a service without an http or
// grpc port (it has no route table). The timeout and retries terms are
// those of the encoded service (svc), shared rather than encoded again.
func routeTable(st *interner, name string, s *mesh.Service, svc ast.Object, inherited []string) *ast.Term {
	routed := false
	for _, p := range s.Ports {
		routed = routed || p.Protocol == mesh.HTTP || p.Protocol == mesh.GRPC
	}
	if !routed {
		return nil
	}
	from := func(field string) string {
		if slices.Contains(inherited, field) {
			return "defaults"
		}
		return "service"
	}
	service := st.term(name)
	routes, _ := svc.Get(ast.InternedTerm("routes")).Value.(ast.Object)
	entry := func(i int, r *mesh.Route) *ast.Term {
		src := svc
		timeout, timeoutSrc, timeoutFrom := s.Timeout, svc, from("timeout")
		retries, retriesSrc, retriesFrom := s.Retries, svc, from("retries")
		obj := ast.NewObjectWithCapacity(10)
		obj.Insert(ast.InternedTerm("service"), service)
		obj.Insert(ast.InternedTerm("index"), ast.InternedTerm(i))
		if r != nil {
			src = routes.Get(st.term(r.Name)).Value.(ast.Object)
			if r.Timeout != nil {
				timeout, timeoutSrc, timeoutFrom = r.Timeout, src, "route"
			}
			if r.Retries != nil {
				retries, retriesSrc, retriesFrom = r.Retries, src, "route"
			}
			obj.Insert(ast.InternedTerm("name"), st.term(r.Name))
			if t := src.Get(ast.InternedTerm("rateLimit")); t != nil {
				obj.Insert(ast.InternedTerm("rateLimit"), t)
			}
		}
		// A loaded model always has both (the loader resolves them); a
		// model built by hand may not.
		if t := timeoutSrc.Get(ast.InternedTerm("timeout")); timeout != nil && t != nil {
			obj.Insert(ast.InternedTerm("timeout"), t)
			obj.Insert(ast.InternedTerm("timeoutNs"), ast.InternedTerm(int(timeout.Duration)))
			obj.Insert(ast.InternedTerm("timeoutFrom"), ast.InternedTerm(timeoutFrom))
		}
		if t := retriesSrc.Get(ast.InternedTerm("retries")); retries != nil && t != nil {
			obj.Insert(ast.InternedTerm("retries"), t)
			if retries.PerTryTimeout != nil {
				obj.Insert(ast.InternedTerm("perTryTimeoutNs"), ast.InternedTerm(int(retries.PerTryTimeout.Duration)))
			}
			obj.Insert(ast.InternedTerm("retriesFrom"), ast.InternedTerm(retriesFrom))
		}
		return ast.NewTerm(obj)
	}
	terms := make([]*ast.Term, 0, len(s.Routes)+1)
	for i := range s.Routes {
		terms = append(terms, entry(i, &s.Routes[i]))
	}
	if len(s.Routes) == 0 || !s.Routes[len(s.Routes)-1].Match.IsCatchAll() {
		terms = append(terms, entry(-1, nil))
	}
	return ast.ArrayTerm(terms...)
}

// encode converts a model value to an OPA term following its JSON
// encoding (json tags, omitempty, encoding.TextMarshaler), except that nil
// lists and maps without omitempty become [] and {} rather than null.
func encode(st *interner, v reflect.Value) *ast.Term { return encoderFor(v.Type())(st, v) }

type encoderFunc func(*interner, reflect.Value) *ast.Term

// interner interns the string terms of one encoding: a mesh repeats the
// same values (protocols, methods, label values, version names) in every
// service, and a shared term is one allocation instead of one per use.
// OPA terms are immutable, so sharing them is safe.
type interner struct{ terms map[string]*ast.Term }

func newInterner() *interner { return &interner{terms: map[string]*ast.Term{}} }

func (st *interner) term(s string) *ast.Term {
	if t, ok := st.terms[s]; ok {
		return t
	}
	t := ast.InternedTerm(s)
	if len(st.terms) < 1<<16 {
		st.terms[s] = t
	}
	return t
}

var (
	encoders      sync.Map // reflect.Type -> encoderFunc
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	durationType  = reflect.TypeFor[mesh.Duration]()
	routesType    = reflect.TypeFor[mesh.Routes]()
)

// encoderFor returns the encoder of a type, built on first use (the model
// has no recursive types; two goroutines may build the same encoder, and
// either result is kept).
func encoderFor(t reflect.Type) encoderFunc {
	if e, ok := encoders.Load(t); ok {
		return e.(encoderFunc)
	}
	e, _ := encoders.LoadOrStore(t, newEncoder(t))
	return e.(encoderFunc)
}

func newEncoder(t reflect.Type) encoderFunc {
	switch {
	case t == routesType:
		// An object keyed by route name, as in CUE (mesh.Routes'
		// JSON encoding).
		route := encoderFor(t.Elem())
		name, _ := t.Elem().FieldByName("Name")
		return func(st *interner, v reflect.Value) *ast.Term {
			obj := ast.NewObjectWithCapacity(v.Len())
			for i := range v.Len() {
				r := v.Index(i)
				obj.Insert(st.term(r.FieldByIndex(name.Index).String()), route(st, r))
			}
			return ast.NewTerm(obj)
		}
	case t == durationType:
		return func(st *interner, v reflect.Value) *ast.Term {
			return st.term(time.Duration(v.Field(0).Int()).String())
		}
	case t.Kind() != reflect.Pointer && t.Implements(textMarshaler):
		return func(st *interner, v reflect.Value) *ast.Term {
			b, _ := v.Interface().(encoding.TextMarshaler).MarshalText()
			return st.term(string(b))
		}
	}
	switch t.Kind() {
	case reflect.Pointer:
		elem := encoderFor(t.Elem())
		return func(st *interner, v reflect.Value) *ast.Term {
			if v.IsNil() {
				return ast.InternedNullTerm
			}
			return elem(st, v.Elem())
		}
	case reflect.String:
		return func(st *interner, v reflect.Value) *ast.Term { return st.term(v.String()) }
	case reflect.Bool:
		return func(_ *interner, v reflect.Value) *ast.Term { return ast.InternedTerm(v.Bool()) }
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return func(_ *interner, v reflect.Value) *ast.Term { return ast.InternedTerm(int(v.Int())) }
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return func(_ *interner, v reflect.Value) *ast.Term { return ast.InternedTerm(int(v.Uint())) }
	case reflect.Float32, reflect.Float64:
		return func(_ *interner, v reflect.Value) *ast.Term { return ast.FloatNumberTerm(v.Float()) }
	case reflect.Slice, reflect.Array:
		elem := encoderFor(t.Elem())
		return func(st *interner, v reflect.Value) *ast.Term {
			terms := make([]*ast.Term, v.Len())
			for i := range terms {
				terms[i] = elem(st, v.Index(i))
			}
			return ast.ArrayTerm(terms...)
		}
	case reflect.Map:
		elem := encoderFor(t.Elem())
		return func(st *interner, v reflect.Value) *ast.Term {
			obj := ast.NewObjectWithCapacity(v.Len())
			// SetIter* reuse one key and one value instead of
			// allocating a copy per entry.
			key, val := reflect.New(t.Key()).Elem(), reflect.New(t.Elem()).Elem()
			iter := v.MapRange()
			for iter.Next() {
				key.SetIterKey(iter)
				val.SetIterValue(iter)
				obj.Insert(st.term(key.String()), elem(st, val))
			}
			return ast.NewTerm(obj)
		}
	case reflect.Struct:
		fields := structFields(t)
		return func(st *interner, v reflect.Value) *ast.Term {
			obj := ast.NewObjectWithCapacity(len(fields))
			for _, f := range fields {
				fv := v.Field(f.index)
				if f.omitEmpty && isEmpty(fv) {
					continue
				}
				obj.Insert(f.key, f.enc(st, fv))
			}
			return ast.NewTerm(obj)
		}
	}
	panic("policies: cannot encode a " + t.String())
}

type field struct {
	key       *ast.Term
	index     int
	omitEmpty bool
	enc       encoderFunc
}

// structFields lists the JSON-encoded fields of a struct type, sorted by
// key.
func structFields(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = sf.Name
		}
		fs = append(fs, field{
			key:       ast.InternedTerm(name),
			index:     i,
			omitEmpty: strings.Contains(","+opts+",", ",omitempty,"),
			enc:       encoderFor(sf.Type),
		})
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].key.Value.Compare(fs[j].key.Value) < 0 })
	return fs
}

func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return v.IsNil()
	case reflect.Slice, reflect.Map, reflect.String, reflect.Array:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	}
	return false
}
