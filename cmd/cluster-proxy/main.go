// Command cluster-proxy holds cluster-proxy's HTTP-side commands:
// controllers (hub) keeps the service-proxy's serving certificate fresh;
// service-proxy (managed clusters) forwards requests that come through the
// tunnel to the kube-apiserver or a Service; user-server (hub) is the HTTPS
// front door to every managed cluster through the tunnel and the
// service-proxies; kubeconfig prints a kubeconfig that reaches a managed
// cluster through the user-server.
package main

import (
	"context"

	"github.com/spf13/cobra"

	"open-cluster-management.io/cluster-proxy/internal/clusterkubeconfig"
	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/servicecert"
	"open-cluster-management.io/cluster-proxy/internal/serviceproxy"
	"open-cluster-management.io/cluster-proxy/internal/userserver"
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
	userServer := userserver.NewOptions()
	root.AddCommand(command.New("user-server", "serve HTTPS access to every managed cluster through the tunnel (hub)", userServer,
		func(ctx context.Context) error { return userserver.Run(ctx, userServer) }))
	kubeconfig := clusterkubeconfig.NewOptions()
	root.AddCommand(command.New("kubeconfig", "print a kubeconfig that reaches a managed cluster through the user-server with your hub token", kubeconfig,
		func(ctx context.Context) error { return clusterkubeconfig.Run(ctx, kubeconfig) }))
	command.Execute(root)
}
