// Command test-client lists the namespaces of a managed cluster from the
// hub through the cluster-proxy tunnel, twice: with the stock
// konnectivity-client pattern (a single-use gRPC tunnel, cfg.Host = the
// cluster name, cfg.Dial = tunnel.DialContext) and with pkg/client's
// pooled Dialer. See README.md.
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
	fs := pflag.NewFlagSet("test-client", pflag.ExitOnError)
	o.AddFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if err := o.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "test-client:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	err := run(ctx, o, os.Stdout)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "test-client:", err)
		os.Exit(1)
	}
}
