package deploy_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	apiextensions "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"github.com/weft-dev/weft/environments/deploy"
)

// crd is the Mesh CRD of the rendered manifests.
func crd(t testing.TB) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	b, err := deploy.Render(deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objects(t, b) {
		if o["kind"] != "CustomResourceDefinition" {
			continue
		}
		var c apiextensionsv1.CustomResourceDefinition
		strict(t, o, &c)
		return &c
	}
	t.Fatal("no CustomResourceDefinition in the manifests")
	return nil
}

// strict decodes obj into v, refusing unknown fields (a typo in a
// manifest is a field the API server would drop or refuse).
func strict(t testing.TB, obj any, v any) {
	t.Helper()
	j, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(j, v); err != nil {
		t.Fatalf("%T: %v", v, err)
	}
}

// The CRD passes the API server's own validation of a new CRD: structural
// schema, defaults that survive pruning, CEL rules that compile within the
// cost limits, valid printer-column JSONPaths, names.
func TestCRDPassesAPIServerValidation(t *testing.T) {
	v1crd := crd(t)
	var internal apiextensions.CustomResourceDefinition
	if err := apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(v1crd, &internal, nil); err != nil {
		t.Fatal(err)
	}
	// What the API server's strategy sets before validating a create.
	internal.Status.StoredVersions = []string{"v1alpha1"}
	if errs := crdvalidation.ValidateCustomResourceDefinition(context.Background(), &internal); len(errs) > 0 {
		t.Fatalf("the API server would refuse the CRD:\n%v", errs.ToAggregate())
	}
	cols := map[string]string{}
	for _, c := range v1crd.Spec.Versions[0].AdditionalPrinterColumns {
		cols[c.Name] = c.JSONPath
	}
	for _, name := range []string{"Ready", "Revision", "Proxies", "Age", "Status"} {
		if cols[name] == "" {
			t.Errorf("no printer column %s (kubectl get meshes shows READY, REVISION, PROXIES, AGE, STATUS)", name)
		}
	}
	if v1crd.Spec.Versions[0].Subresources == nil || v1crd.Spec.Versions[0].Subresources.Status == nil {
		t.Error("no status subresource: the controller's status writes would race spec edits")
	}
}

// meshSchema validates a Mesh as the API server would on create: defaults,
// pruning of unknown fields, OpenAPI validation, CEL rules.
type meshSchema struct {
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

func newMeshSchema(t testing.TB) *meshSchema {
	t.Helper()
	v1crd := crd(t)
	var props apiextensions.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v1crd.Spec.Versions[0].Schema.OpenAPIV3Schema, &props, nil); err != nil {
		t.Fatal(err)
	}
	s, err := structuralschema.NewStructural(&props)
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := apiservervalidation.NewSchemaValidator(&props)
	if err != nil {
		t.Fatal(err)
	}
	return &meshSchema{structural: s, validator: v, cel: cel.NewValidator(s, true, celconfig.PerCallLimit)}
}

// admit defaults obj in place and returns the fields the API server would
// prune and the validation errors.
func (m *meshSchema) admit(obj map[string]any) (pruned []string, errs field.ErrorList) {
	structuraldefaulting.Default(obj, m.structural)
	pruned = pruning.PruneWithOptions(obj, m.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	errs = apiservervalidation.ValidateCustomResource(nil, obj, m.validator)
	celErrs, _ := m.cel.Validate(context.Background(), nil, m.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	return pruned, append(errs, celErrs...)
}

func meshFromYAML(t testing.TB, y string) map[string]any {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(y), &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

const minimalMesh = `
apiVersion: mesh.weft.dev/v1alpha1
kind: Mesh
metadata: {name: shop, namespace: weft-system}
spec:
  sourceRef: {kind: GitRepository, name: shop}
`

// A Mesh without an interval gets 10m from the API server.
func TestMeshIntervalDefaults(t *testing.T) {
	s := newMeshSchema(t)
	obj := meshFromYAML(t, minimalMesh)
	pruned, errs := s.admit(obj)
	if len(pruned) > 0 || len(errs) > 0 {
		t.Fatalf("pruned %v, errors %v", pruned, errs.ToAggregate())
	}
	if got := obj["spec"].(map[string]any)["interval"]; got != "10m" {
		t.Errorf("spec.interval = %v, want the default 10m", got)
	}
}

// What a user gets wrong is refused with the field and the reason.
func TestMeshSchemaRefusesBadSpecs(t *testing.T) {
	s := newMeshSchema(t)
	for _, tt := range []struct {
		name, spec, want string
	}{
		{"unknown source kind", `sourceRef: {kind: HelmRepository, name: shop}`,
			`spec.sourceRef.kind: Unsupported value: "HelmRepository": supported values: "GitRepository", "OCIRepository", "Bucket"`},
		{"no source name", `sourceRef: {kind: GitRepository}`, `spec.sourceRef.name: Required value`},
		{"no sourceRef", `path: ./mesh`, `spec.sourceRef: Required value`},
		{"interval not a duration", `{sourceRef: {kind: Bucket, name: b}, interval: 10 minutes}`, `spec.interval: Invalid value: "10 minutes": spec.interval in body should match`},
		{"retryInterval not a duration", `{sourceRef: {kind: Bucket, name: b}, retryInterval: "5"}`, `spec.retryInterval: Invalid value: "5"`},
		{"path leaves the artifact", `{sourceRef: {kind: GitRepository, name: s}, path: mesh/../../etc}`,
			`spec.path: Invalid value: "mesh/../../etc": path must be relative and stay inside the artifact: no leading '/' and no '..' segment`},
		{"absolute path", `{sourceRef: {kind: GitRepository, name: s}, path: /etc}`, `spec.path: Invalid value: "/etc": path must be relative`},
		{"environment with a slash", `{sourceRef: {kind: GitRepository, name: s}, environment: prod/eu}`, `spec.environment: Invalid value: "prod/eu"`},
		{"environment ..", `{sourceRef: {kind: GitRepository, name: s}, environment: ".."}`, `spec.environment: Invalid value: ".."`},
		{"policy folder outside", `{sourceRef: {kind: GitRepository, name: s}, policies: [policies, ../secrets]}`,
			`spec.policies: Invalid value: policy folders must be non-empty relative paths inside the artifact`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			obj := meshFromYAML(t, minimalMesh)
			spec := map[string]any{}
			if err := yaml.Unmarshal([]byte(tt.spec), &spec); err != nil {
				t.Fatal(err)
			}
			obj["spec"] = spec
			_, errs := s.admit(obj)
			if agg := errs.ToAggregate(); agg == nil || !strings.Contains(agg.Error(), tt.want) {
				t.Errorf("errors %v, want one containing %q", agg, tt.want)
			}
		})
	}
}
