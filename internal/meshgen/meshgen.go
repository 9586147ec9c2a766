// Package meshgen writes synthetic mesh repositories of any size for
// benchmarks and load tests: N services, each with two versions, a 90/10
// split, retries, a rate limit, authz and `calls` to a few neighbours.
package meshgen

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Spec sizes a generated mesh.
type Spec struct {
	Services  int // number of services
	Endpoints int // endpoints per service, split between its two versions
	Calls     int // dependencies per service
}

// Write creates the repository in dir (which must exist).
func Write(dir string, s Spec) error {
	files := map[string]string{
		"cue.mod/module.cue": "module: \"example.com/gen\"\nlanguage: version: \"v0.17.0\"\n",
		"mesh.cue":           Source(s),
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Source returns the CUE source of the generated mesh.
func Source(s Spec) string {
	var b strings.Builder
	b.WriteString("package gen\n\nimport \"weft.dev/weft\"\n\nmesh: weft.#Mesh & {\n\tname: \"gen\"\n\ttrustDomain: \"gen.example\"\n\tdefaults: namespace: \"gen\"\n\tservices: {\n")
	for i := 0; i < s.Services; i++ {
		writeService(&b, s, i)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

func name(i int) string { return fmt.Sprintf("svc-%05d", i) }

func writeService(b *strings.Builder, s Spec, i int) {
	fmt.Fprintf(b, "\t\t%q: {\n\t\t\tports: http: port: 8080\n", name(i))
	for v := 1; v <= 2; v++ {
		fmt.Fprintf(b, "\t\t\tversions: v%d: {labels: version: \"v%d\", endpoints: [", v, v)
		for e := 0; e < s.Endpoints/2; e++ {
			if e > 0 {
				b.WriteString(", ")
			}
			n := i*s.Endpoints + (v-1)*(s.Endpoints/2) + e
			fmt.Fprintf(b, "\"10.%d.%d.%d:8080\"", n>>16&255, n>>8&255, n&255)
		}
		b.WriteString("]}\n")
	}
	var calls, callers []string
	for c := 1; c <= s.Calls && c < s.Services; c++ {
		calls = append(calls, fmt.Sprintf("%q", name((i+c)%s.Services)))
		callers = append(callers, fmt.Sprintf("%q", name((i-c+s.Services)%s.Services)))
	}
	fmt.Fprintf(b, "\t\t\tcalls: [%s]\n", strings.Join(calls, ", "))
	fmt.Fprintf(b, "\t\t\trateLimit: {requestsPerSecond: 100, burst: 200}\n")
	fmt.Fprintf(b, "\t\t\tauthz: allow: [{from: [%s], methods: [\"GET\", \"POST\"]}]\n", strings.Join(callers, ", "))
	b.WriteString("\t\t\troutes: {canary: {match: headers: \"x-canary\": exact: \"1\", to: v2: 100}, ")
	b.WriteString("split: {match: path: prefix: \"/\", to: {v1: 90, v2: 10}, timeout: \"2s\", retries: {attempts: 2, perTryTimeout: \"500ms\"}}}\n")
	b.WriteString("\t\t}\n")
}
