// Command manager is the cluster-proxy hub addon-manager: it runs the
// proxy-servers a ManagedProxyConfiguration describes and registers the
// cluster-proxy addon with OCM.
package main

import (
	"context"

	"open-cluster-management.io/cluster-proxy/internal/addonmanager"
	"open-cluster-management.io/cluster-proxy/internal/command"
)

func main() {
	opts := addonmanager.NewOptions()
	command.Execute(command.New("manager", "cluster-proxy hub addon-manager", opts,
		func(ctx context.Context) error { return addonmanager.Run(ctx, opts) }))
}
