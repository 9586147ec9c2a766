package mesh

import (
	"encoding/json"
	"strings"
	"testing"
)

func exact(p string) *StringMatch  { return &StringMatch{Exact: &p} }
func prefix(p string) *StringMatch { return &StringMatch{Prefix: &p} }
func regex(p string) *StringMatch  { return &StringMatch{Regex: &p} }
func present(b bool) StringMatch   { return StringMatch{Present: &b} }
func hExact(v string) StringMatch  { return StringMatch{Exact: &v} }
func hPrefix(v string) StringMatch { return StringMatch{Prefix: &v} }
func hRegex(v string) StringMatch  { return StringMatch{Regex: &v} }

func names(rs []Route) string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return strings.Join(out, ",")
}

func TestSortRoutesPrecedence(t *testing.T) {
	canary := Match{Headers: map[string]StringMatch{"x-canary": hExact("1")}}
	tests := []struct {
		name   string
		routes []Route
		want   string
	}{
		{"a header route wins over a catch-all written before it", []Route{
			{Name: "all", Match: Match{}},
			{Name: "canary", Match: canary},
		}, "canary,all"},
		{"exact, regex, then prefixes longest first", []Route{
			{Name: "root", Match: Match{Path: prefix("/")}},
			{Name: "api", Match: Match{Path: prefix("/api")}},
			{Name: "re", Match: Match{Path: regex("^/api/v[0-9]+/.*")}},
			{Name: "apiv1", Match: Match{Path: prefix("/api/v1")}},
			{Name: "health", Match: Match{Path: exact("/healthz")}},
		}, "health,re,apiv1,api,root"},
		{"methods before none, then more headers", []Route{
			{Name: "a", Match: Match{Path: prefix("/x")}},
			{Name: "b", Match: Match{Path: prefix("/x"), Headers: map[string]StringMatch{"h1": present(true), "h2": present(true)}}},
			{Name: "c", Match: Match{Path: prefix("/x"), Methods: []string{"GET"}}},
			{Name: "d", Match: Match{Path: prefix("/x"), Headers: map[string]StringMatch{"h1": present(true)}}},
		}, "c,b,d,a"},
		{"priority first, then the rest; ties by name", []Route{
			{Name: "zz", Match: Match{Path: exact("/a")}},
			{Name: "late", Priority: -1, Match: Match{Path: exact("/b")}},
			{Name: "all", Priority: 10, Match: Match{}},
			{Name: "aa", Match: Match{Path: exact("/c")}},
		}, "all,aa,zz,late"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := append([]Route(nil), tt.routes...)
			SortRoutes(rs)
			if got := names(rs); got != tt.want {
				t.Errorf("order = %s, want %s", got, tt.want)
			}
			// Whatever the order they are written in.
			for i, j := 0, len(rs)-1; i < j; i, j = i+1, j-1 {
				rs[i], rs[j] = rs[j], rs[i]
			}
			SortRoutes(rs)
			if got := names(rs); got != tt.want {
				t.Errorf("from reversed input: order = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMatchCovers(t *testing.T) {
	tests := []struct {
		name string
		a, b Match
		want bool
	}{
		{"empty covers everything", Match{}, Match{Path: exact("/x"), Methods: []string{"GET"}}, true},
		{"prefix / covers a header route", Match{Path: prefix("/")}, Match{Headers: map[string]StringMatch{"x": hExact("1")}}, true},
		{"a header route does not cover the catch-all", Match{Headers: map[string]StringMatch{"x": hExact("1")}}, Match{}, false},
		{"identical", Match{Path: prefix("/a")}, Match{Path: prefix("/a")}, true},
		{"prefix covers a longer prefix", Match{Path: prefix("/api")}, Match{Path: prefix("/api/v1")}, true},
		{"prefix is a raw string prefix", Match{Path: prefix("/api")}, Match{Path: prefix("/apiary")}, true},
		{"longer prefix does not cover shorter", Match{Path: prefix("/api/v1")}, Match{Path: prefix("/api")}, false},
		{"prefix covers exact under it", Match{Path: prefix("/api")}, Match{Path: exact("/api/x")}, true},
		{"prefix does not cover exact elsewhere", Match{Path: prefix("/api")}, Match{Path: exact("/web")}, false},
		{"exact covers same exact", Match{Path: exact("/a")}, Match{Path: exact("/a")}, true},
		{"exact never covers a prefix", Match{Path: exact("/a")}, Match{Path: prefix("/a")}, false},
		{"regex covers an exact it fully matches", Match{Path: regex("/items/[0-9]+")}, Match{Path: exact("/items/42")}, true},
		{"regex must match the whole exact path", Match{Path: regex("/items")}, Match{Path: exact("/items/42")}, false},
		{"regex covers the same regex", Match{Path: regex("/a.*")}, Match{Path: regex("/a.*")}, true},
		{"regex is not proven to cover a prefix", Match{Path: regex("/.*")}, Match{Path: prefix("/a")}, false},
		{"prefix is not proven to cover a regex", Match{Path: prefix("/a")}, Match{Path: regex("/a.*")}, false},
		{"an invalid regex proves nothing", Match{Path: regex("(")}, Match{Path: exact("/(")}, false},
		{"headers: names are case-insensitive", Match{Headers: map[string]StringMatch{"X-Canary": hExact("1")}}, Match{Headers: map[string]StringMatch{"x-canary": hExact("1")}}, true},
		{"headers: different values", Match{Headers: map[string]StringMatch{"x": hExact("1")}}, Match{Headers: map[string]StringMatch{"x": hExact("2")}}, false},
		{"headers: prefix covers exact and longer prefix", Match{Headers: map[string]StringMatch{"x": hPrefix("ab")}}, Match{Headers: map[string]StringMatch{"x": hPrefix("abc"), "y": hExact("1")}}, true},
		{"headers: regex covers exact", Match{Headers: map[string]StringMatch{"x": hRegex("[a-f0-9]{4}")}}, Match{Headers: map[string]StringMatch{"x": hExact("beef")}}, true},
		{"headers: present covers any valued condition", Match{Headers: map[string]StringMatch{"x": present(true)}}, Match{Headers: map[string]StringMatch{"x": hRegex(".*")}}, true},
		{"headers: present does not cover absent", Match{Headers: map[string]StringMatch{"x": present(true)}}, Match{Headers: map[string]StringMatch{"x": present(false)}}, false},
		{"headers: absent covers absent", Match{Headers: map[string]StringMatch{"x": present(false)}}, Match{Headers: map[string]StringMatch{"x": present(false)}}, true},
		{"headers: a condition b lacks", Match{Headers: map[string]StringMatch{"x": present(true)}}, Match{}, false},
		{"methods: superset covers subset", Match{Methods: []string{"GET", "HEAD", "POST"}}, Match{Methods: []string{"GET", "HEAD"}}, true},
		{"methods: subset does not cover superset", Match{Methods: []string{"GET"}}, Match{Methods: []string{"GET", "POST"}}, false},
		{"methods: any method is not covered by a list", Match{Methods: []string{"GET"}}, Match{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Covers(tt.b); got != tt.want {
				t.Errorf("Covers = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRoutesJSON(t *testing.T) {
	var s Service
	in := `{"routes": {"split": {"match": {}, "to": {"v1": 90, "v2": 10}}, "canary": {"match": {"headers": {"x-canary": {"exact": "1"}}}, "to": {"v2": 100}}}}`
	if err := json.Unmarshal([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	if got := names(s.Routes); got != "canary,split" {
		t.Fatalf("routes = %s, want canary,split (precedence order)", got)
	}
	b, err := json.Marshal(s.Routes)
	if err != nil {
		t.Fatal(err)
	}
	var back Routes
	if err := json.Unmarshal(b, &back); err != nil || names(back) != "canary,split" || back.Route("split").To["v1"] != 90 {
		t.Fatalf("round trip: %s -> %+v, %v", b, back, err)
	}
	if err := json.Unmarshal([]byte(`[{"match": {}}]`), &back); err == nil || !strings.Contains(err.Error(), "keyed by route name") {
		t.Errorf("a list: err = %v", err)
	}
	if _, err := json.Marshal(Routes{{Name: "a"}, {Name: "a"}}); err == nil {
		t.Errorf("two routes with one name marshalled")
	}
}
