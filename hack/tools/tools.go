//go:build tools

// Package tools pins the versions of the code generators the Makefile runs.
// It lives in its own module so that their dependency trees never touch the
// project's go.mod.
package tools

import (
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
