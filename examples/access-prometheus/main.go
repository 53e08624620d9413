// Command access-prometheus queries a Prometheus server on a managed
// cluster from the hub with prometheus/client_golang's API client, through
// the hub's user-server, the tunnel and the cluster's service-proxy; the
// chart's exposedServices must list the Prometheus Service. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
)

func main() {
	o := NewOptions()
	fs := pflag.NewFlagSet("access-prometheus", pflag.ExitOnError)
	o.AddFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if err := o.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "access-prometheus:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	err := run(ctx, o, os.Stdout)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "access-prometheus:", err)
		os.Exit(1)
	}
}
