// Command localenv runs cluster-proxy's local environment: `make local-up`
// and `make local-down` call it; see the localenv package.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/test/localenv"
	"open-cluster-management.io/cluster-proxy/test/localenv/workload"
)

const usage = `usage: localenv <command> [flags]

commands:
  up        start the environment, install the chart, wait for the addon
  down      stop every process and remove all state
  kubectl   run kubectl against a managed cluster through the tunnel:
            localenv kubectl --cluster=cluster1 -- get namespaces
`

func main() {
	// Run as a program of the test workload's image (a link to this
	// binary named for the program).
	if name := filepath.Base(os.Args[0]); workload.IsProgram(name) {
		os.Exit(workload.Main(name, os.Args[1:]))
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	// pod-exec replaces itself with a container's program; it must not
	// touch flags or logging first.
	if os.Args[1] == "pod-exec" {
		if err := podExec(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "pod-exec:", err)
			os.Exit(127)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1], os.Args[2:]); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			os.Exit(exit.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "localenv:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, command string, args []string) error {
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	klog.InitFlags(fs)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bin := localenv.Binaries{Self: self}
	stateDir := fs.String("state-dir", "", "the environment's state directory (absolute)")
	fs.StringVar(&bin.Etcd, "etcd", "", "etcd binary")
	fs.StringVar(&bin.KubeAPIServer, "kube-apiserver", "", "kube-apiserver binary")
	fs.StringVar(&bin.KubeControllerManager, "kube-controller-manager", "", "kube-controller-manager binary")
	fs.StringVar(&bin.OCMDir, "ocm-dir", "", "directory of OCM's registration, work, addon and placement binaries")
	fs.StringVar(&bin.ImageRoot, "image-root", "", "directory of cluster-proxy's binaries, named as in the image")
	helm := fs.String("helm", "", "Helm CLI")
	chart := fs.String("chart", "", "cluster-proxy chart directory")
	cluster := fs.String("cluster", "", "managed cluster (kubectl)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *stateDir == "" {
		return errors.New("--state-dir is required")
	}
	ctx = klog.NewContext(ctx, klog.Background())
	switch command {
	case "up":
		return localenv.Up(ctx, localenv.UpOptions{StateDir: *stateDir, Bin: bin, Helm: *helm, Chart: *chart, Out: os.Stdout})
	case "down":
		if err := localenv.Down(ctx, *stateDir); err != nil {
			return err
		}
		fmt.Println("local environment removed")
		return nil
	case "supervise":
		s := &localenv.Supervisor{StateDir: *stateDir, Bin: bin}
		return s.Run(ctx)
	case "kubectl":
		return localenv.Kubectl(ctx, *stateDir, *cluster, fs.Args())
	default:
		return fmt.Errorf("unknown command %q\n%s", command, usage)
	}
}
