package kubetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// InstallCRDs creates (or updates) the CustomResourceDefinitions in the
// given files and folders (*.yaml, *.yml, *.json; several documents per
// file) and waits until every one is Established and served. A path that
// does not exist, or holds no CRD, fails the test.
func (e *Env) InstallCRDs(paths ...string) []*apiextensionsv1.CustomResourceDefinition {
	e.t.Helper()
	crds, err := envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{
		Paths:              paths,
		ErrorIfPathMissing: true,
		Scheme:             e.Client.Scheme(),
	})
	if err == nil && len(crds) == 0 {
		err = errors.New("no CustomResourceDefinition found")
	}
	if err != nil {
		e.t.Fatalf("kubetest: installing CRDs from %v: %v", paths, err)
	}
	return crds
}

// InstallCRDYAML is [Env.InstallCRDs] for CRDs held in memory: one or more
// YAML (or JSON) documents separated by "---".
func (e *Env) InstallCRDYAML(docs []byte) []*apiextensionsv1.CustomResourceDefinition {
	e.t.Helper()
	crds, err := DecodeCRDs(docs)
	if err == nil {
		crds, err = envtest.InstallCRDs(e.Config, envtest.CRDInstallOptions{CRDs: crds, Scheme: e.Client.Scheme()})
	}
	if err != nil {
		e.t.Fatalf("kubetest: installing CRDs: %v", err)
	}
	return crds
}

// DecodeCRDs parses YAML/JSON documents into CustomResourceDefinitions.
// Empty documents are skipped; a document of another kind, or none at all,
// is an error that names the document (1-based).
func DecodeCRDs(docs []byte) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(docs)))
	var crds []*apiextensionsv1.CustomResourceDefinition
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.UnmarshalStrict(doc, crd); err != nil {
			return nil, fmt.Errorf("document %d: %w", n, err)
		}
		if crd.Kind != "CustomResourceDefinition" {
			return nil, fmt.Errorf("document %d: kind %q, want CustomResourceDefinition", n, crd.Kind)
		}
		crds = append(crds, crd)
	}
	if len(crds) == 0 {
		return nil, errors.New("no CustomResourceDefinition in the documents")
	}
	return crds, nil
}
