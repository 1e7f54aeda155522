// Command vault is the Vault server and CLI, built from its pinned module
// through the Go module proxy, as release binaries cannot be downloaded
// here. It does what Vault's own main does.
//
// A dependency of Vault v1.13.0 embeds a CA certificate with a negative
// serial number, which Go 1.26 refuses to parse unless told otherwise.
//
//go:debug x509negativeserial=1
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
