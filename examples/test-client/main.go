// Command test-client lists the namespaces of a managed cluster from the
// hub through the cluster-proxy tunnel, twice: with the stock
// konnectivity-client pattern (a single-use gRPC tunnel, cfg.Host = the
// cluster name, cfg.Dial = tunnel.DialContext) and with pkg/client's
// pooled Dialer. See README.md.
package main

import "open-cluster-management.io/cluster-proxy/examples/internal/example"

func main() {
	example.Main("test-client", NewOptions())
}
