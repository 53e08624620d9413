// Command cluster-proxy holds cluster-proxy's HTTP-side commands:
// controllers (hub) keeps the service-proxy's serving certificate fresh;
// service-proxy (managed clusters) forwards requests that come through the
// tunnel to the kube-apiserver or a Service. The user-server is being built
// (see the open issues).
package main

import (
	"context"

	"github.com/spf13/cobra"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/servicecert"
	"open-cluster-management.io/cluster-proxy/internal/serviceproxy"
	"open-cluster-management.io/cluster-proxy/internal/version"
)

func main() {
	root := &cobra.Command{
		Use:     "cluster-proxy",
		Short:   "cluster-proxy's HTTP-side commands",
		Version: version.Version,
	}
	controllers := servicecert.NewOptions()
	root.AddCommand(command.New("controllers", "keep the service-proxy serving certificate fresh (hub)", controllers,
		func(ctx context.Context) error { return servicecert.Run(ctx, controllers) }))
	serviceProxy := serviceproxy.NewOptions()
	root.AddCommand(command.New("service-proxy", "forward tunnelled requests to the kube-apiserver or a Service (managed cluster)", serviceProxy,
		func(ctx context.Context) error { return serviceproxy.Run(ctx, serviceProxy) }))
	command.Execute(root)
}
