// Command proxy-server is the konnectivity proxy-server that runs on the hub.
// It accepts the flags of apiserver-network-proxy's proxy-server.
package main

import (
	"os"

	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/tunnel"
)

func main() {
	if err := tunnel.NewServerCommand().Execute(); err != nil {
		klog.ErrorS(err, "proxy-server failed")
		klog.Flush()
		os.Exit(1)
	}
}
