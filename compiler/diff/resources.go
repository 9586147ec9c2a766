package diff

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/weft-dev/weft/compiler"
)

// Statuses of a class or a resource.
const (
	Added   = "added"
	Removed = "removed"
	Changed = "changed"
)

// ResourceDiff is one resource of a class that differs.
type ResourceDiff struct {
	Type   string      `json:"type"` // listener, route, cluster, endpoint
	Name   string      `json:"name"`
	Status string      `json:"status"`
	Fields []FieldDiff `json:"fields,omitempty"` // for a changed resource
}

var typeNames = map[resource.Type]string{
	resource.ListenerType: "listener", resource.RouteType: "route",
	resource.ClusterType: "cluster", resource.EndpointType: "endpoint",
}

// classResources compares the resources of two classes (either may be
// nil: an added or removed class lists its resources as such).
func classResources(a, b *compiler.Class) []ResourceDiff {
	var out []ResourceDiff
	for _, t := range compiler.ResourceTypes {
		ra, rb := byName(a, t), byName(b, t)
		for _, name := range unionNames(keys(ra), keys(rb)) {
			x, y := ra[name], rb[name]
			switch {
			case x == nil:
				out = append(out, ResourceDiff{Type: typeNames[t], Name: name, Status: Added})
			case y == nil:
				out = append(out, ResourceDiff{Type: typeNames[t], Name: name, Status: Removed})
			case x == y || proto.Equal(x, y):
			default:
				out = append(out, ResourceDiff{Type: typeNames[t], Name: name, Status: Changed, Fields: protoDiffs(x, y)})
			}
		}
	}
	return out
}

func byName(c *compiler.Class, t resource.Type) map[string]types.Resource {
	out := map[string]types.Resource{}
	if c == nil {
		return out
	}
	for _, r := range c.Resources[t] {
		out[cache.GetResourceName(r)] = r
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

var messageType = reflect.TypeFor[protocmp.Message]()

// protoDiffs compares two resources field by field with go-cmp and
// protocmp: lists of named messages by name, Any unpacked, durations and
// wrapper types as their values.
func protoDiffs(a, b proto.Message) []FieldDiff {
	r := &protoReporter{}
	cmp.Equal(a, b,
		cmp.Reporter(r),
		protocmp.Transform(),
		cmp.FilterValues(func(x, y []protocmp.Message) bool { return named(x) && named(y) },
			cmp.Transformer("byName", func(ms []protocmp.Message) map[string]protocmp.Message {
				out := make(map[string]protocmp.Message, len(ms))
				for _, m := range ms {
					out[m["name"].(string)] = m
				}
				return out
			})),
		cmp.FilterValues(func(x, y protocmp.Message) bool {
			return scalarWKT(x) && scalarWKT(y) && x.Descriptor() == y.Descriptor()
		},
			cmp.Transformer("value", wktText)),
	)
	return r.diffs
}

// named reports whether every message of a list has a name, all
// distinct (an empty list is: it compares by name with a named one).
func named(ms []protocmp.Message) bool {
	seen := make(map[string]bool, len(ms))
	for _, m := range ms {
		n, ok := m["name"].(string)
		if !ok || n == "" || seen[n] {
			return false
		}
		seen[n] = true
	}
	return true
}

// scalarWKT reports whether m is a Duration or a wrapper type.
func scalarWKT(m protocmp.Message) bool {
	if m == nil {
		return false
	}
	d := m.Descriptor()
	if d == nil || d.FullName().Parent() != "google.protobuf" {
		return false
	}
	switch d.FullName().Name() {
	case "Duration", "BoolValue", "Int32Value", "Int64Value", "UInt32Value", "UInt64Value",
		"FloatValue", "DoubleValue", "StringValue", "BytesValue":
		return true
	}
	return false
}

// wktText is a Duration ("1.5s") or a wrapper's value.
func wktText(m protocmp.Message) string {
	if m.Descriptor().FullName().Name() == "Duration" {
		s, _ := m["seconds"].(int64)
		n, _ := m["nanos"].(int32)
		return (time.Duration(s)*time.Second + time.Duration(n)).String()
	}
	v, ok := m["value"]
	if !ok {
		return fmt.Sprint(reflect.Zero(reflect.TypeOf(m)).Interface())
	}
	return scalarText(reflect.ValueOf(v))
}

// protoReporter collects the leaves go-cmp finds different.
type protoReporter struct {
	path  cmp.Path
	diffs []FieldDiff
}

func (r *protoReporter) PushStep(ps cmp.PathStep) { r.path = append(r.path, ps) }
func (r *protoReporter) PopStep()                 { r.path = r.path[:len(r.path)-1] }

func (r *protoReporter) Report(rs cmp.Result) {
	if rs.Equal() {
		return
	}
	path, skip := protoPath(r.path)
	if skip {
		return
	}
	vx, vy := r.path.Last().Values()
	// A message or list one side lacks is written leaf by leaf.
	if !vx.IsValid() || !vy.IsValid() {
		v, added := vy, true
		if !vy.IsValid() {
			v, added = vx, false
		}
		byName := false
		if n := len(r.path); n >= 2 {
			if t, ok := r.path[n-2].(cmp.Transform); ok && t.Name() == "byName" {
				byName = true // an element of a list compared by name
			}
		}
		if leaves := expand(path, v.Interface()); len(leaves) > 0 {
			for _, l := range leaves {
				if byName && l.Path == path+".name" {
					continue // the name is the key
				}
				if added {
					r.diffs = append(r.diffs, FieldDiff{Path: l.Path, Old: None, New: l.New})
				} else {
					r.diffs = append(r.diffs, FieldDiff{Path: l.Path, Old: l.New, New: None})
				}
			}
			return
		}
	}
	r.diffs = append(r.diffs, FieldDiff{Path: path, Old: protoValueText(vx), New: protoValueText(vy)})
}

// expand lists the leaves of a transformed message or list of messages
// (New holds each value), nil for anything else. Named messages of a list
// are written by name, Any values as their fields, durations and wrappers
// as values.
func expand(path string, v any) []FieldDiff {
	switch x := v.(type) {
	case protocmp.Message:
		if x == nil {
			return nil
		}
		if scalarWKT(x) {
			return []FieldDiff{{Path: path, New: wktText(x)}}
		}
		var out []FieldDiff
		keys := make([]string, 0, len(x))
		for k := range x {
			if k != "@type" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		if len(keys) == 0 {
			return []FieldDiff{{Path: path, New: "{}"}}
		}
		any := x.Descriptor() != nil && x.Descriptor().FullName() == "google.protobuf.Any"
		for _, k := range keys {
			p := path + "." + k
			if any && k == "value" {
				p = path
			} else if path == "" {
				p = k
			}
			if sub := expand(p, x[k]); sub != nil {
				out = append(out, sub...)
			} else {
				out = append(out, FieldDiff{Path: p, New: protoValueText(reflect.ValueOf(x[k]))})
			}
		}
		return out
	case []protocmp.Message:
		var out []FieldDiff
		byName := named(x)
		for i, m := range x {
			key := strconv.Itoa(i)
			if byName {
				key = m["name"].(string)
			}
			elem := path + "[" + key + "]"
			for _, l := range expand(elem, m) {
				if !byName || l.Path != elem+".name" { // the name is the key
					out = append(out, l)
				}
			}
		}
		return out
	}
	return nil
}

// protoPath writes a go-cmp path over transformed messages in Envoy's
// field names: "virtual_hosts[reviews.shop:9080].routes[split].route.timeout";
// the value of an Any is written as its field ("typed_config.rules"). skip
// is true for the message type entry ("@type") of equal types.
func protoPath(p cmp.Path) (string, bool) {
	var b strings.Builder
	anyValue := false
	for i, step := range p {
		s, ok := step.(cmp.MapIndex)
		if !ok {
			if si, ok := step.(cmp.SliceIndex); ok {
				x, y := si.SplitKeys()
				if y < 0 {
					y = x
				}
				fmt.Fprintf(&b, "[%d]", y)
			}
			continue
		}
		key := fmt.Sprint(s.Key().Interface())
		parent := p[i-1].Type()
		if parent == messageType {
			if key == "@type" {
				if i == len(p)-1 {
					return "", !typeChanged(step)
				}
				continue
			}
			if anyValue && key == "value" {
				anyValue = false
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(key)
			vx, vy := step.Values()
			anyValue = isAny(vx) || isAny(vy)
			continue
		}
		fmt.Fprintf(&b, "[%s]", key)
		vx, vy := step.Values()
		anyValue = isAny(vx) || isAny(vy)
	}
	return b.String(), false
}

func isAny(v reflect.Value) bool {
	if !v.IsValid() {
		return false
	}
	if v.Kind() == reflect.Interface {
		if v.IsNil() {
			return false
		}
		v = v.Elem()
	}
	m, ok := v.Interface().(protocmp.Message)
	return ok && m != nil && m.Descriptor() != nil && m.Descriptor().FullName() == "google.protobuf.Any"
}

func typeChanged(step cmp.PathStep) bool {
	vx, vy := step.Values()
	return !vx.IsValid() || !vy.IsValid() || fmt.Sprint(vx.Interface()) != fmt.Sprint(vy.Interface())
}

// protoValueText writes a value of a transformed message: scalars as
// they are, enums by name, messages and lists as compact JSON (keys
// sorted), longer than 200 characters cut.
func protoValueText(v reflect.Value) string {
	if !v.IsValid() {
		return None
	}
	if v.Kind() == reflect.Interface {
		if v.IsNil() {
			return None
		}
		v = v.Elem()
	}
	s := scalarText(v)
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return s
}

func scalarText(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case string:
		if x == "" {
			return `""`
		}
		return x
	case protocmp.Enum:
		return x.String()
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	case protocmp.Message:
		return messageJSON(x)
	case fmt.Stringer:
		return x.String()
	}
	switch v.Kind() {
	case reflect.Slice, reflect.Map:
		var parts []any
		if v.Kind() == reflect.Slice {
			for i := range v.Len() {
				parts = append(parts, jsonable(v.Index(i)))
			}
			b, _ := json.Marshal(parts)
			return string(b)
		}
		m := map[string]any{}
		for _, k := range v.MapKeys() {
			m[fmt.Sprint(k.Interface())] = jsonable(v.MapIndex(k))
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	return fmt.Sprint(v.Interface())
}

// jsonable turns a transformed value into something encoding/json writes
// deterministically.
func jsonable(v reflect.Value) any {
	if v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	if m, ok := v.Interface().(protocmp.Message); ok {
		var out any
		_ = json.Unmarshal([]byte(messageJSON(m)), &out)
		return out
	}
	if e, ok := v.Interface().(protocmp.Enum); ok {
		return e.String()
	}
	return v.Interface()
}

// messageJSON is a message's proto3 JSON with sorted keys and no spaces
// (protojson's own output varies its whitespace between builds).
func messageJSON(m protocmp.Message) string {
	if m == nil {
		return None
	}
	pm := m.Unwrap()
	if pm == nil {
		return None
	}
	b, err := protojson.Marshal(pm)
	if err != nil {
		return fmt.Sprint(m)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return string(b)
	}
	out, _ := json.Marshal(v)
	return string(out)
}
