package localenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
	"open-cluster-management.io/cluster-proxy/test/localenv/proc"
)

// UpOptions configure Up.
type UpOptions struct {
	// StateDir holds everything the environment writes.
	StateDir string
	// Bin are the programs the environment runs.
	Bin Binaries
	// Helm is the Helm CLI; Chart the chart directory.
	Helm, Chart string
	// Out receives progress and the final instructions.
	Out io.Writer
}

// Validate checks that every program exists.
func (o *UpOptions) Validate() error {
	if o.StateDir == "" || !filepath.IsAbs(o.StateDir) {
		return fmt.Errorf("--state-dir must be an absolute path, got %q", o.StateDir)
	}
	files := map[string]string{
		"--etcd": o.Bin.Etcd, "--kube-apiserver": o.Bin.KubeAPIServer, "--kube-controller-manager": o.Bin.KubeControllerManager,
		"--helm": o.Helm, "--ocm-dir (registration)": filepath.Join(o.Bin.OCMDir, "registration"),
		"--image-root (manager)": filepath.Join(o.Bin.ImageRoot, "manager"), "--image-root (cluster-proxy)": filepath.Join(o.Bin.ImageRoot, "cluster-proxy"),
		"--chart (Chart.yaml)": filepath.Join(o.Chart, "Chart.yaml"),
	}
	for flag, path := range files {
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("%s: %w (the Makefile's local-up target builds it)", flag, err)
		}
	}
	return nil
}

// Up starts the environment (unless it is already up), installs the chart
// with the Helm CLI, waits for the addon to be Available on every managed
// cluster and prints how to use it.
func Up(ctx context.Context, o UpOptions) error {
	if err := o.Validate(); err != nil {
		return err
	}
	start := time.Now()
	if !supervisorRunning(o.StateDir) || Status(o.StateDir) != "ready" {
		// Whatever is left of an earlier run goes first.
		if err := Down(ctx, o.StateDir); err != nil {
			return err
		}
		if err := netns.Check(ctx); err != nil {
			return fmt.Errorf("the local environment needs network namespaces and will not fall back to a shared network: %w", err)
		}
		if err := startSupervisor(ctx, o); err != nil {
			return err
		}
	}
	_, _ = fmt.Fprintf(o.Out, "clusters up after %s; installing cluster-proxy with helm\n", time.Since(start).Round(time.Second))
	env, err := LoadEnv(o.StateDir)
	if err != nil {
		return err
	}
	helm := exec.CommandContext(ctx, o.Helm, append([]string{"upgrade", "--install", ReleaseName, o.Chart,
		"--namespace", ChartNamespace, "--create-namespace", "--kubeconfig", env.HubKubeconfig}, HelmValues()...)...)
	helm.Stdout, helm.Stderr = o.Out, o.Out
	if err := helm.Run(); err != nil {
		return fmt.Errorf("helm install: %w", err)
	}
	if err := waitAvailable(ctx, env, o.Out); err != nil {
		return err
	}
	if err := WaitTunnels(ctx, env, o.Out); err != nil {
		return err
	}
	if err := WriteUserServerAccess(ctx, env, filepath.Join(o.Bin.ImageRoot, "cluster-proxy")); err != nil {
		return err
	}
	if err := DeployTestWorkloads(ctx, env, o.Out); err != nil {
		return err
	}
	_, _ = fmt.Fprintf(o.Out, `
The local environment is up (%[1]s).

  export KUBECONFIG=%[2]s
  kubectl get managedclusters,managedclusteraddons -A

List cluster1's namespaces from the hub, through the tunnel (a Go client):

  %[3]s kubectl --state-dir=%[4]s --cluster=cluster1 -- get namespaces

Or with plain kubectl through the user-server (%[12]s), as the hub service
account %[13]s/%[14]s, which every managed cluster lets read workloads:

  kubectl --kubeconfig=%[5]s get pods -A

The same kubeconfig reaches the test workload in namespace %[7]s: its
logs, an exec, and the exposed Service %[8]s (get --raw takes a path from
the user-server's root, so it names the cluster):

  kubectl --kubeconfig=%[5]s -n %[7]s logs %[9]s --tail=3
  kubectl --kubeconfig=%[5]s -n %[7]s exec %[10]s -- echo hello
  kubectl --kubeconfig=%[5]s get --raw /cluster1/api/v1/namespaces/%[7]s/services/http:%[8]s:%[11]d/proxy-service/

Logs: %[6]s. Stop everything with make local-down.
`, time.Since(start).Round(time.Second), env.HubKubeconfig, o.Bin.Self, o.StateDir,
		UserServerKubeconfig(o.StateDir, "cluster1"), filepath.Join(o.StateDir, "logs"),
		TestNamespace, HelloService, LoggerPod, ShellPod, HelloHTTPPort, UserServerURL(), ViewerNamespace, ViewerName)
	return nil
}

// supervisorRunning reports whether the state directory's supervisor runs.
func supervisorRunning(stateDir string) bool {
	pid, start, err := readPID(filepath.Join(stateDir, SupervisorPIDFile))
	return err == nil && ProcessAlive(pid, start)
}

// readPID reads a "<pid> <start time>" file.
func readPID(path string) (int, uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	pid, start, ok := parsePIDLine(string(data))
	if !ok {
		return 0, 0, fmt.Errorf("%s: not a PID record", path)
	}
	return pid, start, nil
}

// startSupervisor starts `<self> supervise` in its own session (it
// outlives this command) and waits until it reports ready.
func startSupervisor(ctx context.Context, o UpOptions) error {
	if err := os.MkdirAll(filepath.Join(o.StateDir, "logs"), 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(o.StateDir, "logs", "supervisor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { _ = logFile.Close() }()
	cmd := exec.Command(o.Bin.Self, "supervise", "--state-dir="+o.StateDir,
		"--etcd="+o.Bin.Etcd, "--kube-apiserver="+o.Bin.KubeAPIServer, "--kube-controller-manager="+o.Bin.KubeControllerManager,
		"--ocm-dir="+o.Bin.OCMDir, "--image-root="+o.Bin.ImageRoot)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the supervisor: %w", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	start, err := proc.StartTime(pid)
	if err != nil {
		return fmt.Errorf("the supervisor exited at once; see %s", logFile.Name())
	}
	if err := writeFile(filepath.Join(o.StateDir, SupervisorPIDFile), []byte(fmt.Sprintf("%d %d\n", pid, start)), 0o644); err != nil {
		return err
	}
	_, _ = fmt.Fprintf(o.Out, "starting the hub and %s (supervisor pid %d, log %s)\n", strings.Join(ManagedClusters, ", "), pid, logFile.Name())
	return wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 15*time.Minute, true, func(context.Context) (bool, error) {
		status := Status(o.StateDir)
		switch {
		case status == "ready":
			return true, nil
		case strings.HasPrefix(status, "failed"):
			return false, fmt.Errorf("the environment failed to start: %s (see %s)", status, logFile.Name())
		case !ProcessAlive(pid, start):
			return false, fmt.Errorf("the supervisor exited (status %q); see %s", status, logFile.Name())
		}
		return false, nil
	})
}

// waitAvailable waits for ManagedClusterAddOn cluster-proxy to be
// Available on every managed cluster.
func waitAvailable(ctx context.Context, env *Env, out io.Writer) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", env.HubKubeconfig)
	if err != nil {
		return err
	}
	addons, err := addonclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var waiting []string
	err = wait.PollUntilContextTimeout(ctx, time.Second, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		waiting = waiting[:0]
		for _, c := range ManagedClusters {
			mca, err := addons.AddonV1alpha1().ManagedClusterAddOns(c).Get(ctx, AddonName, metav1.GetOptions{})
			if err != nil || !conditionTrue(mca.Status.Conditions, "Available") {
				waiting = append(waiting, c)
			}
		}
		return len(waiting) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("addon %s not Available on %s: %w", AddonName, strings.Join(waiting, ", "), err)
	}
	_, _ = fmt.Fprintf(out, "addon %s is Available on %s\n", AddonName, strings.Join(ManagedClusters, ", "))
	return nil
}

// WaitTunnels waits until every managed cluster is reachable through the
// tunnel: the addon's Available condition only says its addon-agent renews
// its lease, not that its proxy-agent is connected to a ready proxy-server,
// nor that its service-proxy listens. A dial through the hub's proxy-server
// to each cluster's kube-apiserver and service-proxy says both.
func WaitTunnels(ctx context.Context, env *Env, out io.Writer) error {
	hubCfg, err := clientcmd.BuildConfigFromFlags("", env.HubKubeconfig)
	if err != nil {
		return err
	}
	var dialer *client.Dialer
	defer func() {
		if dialer != nil {
			_ = dialer.Close()
		}
	}()
	// newDialer says why there is no dialer yet (the manager may not have
	// issued the proxy-client certificate).
	newDialer := func(ctx context.Context) (*client.Dialer, string) {
		tlsCfg, err := client.TLSConfigForHub(ctx, hubCfg, MPCName)
		if err != nil {
			return nil, "the proxy-client certificate: " + err.Error()
		}
		d, err := client.NewDialer(net.JoinHostPort(HubUplinkIP, strconv.Itoa(FrontendPort)), tlsCfg)
		if err != nil {
			return nil, "the dialer: " + err.Error()
		}
		return d, ""
	}
	var waiting []string
	err = wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		waiting = waiting[:0]
		if dialer == nil {
			var why string
			if dialer, why = newDialer(ctx); dialer == nil {
				waiting = append(waiting, why)
				return false, nil
			}
		}
		for _, c := range ManagedClusters {
			for _, target := range []string{
				net.JoinHostPort(c, strconv.Itoa(ManagedAPIServerPort)),
				net.JoinHostPort(proxyv1alpha1.ServiceProxyHost(c), strconv.Itoa(int(proxyv1alpha1.ServiceProxyPort))),
			} {
				dialCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
				conn, err := dialer.DialContext(dialCtx, "tcp", target)
				cancel()
				if err != nil {
					waiting = append(waiting, c+": "+err.Error())
					continue
				}
				_ = conn.Close()
			}
		}
		return len(waiting) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("the tunnels are not up: %s: %w", strings.Join(waiting, "; "), err)
	}
	_, _ = fmt.Fprintf(out, "tunnels to %s are up (kube-apiserver and service-proxy)\n", strings.Join(ManagedClusters, ", "))
	return nil
}

// Down stops the environment's processes by PID and removes its network
// namespaces and state. Nothing to stop is not an error.
func Down(ctx context.Context, stateDir string) error {
	logger := klog.FromContext(ctx)
	if _, err := os.Stat(stateDir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if pid, start, err := readPID(filepath.Join(stateDir, SupervisorPIDFile)); err == nil && ProcessAlive(pid, start) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		if !waitGone(pid, start, 2*time.Minute) {
			logger.Info("Supervisor did not stop in time; killing it", "pid", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			waitGone(pid, start, 10*time.Second)
		}
	}
	var errs []error
	errs = append(errs, killRecorded(filepath.Join(stateDir, pidsFile)))
	errs = append(errs, cleanupKubelets(stateDir)...)
	errs = append(errs, removeNetworks(ctx, stateDir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("local-down: %w (state kept in %s)", err, stateDir)
	}
	return os.RemoveAll(stateDir)
}

// Kubectl runs kubectl against a managed cluster's kube-apiserver through
// the tunnel: a loopback listener whose connections go through the hub's
// proxy-server to the cluster's proxy-agent (cluster-proxy's Go client),
// with the cluster's own admin credentials end to end.
func Kubectl(ctx context.Context, stateDir, cluster string, args []string) error {
	env, err := LoadEnv(stateDir)
	if err != nil {
		return err
	}
	if _, ok := env.Clusters[cluster]; !ok || cluster == HubName {
		return fmt.Errorf("--cluster: %q is not a managed cluster of the local environment (%s)", cluster, strings.Join(ManagedClusters, ", "))
	}
	hubCfg, err := clientcmd.BuildConfigFromFlags("", env.HubKubeconfig)
	if err != nil {
		return err
	}
	tlsCfg, err := client.TLSConfigForHub(ctx, hubCfg, MPCName)
	if err != nil {
		return err
	}
	dialer, err := client.NewDialer(net.JoinHostPort(HubUplinkIP, strconv.Itoa(FrontendPort)), tlsCfg)
	if err != nil {
		return err
	}
	defer func() { _ = dialer.Close() }()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	target := net.JoinHostPort(cluster, strconv.Itoa(ManagedAPIServerPort))
	addr, err := relay(ctx, "tunnel", "", "127.0.0.1:0", func(ctx context.Context) (net.Conn, error) {
		return dialer.DialContext(ctx, "tcp", target)
	})
	if err != nil {
		return err
	}
	kubeconfig := filepath.Join(stateDir, "tmp", fmt.Sprintf("tunnel-%s-%d.kubeconfig", cluster, os.Getpid()))
	pki := PKI{Dir: filepath.Join(stateDir, cluster, "pki")}
	if err := pki.WriteKubeconfig(kubeconfig, cluster, "https://"+addr, client.DefaultAPIServerName); err != nil {
		return err
	}
	defer func() { _ = os.Remove(kubeconfig) }()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}
