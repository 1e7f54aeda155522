// Command etcd is the etcd server, built from its pinned module through the
// Go module proxy, as the release binaries cannot be downloaded here. It
// mirrors etcd's own main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
