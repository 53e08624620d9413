// Package command runs the project's cobra commands the same way: klog flags
// at the project's default verbosity, errors printed once, exit status 1 on
// failure.
package command

import (
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
)

// DefaultVerbosity is the klog verbosity our binaries start with.
const DefaultVerbosity = 2

// AddKlogFlags registers klog's flags on cmd with verbosity v.
func AddKlogFlags(cmd *cobra.Command, v int) {
	fs := flag.NewFlagSet(cmd.Name(), flag.ContinueOnError)
	klog.InitFlags(fs)
	// Setting a registered flag to a valid integer cannot fail.
	_ = fs.Set("v", strconv.Itoa(v))
	cmd.Flags().AddGoFlagSet(fs)
}

// Execute runs cmd and exits with status 1, printing the error, when it
// fails.
func Execute(cmd *cobra.Command) {
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	if err := cmd.Execute(); err != nil {
		klog.Flush()
		fmt.Fprintf(os.Stderr, "%s: %v\n", cmd.Name(), err)
		os.Exit(1)
	}
}
