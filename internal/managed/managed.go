// Package managed names the label podpreset puts on every object it writes
// (the webhook's certificate Secret, the ConfigMaps and Secrets the sources
// controller materialises), so that caches can hold only those. It is a leaf
// package: certs and sources both use it, and neither imports the other.
package managed

import "k8s.io/apimachinery/pkg/labels"

const (
	// LabelManagedBy is the well-known label.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedBy is podpreset's value of it.
	ManagedBy = "podpreset"
)

// Labels returns a new map holding the label.
func Labels() map[string]string { return map[string]string{LabelManagedBy: ManagedBy} }

// Selector selects the objects podpreset writes.
func Selector() labels.Selector { return labels.SelectorFromSet(Labels()) }

// Is says whether an object's labels mark it as podpreset's.
func Is(l map[string]string) bool { return l[LabelManagedBy] == ManagedBy }
