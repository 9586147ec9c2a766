package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// ObjectOutcome is what Stream did to one object.
type ObjectOutcome struct {
	// Line is where the object starts in the input (1-based).
	Line int
	// Kind, Namespace and Name of the object.
	Kind, Namespace, Name string
	Outcome
}

// String is "deploy.yaml:3: Deployment shop/web: injected (service web)"
// without the file.
func (o ObjectOutcome) String() string {
	name := o.Name
	if o.Namespace != "" {
		name = o.Namespace + "/" + name
	}
	what := "injected (service " + o.Service + ")"
	if !o.Injected {
		what = "not injected: " + o.Skipped
	}
	return fmt.Sprintf("%d: %s %s: %s", o.Line, o.Kind, name, what)
}

// templatePaths are where the pod template of each workload kind is; a
// Pod is its own template. Other kinds pass through unchanged.
var templatePaths = map[string][]string{
	"Pod":                   nil,
	"Deployment":            {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"Job":                   {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
}

// Stream injects every Pod and pod template (Deployment, StatefulSet,
// DaemonSet, ReplicaSet, Job, CronJob, ReplicationController, also inside
// a v1 List) of a YAML stream, as `weft inject -f` does. Documents that
// hold no such object, and objects that are not injected, are written
// back byte for byte; an injected one is written as YAML with its keys
// sorted (comments in it are lost). file names the input in errors
// ("deploy.yaml:12: Deployment web: unknown field
// "spec.template.spec.containers[0].imagePullPolicyy").
// Injecting the output again gives the same output.
func Stream(in []byte, file string, opts Options) ([]byte, []ObjectOutcome, error) {
	var out bytes.Buffer
	var outcomes []ObjectOutcome
	for i, d := range splitDocuments(in) {
		if i > 0 {
			out.WriteString("---\n")
		}
		changed, oc, err := document(d, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("%s:%w", file, err)
		}
		outcomes = append(outcomes, oc...)
		if changed == nil {
			out.Write(d.text)
		} else {
			out.Write(changed)
		}
	}
	return out.Bytes(), outcomes, nil
}

type yamlDocument struct {
	line int // of its first line
	text []byte
}

// splitDocuments splits a YAML stream at its "---" lines (which are
// dropped; Stream writes its own).
func splitDocuments(in []byte) []yamlDocument {
	var docs []yamlDocument
	cur := yamlDocument{line: 1}
	lines := bytes.SplitAfter(in, []byte("\n"))
	for i, l := range lines {
		trimmed := strings.TrimRight(string(l), " \t\r\n")
		if trimmed == "---" || strings.HasPrefix(trimmed, "--- ") {
			if len(bytes.TrimSpace(cur.text)) > 0 {
				docs = append(docs, cur)
			}
			cur = yamlDocument{line: i + 2}
			continue
		}
		cur.text = append(cur.text, l...)
	}
	if len(bytes.TrimSpace(cur.text)) > 0 {
		docs = append(docs, cur)
	}
	for i := range docs {
		if !bytes.HasSuffix(docs[i].text, []byte("\n")) {
			docs[i].text = append(docs[i].text, '\n')
		}
	}
	return docs
}

// document injects the objects of one document: nil when nothing changed.
func document(d yamlDocument, opts Options) ([]byte, []ObjectOutcome, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(d.text, &obj); err != nil {
		return nil, nil, fmt.Errorf("%d: %w", d.line, err)
	}
	if obj == nil {
		return nil, nil, nil
	}
	var outcomes []ObjectOutcome
	changed := false
	visit := func(o map[string]any) error {
		oc, did, err := object(o, opts)
		if err != nil {
			return fmt.Errorf("%d: %w", d.line, err)
		}
		if oc != nil {
			oc.Line = d.line
			outcomes = append(outcomes, *oc)
		}
		changed = changed || did
		return nil
	}
	if kind, _ := obj["kind"].(string); kind == "List" {
		items, _ := obj["items"].([]any)
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				if err := visit(m); err != nil {
					return nil, nil, err
				}
			}
		}
	} else if err := visit(obj); err != nil {
		return nil, nil, err
	}
	if !changed {
		return nil, outcomes, nil
	}
	b, err := yaml.Marshal(obj)
	return b, outcomes, err
}

// object injects one object's pod template in place: its outcome (nil
// for a kind without one) and whether it changed.
func object(obj map[string]any, opts Options) (*ObjectOutcome, bool, error) {
	kind, _ := obj["kind"].(string)
	path, ok := templatePaths[kind]
	if !ok {
		return nil, false, nil
	}
	md, _ := obj["metadata"].(map[string]any)
	oc := &ObjectOutcome{Kind: kind}
	oc.Namespace, _ = md["namespace"].(string)
	oc.Name, _ = md["name"].(string)
	label := kind + " " + oc.Name

	parent, key := obj, ""
	tmplObj := obj
	for i, k := range path {
		next, ok := parent[k].(map[string]any)
		if !ok {
			return nil, false, fmt.Errorf("%s: no %s", label, strings.Join(path[:i+1], "."))
		}
		if i == len(path)-1 {
			key = k
		} else {
			parent = next
		}
		tmplObj = next
	}
	raw, err := json.Marshal(tmplObj)
	if err != nil {
		return nil, false, err
	}
	var tmpl corev1.PodTemplateSpec
	if kind == "Pod" {
		var pod corev1.Pod
		if err := strictJSON(raw, "", &pod); err != nil {
			return nil, false, fmt.Errorf("%s: %w", label, err)
		}
		tmpl = corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec}
	} else if err := strictJSON(raw, strings.Join(path, ".")+".", &tmpl); err != nil {
		return nil, false, fmt.Errorf("%s: %w", label, err)
	}
	res, err := Template(&tmpl.ObjectMeta, &tmpl.Spec, oc.Namespace, opts)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", label, err)
	}
	oc.Outcome = res
	if !res.Injected {
		return oc, false, nil
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&tmpl)
	if err != nil {
		return nil, false, err
	}
	if m, _ := u["metadata"].(map[string]any); m != nil && m["creationTimestamp"] == nil {
		delete(m, "creationTimestamp")
	}
	if kind == "Pod" {
		obj["metadata"], obj["spec"] = u["metadata"], u["spec"]
	} else {
		parent[key] = u
	}
	return oc, true, nil
}

// strictJSON decodes b, the object at path prefix ("spec.template."),
// into v as the API server does (field names are case-sensitive),
// refusing fields v does not have and fields given twice: a typo in a pod
// template is an error naming the field's path in the object, never
// silently dropped from the output.
func strictJSON(b []byte, prefix string, v any) error {
	strict, err := kjson.UnmarshalStrict(b, v)
	if err != nil {
		return err
	}
	for _, e := range strict {
		if fe, ok := e.(kjson.FieldError); ok {
			fe.SetFieldPath(prefix + fe.FieldPath())
		}
	}
	return errors.Join(strict...)
}
