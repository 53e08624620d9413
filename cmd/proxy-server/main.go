// Command proxy-server is the konnectivity proxy-server that runs on the hub.
// It accepts the flags of apiserver-network-proxy's proxy-server.
package main

import (
	"context"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/tunnel"
)

func main() {
	opts := tunnel.NewServerOptions()
	command.Execute(command.New("proxy-server", "konnectivity proxy-server (hub)", opts,
		func(ctx context.Context) error { return tunnel.RunServer(ctx, opts) }))
}
