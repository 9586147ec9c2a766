package kubetesting

import (
	"fmt"
	"testing"

	"github.com/weft-dev/weft/compiler"
	"github.com/weft-dev/weft/schema"
	"github.com/weft-dev/weft/schema/mesh"
)

// ShopMesh is the CUE source of the tests' mesh: frontend (v1) calls
// reviews (v1 and v2, labels version: v1/v2, service account reviews),
// all in namespace shop, trust domain shop.example, with the given mTLS
// mode. reviews' HTTP port is reviewsPort; its routes split 50/50.
func ShopMesh(mtls string, reviewsPort int) string {
	return fmt.Sprintf(`package shop

import "weft.dev/weft"

mesh: weft.#Mesh & {
	name:        "shop"
	trustDomain: "shop.example"
	defaults: {namespace: "shop", mtls: %q}
	services: {
		frontend: {
			ports: http: {port: 8080, protocol: "http"}
			versions: v1: labels: version: "v1"
			calls: ["reviews"]
		}
		reviews: {
			ports: http: {port: %d, protocol: "http"}
			versions: {
				v1: labels: version: "v1"
				v2: labels: version: "v2"
			}
			routes: split: {
				match: path: prefix: "/"
				to: {v1: 50, v2: 50}
			}
		}
	}
}
`, mtls, reviewsPort)
}

// WriteMesh writes a mesh repository holding src into dir.
func WriteMesh(t testing.TB, dir, src string) {
	t.Helper()
	WriteFiles(t, dir, map[string]string{
		"cue.mod/module.cue": "module: \"example.com/shop\"\nlanguage: version: \"v0.17.0\"\n",
		"mesh.cue":           src,
	})
}

// LoadMesh writes src into a temporary repository and loads it as
// revision rev.
func LoadMesh(t testing.TB, src, rev string) *mesh.Model {
	t.Helper()
	dir := t.TempDir()
	WriteMesh(t, dir, src)
	m, err := schema.Load(dir, schema.Options{Revision: rev})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Compile compiles m with eps (non-nil: cluster endpoints).
func Compile(t testing.TB, m *mesh.Model, eps compiler.Endpoints) *compiler.Result {
	t.Helper()
	if eps == nil {
		eps = compiler.Endpoints{}
	}
	res, err := compiler.Compile(m, eps, compiler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}
