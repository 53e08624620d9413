// Package command runs every cluster-proxy binary the same way: one klog
// flag set (dashed names, underscores accepted, default verbosity 2), the
// options' Complete, Validate and effective-options log before anything
// starts, a context cancelled by SIGTERM or SIGINT (a second signal exits at
// once) carrying the logger, and one exit path that prints the error and
// exits with status 1.
package command

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/version"
)

// DefaultVerbosity is the klog verbosity every binary starts with.
const DefaultVerbosity = 2

// Options are a binary's settings: flags bound by AddFlags, then Complete
// (values that do not come from flags, such as the environment), Validate
// (every invalid option, each naming its flag) and Log (the effective
// options, once, at start).
type Options interface {
	AddFlags(fs *pflag.FlagSet)
	Complete() error
	Validate() error
	Log(logger logr.Logger)
}

// RunFunc runs a binary until ctx is done; ctx carries the logger.
type RunFunc func(ctx context.Context) error

// New returns the command use that binds the flags of opts and klog's, and
// on execution completes, validates and logs opts, then calls run with a
// context that SIGTERM or SIGINT cancels.
func New(use, short string, opts Options, run RunFunc) *cobra.Command {
	cmd := &cobra.Command{
		Use:     use,
		Short:   short,
		Version: version.Version,
		Args:    cobra.NoArgs,
		// Execute prints the error once; usage is for --help.
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(_ *cobra.Command, _ []string) error {
			if err := opts.Complete(); err != nil {
				return err
			}
			if err := opts.Validate(); err != nil {
				return err
			}
			logger := klog.NewKlogr().WithName(use)
			opts.Log(logger)
			ctx, stop := signalContext(klog.NewContext(context.Background(), logger))
			defer stop()
			return run(ctx)
		},
	}
	opts.AddFlags(cmd.Flags())
	AddKlogFlags(cmd.Flags())
	return cmd
}

// AddKlogFlags registers klog's flags on fs at DefaultVerbosity. Their names
// are spelled with dashes (--log-file, --v); the underscore spellings of
// klog's own flag set (--log_file) are accepted too.
func AddKlogFlags(fs *pflag.FlagSet) {
	gofs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(gofs)
	// Setting a registered flag to a valid integer cannot fail.
	_ = gofs.Set("v", strconv.Itoa(DefaultVerbosity))
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	fs.AddGoFlagSet(gofs)
}

// signalContext returns a context cancelled by the first SIGTERM or SIGINT;
// a second one exits the process with status 1. stop releases the signals.
func signalContext(parent context.Context) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-signals:
			klog.FromContext(parent).Info("shutting down", "signal", s.String())
			cancel()
		case <-done:
			return
		}
		select {
		case <-signals:
			klog.Flush()
			os.Exit(1)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(signals)
		close(done)
		cancel()
	}
}

// Execute runs cmd and, when it fails, prints "<command path>: <error>" to
// standard error and exits with status 1. A command with subcommands and
// nothing to run itself prints its help and fails.
func Execute(cmd *cobra.Command) {
	cmd.SilenceUsage = true
	cmd.SilenceErrors = true
	if cmd.Run == nil && cmd.RunE == nil && cmd.HasSubCommands() {
		cmd.RunE = func(c *cobra.Command, _ []string) error {
			_ = c.Help()
			return fmt.Errorf("a subcommand is required")
		}
	}
	cmd.CompletionOptions.DisableDefaultCmd = true
	ran, err := cmd.ExecuteC()
	klog.Flush()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", ran.CommandPath(), err)
		os.Exit(1)
	}
}

// PodNamespaceEnv names the environment variable that holds a binary's own
// namespace, set from the downward API in every manifest that runs one.
const PodNamespaceEnv = "POD_NAMESPACE"

// PodNameEnv and PodUIDEnv name the environment variables that hold the
// pod's name and UID, from the downward API, where a binary needs them
// (the proxy-server's health report).
const (
	PodNameEnv = "POD_NAME"
	PodUIDEnv  = "POD_UID"
)

// PodNamespace returns the binary's namespace from PodNamespaceEnv, or ""
// when it is not set.
func PodNamespace() string { return os.Getenv(PodNamespaceEnv) }
