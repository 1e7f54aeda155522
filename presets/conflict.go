package presets

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// FieldKind is the kind of entry a conflict is about.
type FieldKind string

// The kinds of entries a preset injects.
const (
	FieldEnv           FieldKind = "env"
	FieldEnvFrom       FieldKind = "envFrom"
	FieldVolumeMount   FieldKind = "volumeMount"
	FieldVolume        FieldKind = "volume"
	FieldInitContainer FieldKind = "initContainer"
	FieldAnnotation    FieldKind = "annotation"
)

// KeptFromPod is Conflict.KeptFrom when the kept value is the pod's own.
const KeptFromPod = "pod"

// Conflict is a value a preset could not inject because the pod, or a preset
// applied before it, already had another value under the same key.
type Conflict struct {
	// Preset is the preset whose value was dropped.
	Preset Ref
	// Kind is the kind of entry.
	Kind FieldKind
	// Container is the target container's name; empty for pod-level fields.
	Container string
	// Field is the path of the entry in the pod, such as
	// spec.containers[name=web].env[name=DB_PORT].
	Field string
	// Kept is the value the pod keeps, as JSON.
	Kept string
	// KeptFrom is "pod" when the kept value is the pod's own, else the
	// reference (Kind/name@generation) of the preset that set it.
	KeptFrom string
	// Dropped is the preset's value that was not injected, as JSON.
	Dropped string
}

// String renders the conflict for a terminal, values whole.
func (c Conflict) String() string { return c.Render(0) }

// Render renders the conflict for a warning or a terminal, with the kept
// and dropped values shortened to width bytes (0: whole).
func (c Conflict) Render(width int) string {
	from := "the pod's own"
	if c.KeptFrom != KeptFromPod {
		from = "from " + c.KeptFrom
	}
	kept, dropped := c.Kept, c.Dropped
	if width > 0 {
		kept, dropped = Shorten(kept, width), Shorten(dropped, width)
	}
	return fmt.Sprintf("%s: %s: kept %s (%s), dropped %s", c.Preset, c.Field, kept, from, dropped)
}

// render turns an entry into the compact JSON a conflict shows.
func render(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%+v", v)
	}
	return string(b)
}

// Shorten cuts s to at most n bytes, never inside a UTF-8 sequence, and
// marks the cut with an ellipsis.
func Shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
