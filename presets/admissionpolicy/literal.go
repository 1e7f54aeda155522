package admissionpolicy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// literal renders v, a value of one of the API's Go types, as a CEL
// expression that builds its JSON: objects become maps and arrays lists,
// each member wrapped in dyn() (the API server's CEL wants the members of
// a list or map literal to be of one type). Its JSON is its source, so the
// value the policy writes encodes to the same JSON as v: fields left out of
// v's JSON (omitempty) are left out of the map.
func literal(v any) (string, error) {
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
	if err := writeLiteral(&b, j); err != nil {
		return "", err
	}
	return b.String(), nil
}

func writeLiteral(b *strings.Builder, j any) error {
	switch j := j.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(j))
	case string:
		b.WriteString(quote(j))
	case json.Number:
		if _, err := strconv.ParseInt(string(j), 10, 64); err != nil {
			return fmt.Errorf("%s is not an integer", j)
		}
		b.WriteString(string(j))
	case []any:
		b.WriteByte('[')
		for i, e := range j {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("dyn(")
			if err := writeLiteral(b, e); err != nil {
				return err
			}
			b.WriteByte(')')
		}
		b.WriteByte(']')
	case map[string]any:
		b.WriteByte('{')
		for i, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range j {
				if !yield(k) {
					return
				}
			}
		}) {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(quote(k))
			b.WriteString(": dyn(")
			if err := writeLiteral(b, j[k]); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			b.WriteByte(')')
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("unexpected JSON value %T", j)
	}
	return nil
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
