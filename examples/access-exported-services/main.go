// Command access-exported-services GETs a path from a Service on a
// managed cluster through the hub's user-server, which forwards it through
// the tunnel to the cluster's service-proxy; the chart's exposedServices
// must list the Service. See README.md.
package main

import "open-cluster-management.io/cluster-proxy/examples/internal/example"

func main() {
	example.Main("access-exported-services", NewOptions())
}
