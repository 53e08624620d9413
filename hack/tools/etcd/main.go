// Command etcd is the upstream etcd server, built from go.etcd.io/etcd so
// tests can run a real kube-apiserver against it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
