package compiler

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"reflect"
	"sort"
	"sync"

	"github.com/weft-dev/weft/schema/mesh"
)

// A fingerprint is a sha256 over a canonical encoding of the inputs of
// one compilation step: equal fingerprints mean equal inputs. The encoding
// is derived by reflection from the Go types of the model, so a field
// added to the model is part of every fingerprint without anyone
// remembering to add it.
type fingerprint [sha256.Size]byte

// fpWriter accumulates a canonical encoding.
type fpWriter struct{ buf []byte }

func (w *fpWriter) str(s string) {
	w.buf = binary.AppendUvarint(w.buf, uint64(len(s)))
	w.buf = append(w.buf, s...)
}

func (w *fpWriter) u64(v uint64) { w.buf = binary.AppendUvarint(w.buf, v) }

func (w *fpWriter) sum() fingerprint { return sha256.Sum256(w.buf) }

// value appends v's canonical encoding: every exported field in
// declaration order, map entries in key order, nil distinct from empty.
func (w *fpWriter) value(v reflect.Value) { fpEncoderFor(v.Type())(w, v) }

type fpEncoder func(*fpWriter, reflect.Value)

var fpEncoders sync.Map // reflect.Type -> fpEncoder

func fpEncoderFor(t reflect.Type) fpEncoder {
	if e, ok := fpEncoders.Load(t); ok {
		return e.(fpEncoder)
	}
	e, _ := fpEncoders.LoadOrStore(t, newFPEncoder(t))
	return e.(fpEncoder)
}

func newFPEncoder(t reflect.Type) fpEncoder {
	switch t.Kind() {
	case reflect.Bool:
		return func(w *fpWriter, v reflect.Value) {
			if v.Bool() {
				w.u64(1)
			} else {
				w.u64(0)
			}
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return func(w *fpWriter, v reflect.Value) { w.u64(uint64(v.Int())) }
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return func(w *fpWriter, v reflect.Value) { w.u64(v.Uint()) }
	case reflect.Float32, reflect.Float64:
		return func(w *fpWriter, v reflect.Value) { w.u64(math.Float64bits(v.Float())) }
	case reflect.String:
		return func(w *fpWriter, v reflect.Value) { w.str(v.String()) }
	case reflect.Pointer:
		elem := fpEncoderFor(t.Elem())
		return func(w *fpWriter, v reflect.Value) {
			if v.IsNil() {
				w.u64(0)
				return
			}
			w.u64(1)
			elem(w, v.Elem())
		}
	case reflect.Slice, reflect.Array:
		elem := fpEncoderFor(t.Elem())
		return func(w *fpWriter, v reflect.Value) {
			if v.Kind() == reflect.Slice && v.IsNil() {
				w.u64(0)
				return
			}
			w.u64(uint64(v.Len()) + 1)
			for i := range v.Len() {
				elem(w, v.Index(i))
			}
		}
	case reflect.Map:
		key, elem := fpEncoderFor(t.Key()), fpEncoderFor(t.Elem())
		return func(w *fpWriter, v reflect.Value) {
			if v.IsNil() {
				w.u64(0)
				return
			}
			w.u64(uint64(v.Len()) + 1)
			keys := v.MapKeys()
			sort.Slice(keys, func(i, j int) bool { return lessKey(keys[i], keys[j]) })
			for _, k := range keys {
				key(w, k)
				elem(w, v.MapIndex(k))
			}
		}
	case reflect.Struct:
		var fields []int
		for i := range t.NumField() {
			if t.Field(i).IsExported() {
				fields = append(fields, i)
			}
		}
		encs := make([]fpEncoder, len(fields))
		for i, f := range fields {
			encs[i] = fpEncoderFor(t.Field(f).Type)
		}
		return func(w *fpWriter, v reflect.Value) {
			for i, f := range fields {
				encs[i](w, v.Field(f))
			}
		}
	case reflect.Interface:
		return func(w *fpWriter, v reflect.Value) {
			if v.IsNil() {
				w.u64(0)
				return
			}
			w.str(v.Elem().Type().String())
			w.value(v.Elem())
		}
	}
	panic("compiler: cannot fingerprint a " + t.String())
}

func lessKey(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.String:
		return a.String() < b.String()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() < b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return a.Uint() < b.Uint()
	}
	panic("compiler: cannot fingerprint a map keyed by " + a.Type().String())
}

// inputFingerprints are the fingerprints of one compilation's inputs.
type inputFingerprints struct {
	// global covers what every class reads: the trust domain, the
	// options that shape resources and whether endpoints are static.
	global fingerprint
	// services covers each resolved service and, with explicit
	// endpoints, its endpoints.
	services map[string]fingerprint
	// identities covers each service's identity: its namespace and
	// service account.
	identities map[string]fingerprint
}

// fingerprints computes the fingerprints of c's inputs, the services on
// one worker per core.
func (c *compilation) fingerprints() inputFingerprints {
	g := &fpWriter{}
	g.str("weft.compiler.v1")
	g.str(c.m.TrustDomain)
	g.u64(uint64(c.opts.InboundPort))
	g.u64(uint64(c.opts.OutboundPort))
	if c.eps == nil {
		g.u64(0)
	} else {
		g.u64(1)
	}
	names := mesh.SortedKeys(c.svcs)
	svc := make([]fingerprint, len(names))
	ids := make([]fingerprint, len(names))
	parallelChunks(len(names), func(lo, hi int) {
		w := &fpWriter{}
		for i := lo; i < hi; i++ {
			name, s := names[i], c.svcs[names[i]]
			w.buf = w.buf[:0]
			w.str(name)
			w.str(s.Namespace)
			w.str(s.ServiceAccount)
			ids[i] = w.sum()
			w.buf = w.buf[:0]
			w.str(name)
			w.value(reflect.ValueOf(s))
			if c.eps != nil {
				w.value(reflect.ValueOf(c.eps[name]))
			}
			svc[i] = w.sum()
		}
	})
	out := inputFingerprints{global: g.sum(), services: make(map[string]fingerprint, len(names)), identities: make(map[string]fingerprint, len(names))}
	for i, name := range names {
		out.services[name] = svc[i]
		out.identities[name] = ids[i]
	}
	return out
}

// classInputs are what one compiled service's classes were built from:
// enough to tell, in a later compilation, whether they would come out the
// same.
type classInputs struct {
	// key is the fingerprint of everything the classes read.
	key fingerprint
	// touched are the other services whose definitions the classes
	// read (dependencies, mirror targets), sorted.
	touched []string
	// identities are the other services of which the classes read only
	// the identity (authz callers), sorted.
	identities []string
	// positions are the source positions the classes looked up for their
	// provenance (path -> what Positions.Lookup answered): a later model
	// must answer the same.
	positions map[string]mesh.Pos
	// hash is the content hash of the resources (the snapshot version
	// without the revision).
	hash string
}

// samePositions reports whether m's positions answer the lookups of in
// as they were answered.
func (in *classInputs) samePositions(m *mesh.Model) bool {
	for path, pos := range in.positions {
		if m.Positions.Lookup(path) != pos {
			return false
		}
	}
	return true
}

// classKey is the fingerprint of the inputs of a service's classes: the
// global inputs, the service, its default callers, every service it read
// and the identity of every service whose identity it read.
func classKey(fps inputFingerprints, service string, callers, touched, identities []string) fingerprint {
	w := &fpWriter{}
	w.buf = append(w.buf, fps.global[:]...)
	w.str(service)
	own := fps.services[service]
	w.buf = append(w.buf, own[:]...)
	w.u64(uint64(len(callers)))
	for _, c := range callers {
		w.str(c)
	}
	w.u64(uint64(len(touched)))
	for _, t := range touched {
		w.str(t)
		if fp, ok := fps.services[t]; ok {
			w.buf = append(w.buf, fp[:]...)
		} else {
			w.str("(missing)")
		}
	}
	w.u64(uint64(len(identities)))
	for _, t := range identities {
		w.str(t)
		if fp, ok := fps.identities[t]; ok {
			w.buf = append(w.buf, fp[:]...)
		} else {
			w.str("(missing)")
		}
	}
	return w.sum()
}
