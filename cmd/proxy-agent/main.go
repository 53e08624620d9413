// Command proxy-agent is the konnectivity proxy-agent that runs on managed
// clusters and holds the reverse tunnel to the hub proxy-servers. It accepts
// the flags of apiserver-network-proxy's proxy-agent.
package main

import (
	"os"

	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/tunnel"
)

func main() {
	if err := tunnel.NewAgentCommand().Execute(); err != nil {
		klog.ErrorS(err, "proxy-agent failed")
		klog.Flush()
		os.Exit(1)
	}
}
