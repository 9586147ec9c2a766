package compiler

import (
	"bytes"
	"errors"
	"math/rand"
	"sort"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	yamlv2 "go.yaml.in/yaml/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// TestFastYAMLMatchesReference writes every resource and every static
// bootstrap of every golden case with the direct writer and with the
// reference path (protojson -> JSON -> sigs.k8s.io/yaml) and requires the
// same bytes, and that the direct writer handled each one itself.
func TestFastYAMLMatchesReference(t *testing.T) {
	resources, boots := 0, 0
	var all []*Class
	for _, tc := range cases() {
		all = append(all, compileCase(t, tc).Classes...)
	}
	for _, cs := range localizedCases(t) {
		all = append(all, cs...)
	}
	for _, c := range all {
		{
			tc := struct{ name string }{c.Service}
			for _, r := range c.All() {
				resources++
				w := &yamlWriter{}
				if err := w.anyItem(r); err != nil {
					t.Fatalf("%s/%s: %s: the direct writer gave up: %v", tc.name, c.Name, r.ProtoReflect().Descriptor().FullName(), err)
				}
				want, err := referenceYAML(r)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(w.buf, want) {
					t.Fatalf("%s/%s: %s differs from the reference:\n%s", tc.name, c.Name, r.ProtoReflect().Descriptor().FullName(), lineDiff(string(want), string(w.buf)))
				}
			}
			b, err := Bootstrap(c, BootstrapOptions{})
			if err != nil {
				t.Fatal(err)
			}
			boots++
			got, err := fastYAMLObject(b)
			if err != nil {
				t.Fatalf("%s/%s: bootstrap: the direct writer gave up: %v", tc.name, c.Name, err)
			}
			want, err := referenceYAMLObject(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s/%s: bootstrap differs from the reference:\n%s", tc.name, c.Name, lineDiff(string(want), string(got)))
			}
		}
	}
	t.Logf("%d resources and %d bootstraps written identically", resources, boots)
}

// TestFastYAMLScalars puts strings that YAML treats specially (numbers,
// booleans, indicators, IP addresses, versions, spaces, quotes, line
// breaks, non-ASCII) and random ones into a resource and compares
// MarshalYAML with the reference: where the direct writer is not sure, it
// must leave the resource to the reference path, never write other bytes.
func TestFastYAMLScalars(t *testing.T) {
	strs := []string{
		"", "a", "1", "01", "1.5", "1e3", "0x1F", "0o17", "0b101", "1_000", "+1", "-1", ".5", ".inf", "-.inf", ".nan",
		"true", "True", "TRUE", "false", "yes", "Yes", "no", "NO", "on", "off", "y", "n", "Y", "N", "null", "Null", "~",
		"<<", "=", "10.0.0.1", "127.0.0.1:8080", "1.2.3", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "12:30", "1:20:30.5",
		"v1", "v10", "x-canary", "-", "--", "---", "...", "-x", "?x", "?", ":x", ":", "x:", "a:b", "a: b", "a #b", "a#b",
		"#x", "@type", "%3b", "%25", "*", "/a/*", "[0]", "{}", "a,b", "a[0]", "|x", ">x", "!x", "&x", "`x", "'x", "\"x",
		"it's", `a"b`, `a\b`, " lead", "trail ", "two  spaces", "line\nbreak", "tab\there", "héllo", "日本", "\x7f",
		"spiffe://shop.example/ns/shop/sa/reviews", "outbound|9080|v1|reviews.shop", "^/items/[0-9]+$",
		strings.Repeat("long", 30), strings.Repeat("9", 40), strings.Repeat("a b ", 40),
	}
	rng := rand.New(rand.NewSource(1))
	alphabet := []byte("ab09.:-_ #'\"\\/[]{}*&!|>%@`?,=~<\n\tyY")
	for range 300 {
		b := make([]byte, 1+rng.Intn(12))
		for i := range b {
			b[i] = alphabet[rng.Intn(len(alphabet))]
		}
		strs = append(strs, string(b))
	}
	for _, s := range strs {
		rc := &routev3.RouteConfiguration{
			Name: s,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    "vh",
				Domains: []string{s, "x"},
				RequestHeadersToAdd: []*corev3.HeaderValueOption{{
					Header: &corev3.HeaderValue{Key: "x-h", Value: s},
				}},
				Routes: []*routev3.Route{{
					Name:  "r",
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				}},
			}},
			ResponseHeadersToRemove: []string{s},
		}
		assertSameYAML(t, s, rc)
		assertSameYAML(t, s, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}})
		assertSameYAML(t, s, &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{s: {}}})
		assertSameYAML(t, s, &corev3.RuntimeFeatureFlag{RuntimeKey: s, DefaultValue: wrapperspb.Bool(true)})
	}
}

// TestFastYAMLNumbers covers the numeric forms: 64-bit integers (JSON
// strings), floats, durations and wrappers.
func TestFastYAMLNumbers(t *testing.T) {
	durations := []*durationpb.Duration{
		{}, {Seconds: 1}, {Nanos: 500000000}, {Seconds: 2, Nanos: 1000}, {Nanos: 1}, {Seconds: -3, Nanos: -5000000}, {Seconds: 315576000000},
	}
	for _, d := range durations {
		assertSameYAML(t, d.String(), &routev3.RouteAction{Timeout: d})
	}
	for _, f := range []float64{0, 0.5, 1, 10, 12.5, 99.99, 100, 1e-7, 1e-6, 123456789, 1e20, 1e21, 1e300, 0.1, 1.0 / 3} {
		assertSameYAML(t, "double", &corev3.RuntimeDouble{DefaultValue: f, RuntimeKey: "k"})
		assertSameYAML(t, "percent", &matcherv3.DoubleMatcher{MatchPattern: &matcherv3.DoubleMatcher_Exact{Exact: f}})
	}
	for _, n := range []uint64{0, 1, 42, 1 << 31, 1<<32 - 1, 1 << 40, 1<<64 - 1} {
		assertSameYAML(t, "uint32", &corev3.RuntimeUInt32{DefaultValue: uint32(n), RuntimeKey: "k"})
		assertSameYAML(t, "int64", &typev3.Int64Range{Start: int64(n), End: -int64(n)})
		assertSameYAML(t, "uint64 wrapper", &corev3.HealthCheck{InitialJitter: &durationpb.Duration{Seconds: int64(n % 1000)}, UnhealthyThreshold: wrapperspb.UInt32(uint32(n))})
		assertSameYAML(t, "bool wrapper", &routev3.RateLimit_Action_HeaderValueMatch{DescriptorValue: "x", ExpectMatch: wrapperspb.Bool(n%2 == 0)})
	}
}

func assertSameYAML(t *testing.T, label string, m proto.Message) {
	t.Helper()
	want, err := referenceYAML(m)
	if err != nil {
		return // not even the reference can write it (invalid UTF-8)
	}
	got, err := MarshalYAML(m)
	if err != nil {
		t.Fatalf("%q: MarshalYAML: %v", label, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%q: %T differs from the reference:\n%s", label, m, lineDiff(string(want), string(got)))
	}
	wantObj, err := referenceYAMLObject(m)
	if err != nil {
		return
	}
	gotObj, err := MarshalYAMLObject(m)
	if err != nil {
		t.Fatalf("%q: MarshalYAMLObject: %v", label, err)
	}
	if !bytes.Equal(gotObj, wantObj) {
		t.Errorf("%q: %T object differs from the reference:\n%s", label, m, lineDiff(string(wantObj), string(gotObj)))
	}
}

// TestYAMLKeyOrder checks yamlKeyLess against go-yaml v2's own ordering of
// map keys.
func TestYAMLKeyOrder(t *testing.T) {
	keys := []string{"a", "b", "a1", "a2", "a10", "a01", "a001", "a0", "allow[0]", "allow[1]", "allow[10]", "allow[2]",
		"@type", "x-b", "x_a", "xA", "x1y", "x01y", "B", "b0", "10", "9", "09", "_x", "-x", "deny[0]", "ambiguous-path", "Z"}
	m := yamlv2.MapSlice{}
	in := map[string]int{}
	for i, k := range keys {
		in[k] = i
		m = append(m, yamlv2.MapItem{Key: k, Value: i})
	}
	b, err := yamlv2.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var order yamlv2.MapSlice
	if err := yamlv2.Unmarshal(b, &order); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, it := range order {
		want = append(want, it.Key.(string))
	}
	got := append([]string(nil), keys...)
	sort.Slice(got, func(i, j int) bool { return yamlKeyLess(got[i], got[j]) })
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("key order:\n got %v\nwant %v", got, want)
	}
}

func TestFastYAMLStruct(t *testing.T) {
	// Written directly: strings, numbers, booleans, nested Structs, an
	// empty one.
	s, err := structpb.NewStruct(map[string]any{
		"service": "reviews", "port": 9080, "weight": 1.5, "tls": true,
		"nested": map[string]any{"b": "x y", "a10": 2, "a9": 3}, "empty": map[string]any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"weft.dev": s}}
	if err := (&yamlWriter{}).anyItem(md); err != nil {
		t.Fatalf("Struct: the direct writer gave up: %v", err)
	}
	assertSameYAML(t, "struct", md)
	// Left to the reference path: null and lists.
	for name, v := range map[string]any{"null": nil, "list": []any{"a"}} {
		s, _ := structpb.NewStruct(map[string]any{"k": v})
		md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"x": s}}
		if err := (&yamlWriter{}).anyItem(md); !errors.Is(err, errSlow) {
			t.Errorf("%s: err = %v, want errSlow", name, err)
		}
		assertSameYAML(t, name, md)
	}
}

// lineDiff shows the first lines where two texts differ.
func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			lo := max(0, i-3)
			return "line " + strconv.Itoa(i+1) + ":\nwant: " + strings.Join(wl[lo:min(len(wl), i+3)], "\n      ") + "\n got: " + strings.Join(gl[lo:min(len(gl), i+3)], "\n      ")
		}
	}
	return "(same lines)"
}

// TestProvenanceYAMLMatchesReference: provenance.yaml written directly is
// what sigs.k8s.io/yaml writes, for every golden case and for odd file
// names.
func TestProvenanceYAMLMatchesReference(t *testing.T) {
	check := func(label string, ps Provenances) {
		t.Helper()
		got, err := provenanceYAML(ps)
		if err != nil {
			t.Fatal(err)
		}
		want, err := referenceProvenanceYAML(ps)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: provenance.yaml differs from the reference:\n%s", label, lineDiff(string(want), string(got)))
		}
	}
	for _, tc := range cases() {
		for _, c := range compileCase(t, tc).Classes {
			check(tc.name+"/"+c.Name, c.Provenance)
		}
	}
	odd := Provenances{}
	for i, f := range []string{"", "a b.cue", "envs/prod/x.cue", "日本.cue", "yes", "10.cue", "it's.cue"} {
		odd[ProvenanceRef{Type: ResourceTypes[i%4], Name: "n" + strconv.Itoa(i)}] = Provenance{Service: "s", File: f, Line: i}
	}
	check("odd", odd)
	check("empty", Provenances{})
}

// TestTreeFilesMatchReference: the files of TreeFiles (shared clusters,
// cached Any values, concurrent workers) hold the reference bytes, for
// every golden case compiled as one mesh per case.
func TestTreeFilesMatchReference(t *testing.T) {
	for _, tc := range cases() {
		res := compileCase(t, tc)
		files, err := TreeFiles(res, TreeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.Classes {
			for _, f := range treeFiles {
				msgs := make([]proto.Message, 0, len(c.Resources[f.typ]))
				for _, r := range c.Resources[f.typ] {
					msgs = append(msgs, r)
				}
				want, err := referenceYAML(msgs...)
				if err != nil {
					t.Fatal(err)
				}
				if got := files[c.Name+"/"+f.name]; !bytes.Equal(got, want) {
					t.Fatalf("%s/%s/%s differs from the reference:\n%s", tc.name, c.Name, f.name, lineDiff(string(want), string(got)))
				}
			}
		}
	}
}
