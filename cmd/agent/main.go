// Command agent is the cluster-proxy addon-agent on managed clusters: it
// renews the addon Lease while the proxy-agent is connected, serves the agent
// pod's health endpoint and, for PortForward entrypoints, relays the
// proxy-agent to the hub proxy-servers.
package main

import (
	"context"

	"open-cluster-management.io/cluster-proxy/internal/addonagent"
	"open-cluster-management.io/cluster-proxy/internal/command"
)

func main() {
	opts := addonagent.NewOptions()
	command.Execute(command.New("agent", "cluster-proxy addon-agent", opts,
		func(ctx context.Context) error { return addonagent.Run(ctx, opts) }))
}
