// Package manifests holds podpreset's generated CRDs (crd/) and, with the
// webhook, its kustomize bases and examples. The Go package exists for the
// tests that check the generated CRDs the way the API server will.
package manifests
