package compiler

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// MarshalYAML writes resources as a YAML list, each element the resource's
// proto3 JSON form with its "@type", keys sorted. The output is
// deterministic. It is written directly from the messages (yamlfast.go);
// the bytes are those of the reference path (protojson, parsed again and
// written by sigs.k8s.io/yaml, since protojson deliberately varies its
// whitespace), which writes whatever the direct writer leaves to it.
func MarshalYAML(msgs ...proto.Message) ([]byte, error) {
	return fastYAMLList(msgs)
}

// MarshalYAMLObject writes one message as a YAML object without "@type":
// the form `envoy -c` reads a bootstrap in. Deterministic like MarshalYAML.
func MarshalYAMLObject(m proto.Message) ([]byte, error) {
	b, err := fastYAMLObject(m)
	if errors.Is(err, errSlow) {
		return referenceYAMLObject(m)
	}
	return b, err
}

// referenceYAML is MarshalYAML the slow way: protojson, encoding/json,
// sigs.k8s.io/yaml.
func referenceYAML(msgs ...proto.Message) ([]byte, error) {
	list := make([]any, 0, len(msgs))
	for _, m := range msgs {
		a, err := marshalAny(m)
		if err != nil {
			return nil, err
		}
		v, err := jsonValue(a)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
	}
	return yaml.Marshal(list)
}

// slowYAMLList is one element of a MarshalYAML list the reference way.
func slowYAMLList(m proto.Message) ([]byte, error) { return referenceYAML(m) }

// referenceYAMLObject is MarshalYAMLObject the slow way.
func referenceYAMLObject(m proto.Message) ([]byte, error) {
	v, err := jsonValue(m)
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(v)
}

func jsonValue(m proto.Message) (any, error) {
	b, err := protojson.MarshalOptions{}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshaling %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // numbers are written back exactly as protojson wrote them
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// YAML is the class's resources (listeners, routes, clusters, endpoints,
// each by name) as written by MarshalYAML.
func (c *Class) YAML() ([]byte, error) {
	msgs := make([]proto.Message, 0)
	for _, r := range c.All() {
		msgs = append(msgs, r)
	}
	return MarshalYAML(msgs...)
}
