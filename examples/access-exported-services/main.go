// Command access-exported-services GETs a path from a Service on a
// managed cluster through the hub's user-server, which forwards it through
// the tunnel to the cluster's service-proxy; the chart's exposedServices
// must list the Service. See README.md.
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
	fs := pflag.NewFlagSet("access-exported-services", pflag.ExitOnError)
	o.AddFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if err := o.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "access-exported-services:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	err := run(ctx, o, os.Stdout)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "access-exported-services:", err)
		os.Exit(1)
	}
}
