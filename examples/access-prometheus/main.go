// Command access-prometheus queries a Prometheus server on a managed
// cluster from the hub with prometheus/client_golang's API client, through
// the hub's user-server, the tunnel and the cluster's service-proxy; the
// chart's exposedServices must list the Prometheus Service. See README.md.
package main

import "open-cluster-management.io/cluster-proxy/examples/internal/example"

func main() {
	example.Main("access-prometheus", NewOptions())
}
