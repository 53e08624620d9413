// Command cluster-proxy holds cluster-proxy's HTTP-side commands. Today it
// has one subcommand, controllers, which keeps the service-proxy's serving
// certificate fresh on the hub; user-server and service-proxy are being
// built (see the open issues).
package main

import (
	"context"

	"github.com/spf13/cobra"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/servicecert"
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
	command.Execute(root)
}
