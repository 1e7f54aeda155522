package admissionpolicy

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// literal renders v, a value of one of the API's Go types, as a CEL
// expression that builds it, typed as the object's field at typePath
// (Object.spec.containers.env): structs become typed object constructions,
// maps map literals, lists list literals. Its JSON is its source, so the
// value the policy writes encodes to the same JSON as v: fields left out of
// v's JSON (omitempty) are left out of the construction.
func literal(v any, typePath string) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	var j any
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	if err := d.Decode(&j); err != nil {
		return "", err
	}
	var b strings.Builder
	if err := writeLiteral(&b, j, reflect.TypeOf(v), typePath); err != nil {
		return "", err
	}
	return b.String(), nil
}

var (
	quantityType    = reflect.TypeFor[resource.Quantity]()
	intOrStringType = reflect.TypeFor[intstr.IntOrString]()
)

func writeLiteral(b *strings.Builder, j any, t reflect.Type, typePath string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch j := j.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(j))
	case string:
		b.WriteString(quote(j))
	case json.Number:
		if _, err := strconv.ParseInt(string(j), 10, 64); err != nil {
			return fmt.Errorf("%s: %s is not an integer", typePath, j)
		}
		b.WriteString(string(j))
	case []any:
		if t.Kind() != reflect.Slice {
			return fmt.Errorf("%s: a list where the type is %s", typePath, t)
		}
		b.WriteByte('[')
		for i, e := range j {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := writeLiteral(b, e, t.Elem(), typePath); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := slices.Sorted(mapKeys(j))
		switch {
		case t.Kind() == reflect.Map:
			b.WriteByte('{')
			for i, k := range keys {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(quote(k))
				b.WriteString(": ")
				if err := writeLiteral(b, j[k], t.Elem(), typePath+"."+k); err != nil {
					return err
				}
			}
			b.WriteByte('}')
		case t.Kind() == reflect.Struct && t != quantityType && t != intOrStringType:
			b.WriteString(typePath)
			b.WriteByte('{')
			for i, k := range keys {
				f, ok := jsonField(t, k)
				if !ok {
					return fmt.Errorf("%s: %s has no field %q", typePath, t, k)
				}
				name, ok := fieldName(k)
				if !ok {
					return fmt.Errorf("%s: field %q cannot be named in CEL", typePath, k)
				}
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(name)
				b.WriteString(": ")
				if err := writeLiteral(b, j[k], f.Type, typePath+"."+k); err != nil {
					return err
				}
			}
			b.WriteByte('}')
		default:
			return fmt.Errorf("%s: an object where the type is %s", typePath, t)
		}
	default:
		return fmt.Errorf("%s: unexpected JSON value %T", typePath, j)
	}
	return nil
}

func mapKeys(m map[string]any) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// jsonField finds the struct field encoded under name, through inlined
// structs (a Volume's VolumeSource).
func jsonField(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "" && f.Anonymous {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if g, ok := jsonField(ft, name); ok {
					return g, true
				}
			}
			continue
		}
		if tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// fieldName is how CEL names an API field in an object construction: as
// itself, or __word__ for a CEL reserved word (Kubernetes' escaping). Only
// identifiers can be named: the names of the API's fields are.
func fieldName(s string) (string, bool) {
	if s == "" {
		return "", false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return "", false
		}
	}
	if reserved[s] {
		return "__" + s + "__", true
	}
	return s, true
}

// reserved are CEL's reserved words, which no field name may be.
var reserved = map[string]bool{
	"true": true, "false": true, "null": true, "in": true, "as": true, "break": true, "const": true, "continue": true,
	"else": true, "for": true, "function": true, "if": true, "import": true, "let": true, "loop": true, "package": true,
	"namespace": true, "return": true, "var": true, "void": true, "while": true,
}

// quote renders s as a CEL string literal.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			// JSON from encoding/json holds valid UTF-8 only.
			b.WriteString(`\ufffd`)
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}
