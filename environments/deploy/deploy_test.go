package deploy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/weft-dev/weft/environments/deploy"
	"github.com/weft-dev/weft/environments/deploy/internal/kustomize"
)

// dir is environments/deploy.
func dir(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	return filepath.Dir(file)
}

// install.yaml is the base as kustomize builds it now: `make generate`
// was run after the last change to a manifest or the CRD.
func TestInstallYAMLIsCurrent(t *testing.T) {
	built, err := kustomize.Build(filesys.MakeFsOnDisk(), dir(t))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.Join(dir(t), deploy.InstallFile))
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(deploy.InstallHeader), built...)
	if !bytes.Equal(committed, want) {
		t.Errorf("environments/deploy/install.yaml is stale: run `make generate` and commit it\n%s",
			cmp.Diff(string(want), string(committed)))
	}
}

// Render equals kustomize's own overlay (namespace: and images:) on the
// base, object for object and field for field, for every kind of option.
func TestRenderMatchesKustomizeOverlay(t *testing.T) {
	base := os.DirFS(dir(t))
	for _, opts := range []deploy.Options{
		{},
		{Namespace: "mesh-system"},
		{Image: "registry.example/weft:v0.1.0"},
		{Image: "registry.example:5000/team/weft"},
		{Image: "registry.example/weft@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{Namespace: "weft", Image: "localhost/weft:v2"},
	} {
		got, err := deploy.Render(opts)
		if err != nil {
			t.Fatalf("Render(%+v): %v", opts, err)
		}
		want, err := kustomize.Overlay(base, opts)
		if err != nil {
			t.Fatalf("kustomize overlay %+v: %v", opts, err)
		}
		if d := cmp.Diff(objects(t, want), objects(t, got)); d != "" {
			t.Errorf("Render(%+v) differs from kustomize (-kustomize +Render):\n%s", opts, d)
		}
	}
}

func TestRenderDefaultsIsInstallYAML(t *testing.T) {
	got, err := deploy.Render(deploy.Options{Namespace: deploy.DefaultNamespace, Image: "localhost/weft:dev"})
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.Join(dir(t), deploy.InstallFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := bytes.TrimPrefix(committed, []byte(deploy.InstallHeader)); !bytes.Equal(got, want) {
		t.Errorf("Render with the defaults is not install.yaml:\n%s", cmp.Diff(string(want), string(got)))
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	opts := deploy.Options{Namespace: "mesh-system", Image: "registry.example/weft:v1"}
	first, err := deploy.Render(opts)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := deploy.Render(opts)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatalf("two renders differ:\n%s", cmp.Diff(string(first), string(again)))
		}
	}
	if !strings.Contains(string(first), "name: mesh-system\n") || strings.Contains(string(first), "weft-system") {
		t.Errorf("namespace mesh-system not applied everywhere:\n%s", first)
	}
}

func TestRenderRejectsBadOptions(t *testing.T) {
	for _, tt := range []struct {
		opts deploy.Options
		want string
	}{
		{deploy.Options{Namespace: "Weft"}, `namespace "Weft": a lowercase RFC 1123 label`},
		{deploy.Options{Namespace: strings.Repeat("a", 64)}, "must be no more than 63 characters"},
		{deploy.Options{Image: "registry.example/weft:"}, `image "registry.example/weft:": want name[:tag][@digest]`},
		{deploy.Options{Image: "weft@nodigest"}, `image "weft@nodigest"`},
		{deploy.Options{Image: "my weft"}, `image "my weft"`},
	} {
		_, err := deploy.Render(tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Render(%+v) = %v, want an error containing %q", tt.opts, err, tt.want)
		}
	}
}

func TestParseImage(t *testing.T) {
	for _, tt := range []struct{ ref, name, tag, digest string }{
		{"localhost/weft:dev", "localhost/weft", "dev", ""},
		{"registry.example:5000/weft", "registry.example:5000/weft", "latest", ""},
		{"registry.example:5000/weft:v1", "registry.example:5000/weft", "v1", ""},
		{"weft@sha256:abc", "weft", "", "sha256:abc"},
		{"weft:v1@sha256:abc", "weft", "v1", "sha256:abc"},
	} {
		name, tag, digest, err := deploy.ParseImage(tt.ref)
		if err != nil || name != tt.name || tag != tt.tag || digest != tt.digest {
			t.Errorf("ParseImage(%q) = %q %q %q %v, want %q %q %q", tt.ref, name, tag, digest, err, tt.name, tt.tag, tt.digest)
		}
	}
}

// objects parses a YAML stream into its objects, in order.
func objects(t testing.TB, stream []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, doc := range strings.Split("\n"+string(stream), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("%v in:\n%s", err, doc)
		}
		if obj != nil {
			out = append(out, obj)
		}
	}
	return out
}

// kinds lists "Kind/namespace/name" of a stream's objects.
func kinds(objs []map[string]any) []string {
	var out []string
	for _, o := range objs {
		md := o["metadata"].(map[string]any)
		ns, _ := md["namespace"].(string)
		out = append(out, o["kind"].(string)+"/"+ns+"/"+md["name"].(string))
	}
	return out
}

func TestRenderHasEveryObjectInApplyOrder(t *testing.T) {
	b, err := deploy.Render(deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"Namespace//weft-system",
		"CustomResourceDefinition//meshes.mesh.weft.dev",
		"ServiceAccount/weft-system/weft-controller",
		"Role/weft-system/weft-controller",
		"ClusterRole//weft-controller",
		"RoleBinding/weft-system/weft-controller",
		"ClusterRoleBinding//weft-controller",
		"Service/weft-system/weft-controller",
		"Deployment/weft-system/weft-controller",
		"PodDisruptionBudget/weft-system/weft-controller",
		"MutatingWebhookConfiguration//weft-injector",
	}
	got := kinds(objects(t, b))
	slices.Sort(want)
	sorted := slices.Clone(got)
	slices.Sort(sorted)
	if !slices.Equal(sorted, want) {
		t.Errorf("objects %v, want %v", got, want)
	}
	// The namespace and the CRD come before what lives in them; the
	// injector webhook last, after the controller that serves it.
	if got[0] != "Namespace//weft-system" || got[1] != "CustomResourceDefinition//meshes.mesh.weft.dev" {
		t.Errorf("order %v: the Namespace and the CRD must come first", got)
	}
	if got[len(got)-1] != "MutatingWebhookConfiguration//weft-injector" {
		t.Errorf("order %v: the webhook configuration must come last", got)
	}
}
