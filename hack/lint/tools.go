//go:build tools

// Package lint pins golangci-lint, built into bin/ by `make lint` (and
// `make verify`) through the Go module proxy. A module of its own, so that
// its dependencies never meet podpreset's.
package lint

import _ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
