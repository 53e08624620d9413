// Command proxy-agent is the konnectivity proxy-agent that runs on managed
// clusters and holds the reverse tunnel to the hub proxy-servers. It accepts
// the flags of apiserver-network-proxy's proxy-agent.
package main

import (
	"context"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/tunnel"
)

func main() {
	opts := tunnel.NewAgentOptions()
	command.Execute(command.New("proxy-agent", "konnectivity proxy-agent (managed cluster)", opts,
		func(ctx context.Context) error { return tunnel.RunAgent(ctx, opts) }))
}
