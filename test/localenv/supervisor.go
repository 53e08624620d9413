package localenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	clusterclient "open-cluster-management.io/api/client/cluster/clientset/versioned"

	"open-cluster-management.io/cluster-proxy/test/framework"
)

// Binaries are the programs the environment runs.
type Binaries struct {
	// Etcd, KubeAPIServer and KubeControllerManager are the control plane.
	Etcd, KubeAPIServer, KubeControllerManager string
	// OCMDir holds OCM's registration, work, addon and placement binaries.
	OCMDir string
	// ImageRoot holds cluster-proxy's binaries named as in its image
	// (/manager, /agent, /proxy-server, /proxy-agent).
	ImageRoot string
	// Self is this program, which runs pod containers (pod-exec).
	Self string
}

// Image is the repository of cluster-proxy's image in the chart's defaults;
// the kubelet stand-in runs it from Binaries.ImageRoot.
const Image = "quay.io/open-cluster-management/cluster-proxy"

// Namespaces whose pods the kubelet stand-ins run.
var (
	hubPodNamespaces     = []string{"open-cluster-management-addon", "open-cluster-management-cluster-proxy"}
	managedPodNamespaces = []string{"open-cluster-management-cluster-proxy", "open-cluster-management-agent-addon", TestNamespace}
)

// Supervisor starts the environment and keeps it running until its
// context ends, then stops everything it started.
type Supervisor struct {
	// StateDir holds everything the environment writes.
	StateDir string
	// Bin are the programs to run.
	Bin Binaries

	mu    sync.Mutex
	procs []*framework.Process
	// rootPorts are the root-namespace ports of the managed clusters'
	// admin relays.
	rootPorts map[string]int
}

// Run builds the environment, reports "ready" in the status file, and
// keeps it running until ctx ends; then it stops every process it started
// (by PID) and removes the network namespaces.
func (s *Supervisor) Run(ctx context.Context) (err error) {
	logger := klog.FromContext(ctx)
	state := newState(s.StateDir)
	s.rootPorts = map[string]int{}
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		if stopErr := s.stopAll(); stopErr != nil {
			logger.Error(stopErr, "Stopping processes failed")
		}
		if netErr := removeNetworks(context.WithoutCancel(ctx), s.StateDir); netErr != nil {
			logger.Error(netErr, "Removing network namespaces failed")
		}
		if err != nil {
			_ = state.setStatus("failed: " + err.Error())
		} else {
			_ = state.setStatus("stopped")
		}
	}()

	if err := state.setStatus("starting"); err != nil {
		return err
	}
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(s.StateDir, d), 0o755); err != nil {
			return err
		}
	}
	step := func(name string, fn func() error) error {
		start := time.Now()
		if err := fn(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		logger.Info("Step done", "step", name, "took", time.Since(start).Round(time.Millisecond).String())
		return nil
	}
	if err := step("network", func() error { return setupNetworks(ctx, s.StateDir) }); err != nil {
		return err
	}
	pkis := map[string]PKI{}
	if err := step("certificates", func() error { return s.writePKI(pkis) }); err != nil {
		return err
	}
	if err := step("control planes", func() error { return s.startControlPlanes(ctx, pkis) }); err != nil {
		return err
	}
	if err := step("OCM hub", func() error { return s.startOCMHub(runCtx, &wg, pkis[HubName]) }); err != nil {
		return err
	}
	if err := step("klusterlets", func() error { return s.startKlusterlets(runCtx, &wg) }); err != nil {
		return err
	}
	if err := step("kubelets", func() error { return s.startKubelets(runCtx, &wg) }); err != nil {
		return err
	}
	if err := step("root access", func() error { return s.writeAccess(runCtx, pkis) }); err != nil {
		return err
	}
	if err := state.setStatus("ready"); err != nil {
		return err
	}
	logger.Info("Environment ready")
	<-ctx.Done()
	logger.Info("Stopping the environment")
	return nil
}

// start runs binary inside the cluster's namespace (`ip netns exec`
// execs it, so the PID is the binary's), logging to logs/<cluster>-<name>.log.
func (s *Supervisor) start(c Cluster, name, binary string, args ...string) (*framework.Process, error) {
	return s.startIn(c.Netns(), c.Name+"-"+name, binary, args...)
}

func (s *Supervisor) startIn(ns, name, binary string, args ...string) (*framework.Process, error) {
	argv := append([]string{"netns", "exec", ns, binary}, args...)
	p, err := framework.StartProcess(name, "ip", argv,
		[]string{"TMPDIR=" + filepath.Join(s.StateDir, "tmp")}, filepath.Join(s.StateDir, "logs"))
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	err = recordPID(s.StateDir, p.PID)
	s.mu.Unlock()
	return p, err
}

// stopAll stops the processes in the reverse order of their start.
func (s *Supervisor) stopAll() error {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		errs = append(errs, procs[i].Stop())
	}
	return errors.Join(errs...)
}

func (s *Supervisor) writePKI(pkis map[string]PKI) error {
	for _, c := range Clusters() {
		sans := []string{c.Gateway(), c.Name}
		if c.Hub {
			sans = append(sans, HubUplinkIP, HubHostname)
		}
		p, err := NewPKI(filepath.Join(c.Dir(s.StateDir), "pki"), c.Name, sans, c.Hub)
		if err != nil {
			return err
		}
		if err := p.WriteKubeconfig(filepath.Join(c.Dir(s.StateDir), "admin.kubeconfig"), c.Name, c.LocalAPIServerURL(), ""); err != nil {
			return err
		}
		pkis[c.Name] = p
	}
	return nil
}

func (s *Supervisor) startControlPlanes(ctx context.Context, pkis map[string]PKI) error {
	var wg sync.WaitGroup
	errs := make([]error, len(Clusters()))
	for i, c := range Clusters() {
		tokenFile := ""
		if c.Hub {
			tokenFile = filepath.Join(c.Dir(s.StateDir), "bootstrap-tokens.csv")
			if err := writeFile(tokenFile, []byte(bootstrapTokens()), 0o600); err != nil {
				return err
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.startControlPlane(ctx, c, pkis[c.Name], tokenFile)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// client returns the cluster's admin config (see restConfig) and a
// clientset for it.
func (s *Supervisor) client(c Cluster) (*rest.Config, kubernetes.Interface, error) {
	cfg, err := s.restConfig(c)
	if err != nil {
		return nil, nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	return cfg, client, err
}

// startOCMHub installs OCM's hub CRDs and bootstrap RBAC, and starts the
// addon conversion webhook (in its own namespace: it binds every
// interface) and OCM's hub controllers.
func (s *Supervisor) startOCMHub(ctx context.Context, wg *sync.WaitGroup, pki PKI) error {
	hub := Clusters()[0]
	cfg, client, err := s.client(hub)
	if err != nil {
		return err
	}
	// The webhook-server and its two relays: the hub reaches it on
	// 127.0.0.1:9443, it reaches the hub on its own 127.0.0.1:6443.
	webhookNS := netnsPrefix + webhookNetnsSuffix
	hubLocal := net.JoinHostPort("127.0.0.1", strconv.Itoa(HubAPIServerPort))
	webhookLocal := net.JoinHostPort("127.0.0.1", strconv.Itoa(webhookPort))
	if _, err := relay(ctx, "addon-webhook", hub.Netns(), webhookLocal, dialIn(webhookNS, webhookLocal)); err != nil {
		return err
	}
	if _, err := relay(ctx, "addon-webhook-hub", webhookNS, hubLocal, dialIn(hub.Netns(), hubLocal)); err != nil {
		return err
	}
	webhookKubeconfig := filepath.Join(hub.Dir(s.StateDir), "webhook.kubeconfig")
	if err := pki.WriteKubeconfig(webhookKubeconfig, HubName, "https://"+hubLocal, ""); err != nil {
		return err
	}
	if _, err := s.startIn(webhookNS, "hub-addon-webhook", filepath.Join(s.Bin.OCMDir, "addon"), "webhook-server",
		"--kubeconfig="+webhookKubeconfig, "--port="+strconv.Itoa(webhookPort),
		"--certdir="+filepath.Dir(pki.Path(webhookCert))); err != nil {
		return err
	}

	moduleDir, err := ocmModuleDir(ctx)
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(pki.Path(caCert))
	if err != nil {
		return err
	}
	if err := ocmCRDs(ctx, cfg, moduleDir, "manifests/cluster-manager/hub/crds",
		"https://"+webhookLocal+"/convert", caPEM); err != nil {
		return err
	}
	if err := ensureNamespace(ctx, client, ocmHubNamespace); err != nil {
		return err
	}
	if err := bootstrapRBAC(ctx, client); err != nil {
		return err
	}
	kubeconfig := filepath.Join(hub.Dir(s.StateDir), "admin.kubeconfig")
	common := []string{"--kubeconfig=" + kubeconfig, "--namespace=" + ocmHubNamespace, "--disable-leader-election"}
	controllers := []struct {
		name, binary string
		args         []string
	}{
		{"registration-controller", "registration", []string{"controller",
			"--feature-gates=ManagedClusterAutoApproval=true", "--auto-approved-csr-users=" + bootstrapUsers()}},
		{"work-manager", "work", []string{"manager"}},
		{"addon-manager", "addon", []string{"manager"}},
		{"placement-controller", "placement", []string{"controller"}},
	}
	for i, ctl := range controllers {
		args := append(append(ctl.args, common...), fmt.Sprintf("--listen=127.0.0.1:%d", 9100+i))
		if _, err := s.start(hub, ctl.name, filepath.Join(s.Bin.OCMDir, ctl.binary), args...); err != nil {
			return err
		}
	}
	return nil
}

// startKlusterlets joins each managed cluster to the hub with OCM's
// registration agent (bootstrap kubeconfig → CSR → auto-approved and
// accepted) and starts OCM's work agent once the hub kubeconfig exists.
func (s *Supervisor) startKlusterlets(ctx context.Context, wg *sync.WaitGroup) error {
	moduleDir, err := ocmModuleDir(ctx)
	if err != nil {
		return err
	}
	hubCluster := Clusters()[0]
	hubPKI := PKI{Dir: filepath.Join(hubCluster.Dir(s.StateDir), "pki")}
	hubCfg, err := s.restConfig(hubCluster)
	if err != nil {
		return err
	}
	hubClusters, err := clusterclient.NewForConfig(hubCfg)
	if err != nil {
		return err
	}
	for _, c := range Clusters()[1:] {
		cfg, client, err := s.client(c)
		if err != nil {
			return err
		}
		if err := ocmCRDs(ctx, cfg, moduleDir, "manifests/klusterlet/managed", "", nil); err != nil {
			return err
		}
		if err := ensureNamespace(ctx, client, klusterletNS); err != nil {
			return err
		}
		dir := c.Dir(s.StateDir)
		bootstrap := filepath.Join(dir, "bootstrap.kubeconfig")
		if err := hubPKI.WriteTokenKubeconfig(bootstrap, HubName, HubURL(), bootstrapToken(c.Name)); err != nil {
			return err
		}
		hubDir := filepath.Join(dir, "hub-kubeconfig")
		if err := os.MkdirAll(hubDir, 0o700); err != nil {
			return err
		}
		kubeconfig := filepath.Join(dir, "admin.kubeconfig")
		if _, err := s.start(c, "registration-agent", filepath.Join(s.Bin.OCMDir, "registration"), "agent",
			"--spoke-cluster-name="+c.Name, "--bootstrap-kubeconfig="+bootstrap, "--kubeconfig="+kubeconfig,
			"--hub-kubeconfig-dir="+hubDir, "--spoke-external-server-urls="+c.LocalAPIServerURL(),
			"--disable-leader-election", "--listen=127.0.0.1:9200"); err != nil {
			return err
		}
	}
	// Wait for every cluster to be accepted and joined, then start the work
	// agents on the hub kubeconfig the registration agents wrote.
	for _, c := range Clusters()[1:] {
		hubKubeconfig := filepath.Join(c.Dir(s.StateDir), "hub-kubeconfig", "kubeconfig")
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			mc, err := hubClusters.ClusterV1().ManagedClusters().Get(ctx, c.Name, metav1.GetOptions{})
			if err != nil || !mc.Spec.HubAcceptsClient {
				return false, nil //nolint:nilerr // retried until the timeout
			}
			_, statErr := os.Stat(hubKubeconfig)
			return statErr == nil && conditionTrue(mc.Status.Conditions, "ManagedClusterJoined"), nil
		})
		if err != nil {
			return fmt.Errorf("%s did not join the hub: %w (see %s)", c.Name, err, s.logPath(c, "registration-agent"))
		}
		dir := filepath.Join(c.Dir(s.StateDir), "hub-kubeconfig")
		if _, err := s.start(c, "work-agent", filepath.Join(s.Bin.OCMDir, "work"), "agent",
			"--spoke-cluster-name="+c.Name, "--kubeconfig="+filepath.Join(c.Dir(s.StateDir), "admin.kubeconfig"),
			"--workload-source-driver=kube", "--workload-source-config="+hubKubeconfig,
			"--hub-kubeconfig-dir="+dir, "--agent-id="+c.Name+"-work", "--status-sync-interval=5s",
			"--disable-leader-election", "--listen=127.0.0.1:9201"); err != nil {
			return err
		}
	}
	return nil
}

func conditionTrue(conds []metav1.Condition, t string) bool {
	for _, c := range conds {
		if c.Type == t {
			return c.Status == metav1.ConditionTrue
		}
	}
	return false
}

// writeAccess writes the root namespace's kubeconfigs: the hub's on the
// uplink, and each managed cluster's through a loopback relay into its
// namespace (operator access, which the hub does not have).
func (s *Supervisor) writeAccess(ctx context.Context, pkis map[string]PKI) error {
	env := Env{StateDir: s.StateDir, Clusters: map[string]ClusterAccess{}}
	for _, c := range Clusters() {
		server := "https://" + net.JoinHostPort(HubUplinkIP, strconv.Itoa(HubAPIServerPort))
		if !c.Hub {
			addr, err := relay(ctx, c.Name+"-admin", "", "127.0.0.1:0",
				dialIn(c.Netns(), net.JoinHostPort(c.Gateway(), strconv.Itoa(c.APIServerPort()))))
			if err != nil {
				return err
			}
			server = "https://" + addr
		}
		path := filepath.Join(s.StateDir, "kubeconfigs", c.Name+".kubeconfig")
		if err := pkis[c.Name].WriteKubeconfig(path, c.Name, server, ""); err != nil {
			return err
		}
		env.Clusters[c.Name] = ClusterAccess{Kubeconfig: path, Netns: c.Netns(), APIServer: net.JoinHostPort(c.Gateway(), strconv.Itoa(c.APIServerPort())), UplinkIP: c.UplinkIP(),
			Logs: filepath.Join(s.StateDir, "logs"), KubeletState: filepath.Join(c.Dir(s.StateDir), "kubelet")}
	}
	env.HubKubeconfig = env.Clusters[HubName].Kubeconfig
	data, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(s.StateDir, EnvFile), data, 0o644)
}
