// Package kustomize builds environments/deploy with kustomize's own Go API
// (sigs.k8s.io/kustomize/api/krusty), exactly as `kubectl apply -k` would:
// the generator of install.yaml (internal/gen, run by `make generate`) and
// the tests that hold deploy.Render to kustomize's result use it. It is
// never linked into weft: krusty imports Go's plugin package, which makes
// the linker keep every exported method (+20 MB, docs/decisions.md).
package kustomize

import (
	"fmt"
	"io/fs"
	"path"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/weft-dev/weft/environments/deploy"
)

// Build runs kustomize on the kustomization in dir.
func Build(fsys filesys.FileSystem, dir string) ([]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return rm.AsYaml()
}

// Overlay builds the base in fsys (a kustomization at its root) under an
// overlay that sets the namespace and the controller's image the way a
// user's own kustomization would: what deploy.Render must equal.
func Overlay(base fs.FS, opts deploy.Options) ([]byte, error) {
	mem := filesys.MakeFsInMemory()
	err := fs.WalkDir(base, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(base, p)
		if err != nil {
			return err
		}
		return mem.WriteFile(path.Join("/base", p), b)
	})
	if err != nil {
		return nil, err
	}
	ns := opts.Namespace
	if ns == "" {
		ns = deploy.DefaultNamespace
	}
	img := types.Image{Name: deploy.ImageName}
	if opts.Image != "" {
		name, tag, digest, err := deploy.ParseImage(opts.Image)
		if err != nil {
			return nil, err
		}
		img.NewName, img.NewTag, img.Digest = name, tag, digest
	}
	// The `namespace:` field moves every namespaced object and renames the
	// Namespace, but its transformer moves only the binding subjects that
	// were in "default" and not the injector webhook's service reference; a
	// second NamespaceTransformer moves every ServiceAccount subject and
	// that reference.
	files := map[string]any{
		"kustomization.yaml": types.Kustomization{
			TypeMeta:     types.TypeMeta{APIVersion: types.KustomizationVersion, Kind: types.KustomizationKind},
			Resources:    []string{"../base"},
			Namespace:    ns,
			Transformers: []string{"namespace.yaml"},
			Images:       []types.Image{img},
		},
		"namespace.yaml": map[string]any{
			"apiVersion":             "builtin",
			"kind":                   "NamespaceTransformer",
			"metadata":               map[string]any{"name": "namespace", "namespace": ns},
			"setRoleBindingSubjects": "allServiceAccounts",
			"fieldSpecs": []map[string]any{{
				"path": "webhooks/clientConfig/service/namespace", "kind": "MutatingWebhookConfiguration",
			}},
		},
	}
	for name, obj := range files {
		y, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		if err := mem.WriteFile("/overlay/"+name, y); err != nil {
			return nil, err
		}
	}
	return Build(mem, "/overlay")
}
