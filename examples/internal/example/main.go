// Package example holds what the example programs share, so that each
// example's directory shows only what it is about: Main, the wiring of a
// program's flags, validation and run, and UserServerService, the flags
// and HTTP client of the examples that reach a Service of a managed
// cluster through the hub's user-server. Being internal to examples/, it is
// not a library: copy what you need.
package example

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
)

// Command is an example program: its options, their validation and its
// run.
type Command interface {
	// AddFlags binds the options to flags.
	AddFlags(fs *pflag.FlagSet)
	// Validate reports every invalid option, each naming its flag.
	Validate() error
	// Run does the example's work and writes what it saw to out.
	Run(ctx context.Context, out io.Writer) error
}

// Main parses the command line into c's flags, exits with status 2 when
// c.Validate fails, then runs c with a context that ends at SIGINT or
// SIGTERM, writing to standard output, and exits with status 1 when the run
// fails. Errors go to standard error after "<name>: ".
func Main(name string, c Command) {
	fs := pflag.NewFlagSet(name, pflag.ExitOnError)
	c.AddFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if err := c.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := c.Run(ctx, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
