package compiler

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"

	yamlv2 "go.yaml.in/yaml/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// The fast YAML writer walks a message with protoreflect and writes the
// bytes that the reference path (protojson, then encoding/json, then
// sigs.k8s.io/yaml, which sorts keys and writes YAML with go-yaml v2)
// writes, without building, parsing and re-encoding JSON in between: it
// is what keeps `weft build` of a large mesh fast.
//
// It handles what weft's resources hold: messages, lists, maps, Any,
// Duration and the wrapper types, and scalars that need no line folding.
// Anything else (Struct, Value, Timestamp, FieldMask, strings with
// spaces, line breaks or non-ASCII bytes, floats in exponent form) makes
// it give up on that resource with errSlow, and the reference path writes
// it. TestFastYAMLMatchesReference checks the two paths byte for byte.

// errSlow says that the fast writer cannot promise the reference's bytes.
var errSlow = errors.New("compiler: value needs the reference YAML path")

// yamlWidth is go-yaml v2's line width: a double-quoted scalar that
// crosses it is folded, which the fast writer does not do.
const yamlWidth = 80

type yamlWriter struct {
	buf []byte
	// anys, when set, holds the bytes of Any values already written
	// (anyKey -> bytes): the classes of a mesh repeat the same filter
	// configurations.
	anys *sync.Map
	// infos caches fieldInfos for this writer (no shared map lookup).
	infos map[protoreflect.MessageDescriptor][]fieldInfo
}

// anyKey identifies the bytes of an Any value: where it is written and
// what it holds.
type anyKey struct {
	indent  int
	inField bool
	url     string
	value   string
}

// fastYAMLList writes msgs as MarshalYAML does: a list of the messages'
// Any forms.
func fastYAMLList(msgs []proto.Message) ([]byte, error) { return cachedYAMLList(msgs, nil, nil) }

// cachedYAMLList is fastYAMLList that takes the element of a message from
// cache (message -> its bytes) when another list wrote it, and stores the
// elements it writes: the classes of one compilation share messages
// (outbound clusters and their load assignments). anys does the same for
// Any values (see yamlWriter). Nil caches cache nothing.
func cachedYAMLList(msgs []proto.Message, cache, anys *sync.Map) ([]byte, error) {
	if len(msgs) == 0 {
		return []byte("[]\n"), nil
	}
	w := &yamlWriter{buf: make([]byte, 0, 4096), anys: anys}
	for _, m := range msgs {
		if cache != nil {
			if b, ok := cache.Load(m); ok {
				w.buf = append(w.buf, b.([]byte)...)
				continue
			}
		}
		mark := len(w.buf)
		err := w.anyItem(m)
		if errors.Is(err, errSlow) {
			w.buf = w.buf[:mark]
			b, err := slowYAMLList(m)
			if err != nil {
				return nil, err
			}
			w.buf = append(w.buf, b...)
		} else if err != nil {
			return nil, err
		}
		if cache != nil {
			cache.Store(m, append([]byte(nil), w.buf[mark:]...))
		}
	}
	return w.buf, nil
}

// fastYAMLObject writes m as MarshalYAMLObject does.
func fastYAMLObject(m proto.Message) ([]byte, error) {
	w := &yamlWriter{buf: make([]byte, 0, 4096)}
	r := m.ProtoReflect()
	if special(r.Descriptor()) {
		return nil, errSlow
	}
	if empty(r) {
		return []byte("{}\n"), nil
	}
	if err := w.fields(r, 0, false, ""); err != nil {
		return nil, err
	}
	return w.buf, nil
}

// anyItem writes one list element: "- '@type': <url>" and the message's
// fields below it.
func (w *yamlWriter) anyItem(m proto.Message) error {
	r := m.ProtoReflect()
	d := r.Descriptor()
	if special(d) {
		return errSlow
	}
	w.buf = append(w.buf, "- "...)
	return w.fields(r, 2, true, typeURL(d))
}

func typeURL(d protoreflect.MessageDescriptor) string {
	return "type.googleapis.com/" + string(d.FullName())
}

// special reports whether a message has its own JSON form other than the
// ones the fast writer handles in field position (Duration, wrappers).
func special(d protoreflect.MessageDescriptor) bool {
	return d.FullName().Parent() == "google.protobuf" && d.FullName().Name() != "Empty"
}

func empty(r protoreflect.Message) bool {
	populated := false
	r.Range(func(protoreflect.FieldDescriptor, protoreflect.Value) bool {
		populated = true
		return false
	})
	return !populated
}

// fields writes the populated fields of r as a block mapping whose keys
// are at column indent. The first key goes where the cursor is (after
// "- " or at the start of a line); the others start new lines. With
// atType, the key '@type' (which sorts first) holds url.
func (w *yamlWriter) fields(r protoreflect.Message, indent int, atType bool, url string) error {
	first := true
	key := func(k string) {
		if !first {
			w.indent(indent)
		}
		first = false
		w.buf = append(w.buf, k...)
		w.buf = append(w.buf, ':')
	}
	if atType {
		key("'@type'")
		w.buf = append(w.buf, ' ')
		s, err := scalar(url, indent+len("'@type': "))
		if err != nil {
			return err
		}
		w.buf = append(w.buf, s...)
		w.buf = append(w.buf, '\n')
	}
	fs, err := w.populated(r)
	if err != nil {
		return err
	}
	for _, f := range fs {
		key(f.key)
		if err := w.value(f.val, f.fd, indent, len(f.key)+2); err != nil {
			return err
		}
	}
	if first {
		return fmt.Errorf("compiler: empty message written as a mapping")
	}
	return nil
}

func (w *yamlWriter) indent(n int) {
	for range n {
		w.buf = append(w.buf, ' ')
	}
}

// value writes a field's value after "key:" (the key at column indent,
// keyWidth its length with ": ").
func (w *yamlWriter) value(v protoreflect.Value, fd protoreflect.FieldDescriptor, indent, keyWidth int) error {
	switch {
	case fd.IsList():
		l := v.List()
		w.buf = append(w.buf, '\n')
		for i := range l.Len() {
			w.indent(indent)
			w.buf = append(w.buf, "- "...)
			if err := w.element(l.Get(i), fd, indent+2); err != nil {
				return err
			}
		}
		return nil
	case fd.IsMap():
		return w.mapValue(v.Map(), fd, indent)
	}
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		return w.message(v.Message(), indent, true, indent+keyWidth)
	}
	s, err := singular(v, fd, indent+keyWidth)
	if err != nil {
		return err
	}
	w.buf = append(w.buf, ' ')
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '\n')
	return nil
}

// element writes one list element after "- ", its content at column
// indent.
func (w *yamlWriter) element(v protoreflect.Value, fd protoreflect.FieldDescriptor, indent int) error {
	if fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind {
		return w.message(v.Message(), indent, false, indent)
	}
	s, err := singular(v, fd, indent)
	if err != nil {
		return err
	}
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '\n')
	return nil
}

// message writes a message value: after "key:" (inField) or after "- ".
// Its keys are at column indent+2 in a field, at indent in a list; a
// scalar form (Duration, wrappers) starts at column col.
func (w *yamlWriter) message(r protoreflect.Message, indent int, inField bool, col int) error {
	d := r.Descriptor()
	if d.FullName().Parent() == "google.protobuf" {
		switch d.FullName().Name() {
		case "Any":
			return w.anyValue(r, indent, inField)
		case "Duration", "BoolValue", "Int32Value", "Int64Value", "UInt32Value", "UInt64Value",
			"FloatValue", "DoubleValue", "StringValue", "BytesValue":
			if inField {
				w.buf = append(w.buf, ' ')
			}
			s, err := wellKnownScalar(r, col)
			if err != nil {
				return err
			}
			w.buf = append(w.buf, s...)
			w.buf = append(w.buf, '\n')
			return nil
		case "Struct":
			return w.structValue(r, indent, inField)
		case "Value":
			return w.jsonValue(r, indent, inField, col)
		case "Empty":
		default:
			return errSlow
		}
	}
	if empty(r) {
		if inField {
			w.buf = append(w.buf, ' ')
		}
		w.buf = append(w.buf, "{}\n"...)
		return nil
	}
	if inField {
		w.buf = append(w.buf, '\n')
		w.indent(indent + 2)
		return w.fields(r, indent+2, false, "")
	}
	return w.fields(r, indent, false, "")
}

// anyValue writes an Any as protojson does: the embedded message's
// fields with '@type' first.
func (w *yamlWriter) anyValue(r protoreflect.Message, indent int, inField bool) error {
	fds := r.Descriptor().Fields()
	url := r.Get(fds.ByNumber(1)).String()
	val := r.Get(fds.ByNumber(2)).Bytes()
	if url == "" {
		if len(val) > 0 {
			return fmt.Errorf("compiler: Any without type_url")
		}
		if inField {
			w.buf = append(w.buf, ' ')
		}
		w.buf = append(w.buf, "{}\n"...)
		return nil
	}
	var key anyKey
	if w.anys != nil {
		key = anyKey{indent: indent, inField: inField, url: url, value: string(val)}
		if b, ok := w.anys.Load(key); ok {
			w.buf = append(w.buf, b.([]byte)...)
			return nil
		}
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if err != nil {
		return fmt.Errorf("compiler: Any: unable to resolve %q: %w", url, err)
	}
	em := mt.New()
	if err := (proto.UnmarshalOptions{AllowPartial: true}).Unmarshal(val, em.Interface()); err != nil {
		return fmt.Errorf("compiler: Any: unable to unmarshal %q: %w", url, err)
	}
	if special(em.Descriptor()) {
		return errSlow // {"@type", "value"}: not used by weft
	}
	mark := len(w.buf)
	if inField {
		w.buf = append(w.buf, '\n')
		w.indent(indent + 2)
		indent += 2
	}
	if err := w.fields(em, indent, true, url); err != nil {
		return err
	}
	if w.anys != nil {
		w.anys.Store(key, append([]byte(nil), w.buf[mark:]...))
	}
	return nil
}

// mapValue writes a map field: a mapping sorted like go-yaml sorts keys.
func (w *yamlWriter) mapValue(m protoreflect.Map, fd protoreflect.FieldDescriptor, indent int) error {
	type entry struct {
		key string
		val protoreflect.Value
	}
	entries := make([]entry, 0, m.Len())
	m.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		entries = append(entries, entry{k.String(), v})
		return true
	})
	slices.SortFunc(entries, func(a, b entry) int { return yamlKeyCompare(a.key, b.key) })
	w.buf = append(w.buf, '\n')
	vfd := fd.MapValue()
	for _, e := range entries {
		w.indent(indent + 2)
		k, err := scalar(e.key, indent+2)
		if err != nil {
			return err
		}
		if len(k) > 128 {
			return errSlow // no longer a simple key
		}
		w.buf = append(w.buf, k...)
		w.buf = append(w.buf, ':')
		if err := w.value(e.val, vfd, indent+2, len(k)+2); err != nil {
			return err
		}
	}
	return nil
}

// singular is a scalar field value as the reference writes it, starting
// at column col.
func singular(v protoreflect.Value, fd protoreflect.FieldDescriptor, col int) (string, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if v.Bool() {
			return "true", nil
		}
		return "false", nil
	case protoreflect.StringKind:
		return scalar(v.String(), col)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return strconv.FormatInt(v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return strconv.FormatUint(v.Uint(), 10), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		// protojson writes 64-bit integers as JSON strings, which YAML
		// then has to quote.
		return `"` + strconv.FormatInt(v.Int(), 10) + `"`, nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return `"` + strconv.FormatUint(v.Uint(), 10) + `"`, nil
	case protoreflect.FloatKind:
		return float(v.Float(), 32)
	case protoreflect.DoubleKind:
		return float(v.Float(), 64)
	case protoreflect.BytesKind:
		return scalar(base64.StdEncoding.EncodeToString(v.Bytes()), col)
	case protoreflect.EnumKind:
		if fd.Enum().FullName() == "google.protobuf.NullValue" {
			return "", errSlow
		}
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return scalar(string(ev.Name()), col)
		}
		return strconv.FormatInt(int64(v.Enum()), 10), nil
	}
	return "", errSlow
}

// wellKnownScalar is a Duration or a wrapper as protojson writes it.
func wellKnownScalar(r protoreflect.Message, col int) (string, error) {
	fds := r.Descriptor().Fields()
	if r.Descriptor().FullName().Name() == "Duration" {
		secs, nanos := r.Get(fds.ByNumber(1)).Int(), r.Get(fds.ByNumber(2)).Int()
		if (secs > 0 && nanos < 0) || (secs < 0 && nanos > 0) || nanos <= -1e9 || nanos >= 1e9 {
			return "", errSlow
		}
		sign := ""
		if secs < 0 || nanos < 0 {
			sign, secs, nanos = "-", -secs, -nanos
		}
		x := fmt.Sprintf("%s%d.%09d", sign, secs, nanos)
		x = strings.TrimSuffix(x, "000")
		x = strings.TrimSuffix(x, "000")
		x = strings.TrimSuffix(x, ".000")
		return scalar(x+"s", col)
	}
	fd := fds.ByNumber(1)
	return singular(r.Get(fd), fd, col)
}

// float is a float as protojson writes it and YAML then reads and writes
// it: integral values become YAML integers. Exponent forms are left to
// the reference path.
func float(f float64, bits int) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", errSlow
	}
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e15) {
		return "", errSlow
	}
	s := strconv.FormatFloat(f, 'f', -1, bits)
	if !strings.Contains(s, ".") {
		return s, nil // an integer to YAML
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return "", errSlow
	}
	out := strconv.FormatFloat(v, 'g', -1, 64)
	if strings.ContainsAny(out, "eE") {
		return "", errSlow
	}
	return out, nil
}

// scalar is a string as go-yaml v2 writes it in block context, starting
// at column col: plain when it reads back as the same string, else single
// or double quoted. go-yaml folds a scalar that crosses column 80 at a
// space (any character, double quoted): such strings, and those that need
// escapes, are left to the reference path (errSlow).
func scalar(s string, col int) (string, error) {
	if s == "" {
		return v2Scalar(s)
	}
	spaces := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ':
			spaces = true
		case c < ' ' || c >= 0x7f:
			return "", errSlow // controls need escapes; non-ASCII is not checked here
		}
	}
	out := s
	if !plainString(s) && !dottedNumbers(s) {
		q, err := v2Scalar(s)
		if err != nil {
			return "", err
		}
		out = q
	}
	if (spaces || out[0] == '"') && col+len(out) > yamlWidth {
		return "", errSlow
	}
	return out, nil
}

// plainString reports whether s (printable ASCII) is
// written plain: it cannot be read back as anything but this string
// (null, a bool, a number, a timestamp, a merge key) and holds no
// indicator where YAML would see one.
func plainString(s string) bool {
	switch s[0] {
	case '#', ',', '[', ']', '{', '}', '&', '*', '!', '|', '>', '\'', '"', '%', '@', '`',
		'+', '-', '.', '~', '<', '?', ':', '=', ' ',
		'0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return false
	case 'y', 'Y', 'n', 'N', 't', 'T', 'f', 'F', 'o', 'O':
		if len(s) <= 5 {
			return false // yes, no, true, false, on, off, ... (checked by go-yaml)
		}
	}
	if s[len(s)-1] == ':' || s[len(s)-1] == ' ' || strings.ContainsAny(s, `'"\`) ||
		strings.Contains(s, ": ") || strings.Contains(s, " #") {
		return false
	}
	return true
}

// dottedNumbers reports whether s is digits with two dots or more (an
// IPv4 address): no YAML number or timestamp, so go-yaml writes it plain.
func dottedNumbers(s string) bool {
	dots := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '.':
			if i == 0 || i == len(s)-1 || s[i-1] == '.' {
				return false
			}
			dots++
		case c < '0' || c > '9':
			return false
		}
	}
	return dots >= 2
}

// v2Cache remembers how go-yaml writes the strings plainString cannot
// decide (version numbers, IP addresses, "yes"): few and repeated.
var v2Cache sync.Map // string -> string

// v2Scalar asks go-yaml v2 itself how it writes s.
func v2Scalar(s string) (string, error) {
	if q, ok := v2Cache.Load(s); ok {
		return q.(string), nil
	}
	b, err := yamlv2.Marshal(s)
	if err != nil {
		return "", err
	}
	q := strings.TrimSuffix(string(b), "\n")
	if q == "" || strings.Contains(q, "\n") || strings.HasPrefix(q, "!") {
		return "", errSlow
	}
	v2Cache.Store(s, q)
	return q, nil
}

// fieldInfo is a field with its key as written and its place in the
// order go-yaml writes the keys of its message.
type fieldInfo struct {
	fd   protoreflect.FieldDescriptor
	key  string
	rank int
	val  protoreflect.Value
}

var fieldOrder sync.Map // protoreflect.FullName -> []fieldInfo, by field index

// fieldInfos lists a message type's fields by index, each with its rank
// in the order go-yaml writes their JSON names.
func fieldInfos(d protoreflect.MessageDescriptor) []fieldInfo {
	if fs, ok := fieldOrder.Load(d.FullName()); ok {
		return fs.([]fieldInfo)
	}
	n := d.Fields().Len()
	fs := make([]fieldInfo, n)
	order := make([]int, n)
	for i := range n {
		fd := d.Fields().Get(i)
		k, err := scalar(fd.JSONName(), 0)
		if err != nil {
			k = fd.JSONName() // JSON names are identifiers
		}
		fs[i] = fieldInfo{fd: fd, key: k}
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return yamlKeyCompare(fs[a].fd.JSONName(), fs[b].fd.JSONName()) })
	for rank, i := range order {
		fs[i].rank = rank
	}
	fieldOrder.Store(d.FullName(), fs)
	return fs
}

// populated lists the fields of r that protojson writes (those Range
// visits), in go-yaml's key order.
func (w *yamlWriter) populated(r protoreflect.Message) ([]fieldInfo, error) {
	d := r.Descriptor()
	infos, ok := w.infos[d]
	if !ok {
		infos = fieldInfos(d)
		if w.infos == nil {
			w.infos = map[protoreflect.MessageDescriptor][]fieldInfo{}
		}
		w.infos[d] = infos
	}
	var out []fieldInfo
	ext := false
	r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.IsExtension() {
			ext = true
			return false
		}
		f := infos[fd.Index()]
		f.val = v
		out = append(out, f)
		return true
	})
	if ext {
		return nil, errSlow
	}
	slices.SortFunc(out, func(a, b fieldInfo) int { return a.rank - b.rank })
	return out, nil
}

// yamlKeyCompare is yamlKeyLess as a comparison for slices.SortFunc.
func yamlKeyCompare(a, b string) int {
	switch {
	case a == b:
		return 0
	case yamlKeyLess(a, b):
		return -1
	}
	return 1
}

// yamlKeyLess orders mapping keys as go-yaml v2 does: rune by rune, a
// letter before any other rune, and runs of digits compared by their
// numeric value ("a2" before "a10").
func yamlKeyLess(a, b string) bool {
	ar, br := []rune(a), []rune(b)
	for i := 0; i < len(ar) && i < len(br); i++ {
		if ar[i] == br[i] {
			continue
		}
		al, bl := unicode.IsLetter(ar[i]), unicode.IsLetter(br[i])
		if al && bl {
			return ar[i] < br[i]
		}
		if al || bl {
			return bl
		}
		var an, bn int64
		if ar[i] == '0' || br[i] == '0' {
			// A zero inside a number counts as a digit of it.
			for j := i - 1; j >= 0 && unicode.IsDigit(ar[j]); j-- {
				if ar[j] != '0' {
					an, bn = 1, 1
					break
				}
			}
		}
		ai, bi := i, i
		for ; ai < len(ar) && unicode.IsDigit(ar[ai]); ai++ {
			an = an*10 + int64(ar[ai]-'0')
		}
		for ; bi < len(br) && unicode.IsDigit(br[bi]); bi++ {
			bn = bn*10 + int64(br[bi]-'0')
		}
		if an != bn {
			return an < bn
		}
		if ai != bi {
			return ai < bi
		}
		return ar[i] < br[i]
	}
	return len(ar) < len(br)
}

// structValue writes a Struct after "key:" (the key at column indent) as
// protojson does: a JSON object, that is a mapping of its fields (sorted
// as go-yaml sorts keys). A Struct as a list element is left to the
// reference path.
func (w *yamlWriter) structValue(r protoreflect.Message, indent int, inField bool) error {
	if !inField {
		return errSlow
	}
	fd := r.Descriptor().Fields().ByName("fields")
	if fd == nil {
		return errSlow
	}
	if m := r.Get(fd).Map(); m.Len() > 0 {
		return w.mapValue(m, fd, indent)
	}
	w.buf = append(w.buf, " {}\n"...)
	return nil
}

// jsonValue writes a Value after "key:" (the key at column indent, its
// scalar at column col): strings, booleans, numbers and Structs; null and
// lists are left to the reference path.
func (w *yamlWriter) jsonValue(r protoreflect.Message, indent int, inField bool, col int) error {
	od := r.Descriptor().Oneofs().ByName("kind")
	if !inField || od == nil {
		return errSlow
	}
	fd := r.WhichOneof(od)
	if fd == nil {
		return errSlow
	}
	v := r.Get(fd)
	var s string
	var err error
	switch fd.Name() {
	case "string_value":
		s, err = scalar(v.String(), col)
	case "bool_value":
		s, err = singular(v, fd, col)
	case "number_value":
		s, err = float(v.Float(), 64)
	case "struct_value":
		return w.structValue(v.Message(), indent, true)
	default:
		return errSlow
	}
	if err != nil {
		return err
	}
	w.buf = append(w.buf, ' ')
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '\n')
	return nil
}

// jsonAsYAML writes a JSON document as sigs.k8s.io/yaml.JSONToYAML writes
// it (go-yaml v2 block style, keys sorted as go-yaml sorts them), without
// its parse and re-encode: objects, arrays, strings, integers, booleans
// and null. Anything it cannot promise the same bytes for (a float, an
// array directly inside an array, a string go-yaml would fold or escape)
// gives errSlow, and the caller takes the reference path.
func jsonAsYAML(j []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(j))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return nil, errSlow
	}
	w := &yamlWriter{}
	if err := w.jsonMap(m, 0); err != nil {
		return nil, err
	}
	return w.buf, nil
}

// jsonMap writes a non-empty object as a block mapping whose keys are at
// column indent; the first key goes where the cursor is.
func (w *yamlWriter) jsonMap(m map[string]any, indent int) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, yamlKeyCompare)
	for i, k := range keys {
		if i > 0 {
			w.indent(indent)
		}
		ks, err := scalar(k, indent)
		if err != nil {
			return err
		}
		if len(ks) > 128 {
			return errSlow
		}
		w.buf = append(w.buf, ks...)
		w.buf = append(w.buf, ':')
		if err := w.jsonField(m[k], indent, len(ks)+2); err != nil {
			return err
		}
	}
	return nil
}

// jsonField writes a value after "key:" (the key at column indent).
func (w *yamlWriter) jsonField(v any, indent, keyWidth int) error {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			w.buf = append(w.buf, " {}\n"...)
			return nil
		}
		w.buf = append(w.buf, '\n')
		w.indent(indent + 2)
		return w.jsonMap(x, indent+2)
	case []any:
		if len(x) == 0 {
			w.buf = append(w.buf, " []\n"...)
			return nil
		}
		w.buf = append(w.buf, '\n')
		for _, e := range x {
			w.indent(indent)
			w.buf = append(w.buf, "- "...)
			if err := w.jsonElement(e, indent+2); err != nil {
				return err
			}
		}
		return nil
	}
	s, err := jsonScalar(v, indent+keyWidth)
	if err != nil {
		return err
	}
	w.buf = append(w.buf, ' ')
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '\n')
	return nil
}

// jsonElement writes a list element after "- ", its content at column
// indent.
func (w *yamlWriter) jsonElement(v any, indent int) error {
	switch x := v.(type) {
	case map[string]any:
		if len(x) == 0 {
			w.buf = append(w.buf, "{}\n"...)
			return nil
		}
		return w.jsonMap(x, indent)
	case []any:
		return errSlow
	}
	s, err := jsonScalar(v, indent)
	if err != nil {
		return err
	}
	w.buf = append(w.buf, s...)
	w.buf = append(w.buf, '\n')
	return nil
}

// jsonScalar is a JSON scalar as go-yaml v2 writes what it decoded.
func jsonScalar(v any, col int) (string, error) {
	switch x := v.(type) {
	case string:
		return scalar(x, col)
	case bool:
		if x {
			return "true", nil
		}
		return "false", nil
	case nil:
		return "null", nil
	case json.Number:
		if _, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return string(x), nil
		}
	}
	return "", errSlow
}
