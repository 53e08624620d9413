package manager_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/addonmanager"
	"open-cluster-management.io/cluster-proxy/internal/command"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	// startTimeout bounds how long a manager takes to serve /healthz.
	startTimeout = 60 * time.Second
	// exitTimeout bounds how long a manager with bad options takes to exit.
	exitTimeout = 15 * time.Second
	// reconcileTimeout bounds how long a manager takes to reconcile a
	// ManagedProxyConfiguration.
	reconcileTimeout = 60 * time.Second
	// handoverTimeout bounds how long the standby takes to acquire the
	// lease once the leader stopped.
	handoverTimeout = 30 * time.Second
	// startAttempts is how many times startManager picks a new probe port
	// when the one it picked was taken in the meantime.
	startAttempts = 3
	// sampleMPC is the ManagedProxyConfiguration sample, relative to the
	// repository root.
	sampleMPC = "config/samples/managedproxyconfiguration.yaml"
)

// hubSecrets are the Secrets the manager creates in the proxy-server
// namespace of a ManagedProxyConfiguration.
var hubSecrets = []string{"proxy-server-ca", "proxy-server", "agent-server", "proxy-client"}

// readyConditions are the conditions, with their reasons, of a fully
// reconciled ManagedProxyConfiguration.
var readyConditions = map[string]string{
	proxyv1alpha1.ConditionTypeProxyServerDeployed:     proxyv1alpha1.ReasonSuccessfullyDeployed,
	proxyv1alpha1.ConditionTypeProxyServerSecretSigned: proxyv1alpha1.ReasonSuccessfullySigned,
	proxyv1alpha1.ConditionTypeAgentServerSecretSigned: proxyv1alpha1.ReasonSuccessfullySigned,
	proxyv1alpha1.ConditionTypeProxyClientSecretSigned: proxyv1alpha1.ReasonSuccessfullySigned,
}

// manager is a running addon-manager process.
type manager struct {
	*framework.Process
	// probePort is the loopback port of /healthz and /readyz.
	probePort int
}

func (m *manager) probeURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", m.probePort, path)
}

// baseArgs are the flags every manager of the suite gets: the suite's API
// server, no metrics endpoint, the CA Secret next to the manager.
func baseArgs(probeAddress string) []string {
	return []string{
		"--kubeconfig=" + kubeConfigPath,
		"--metrics-bind-address=0",
		"--health-probe-bind-address=" + probeAddress,
		"--signer-secret-namespace=" + managerNamespace,
	}
}

// podNamespaceEnv is the environment a manager running in managerNamespace
// gets.
func podNamespaceEnv() []string {
	return []string{command.PodNamespaceEnv + "=" + managerNamespace}
}

// startProcess starts the addon-manager binary with its log in a new
// temporary directory; the spec's cleanup stops it, then removes the
// directory.
func startProcess(name string, args, env []string) *framework.Process {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	p, err := framework.StartProcess(name, managerBinary, args, env, dir)
	Expect(err).NotTo(HaveOccurred())
	specProcesses = append(specProcesses, p)
	allProcesses = append(allProcesses, p)
	// Registered after TempDir, so it runs first.
	DeferCleanup(p.Stop)
	return p
}

// startManager starts an addon-manager in managerNamespace with a free
// loopback probe port and extra flags, and returns once /healthz answers
// 200. It tries another port when the picked one was taken meanwhile.
func startManager(ctx context.Context, name string, extraArgs ...string) *manager {
	GinkgoHelper()
	for attempt := 1; ; attempt++ {
		port, err := framework.FreeLoopbackPort()
		Expect(err).NotTo(HaveOccurred())
		args := append(baseArgs(fmt.Sprintf("127.0.0.1:%d", port)), extraArgs...)
		m := &manager{Process: startProcess(name, args, podNamespaceEnv()), probePort: port}

		err = waitOK(ctx, m, "/healthz")
		if err == nil {
			return m
		}
		if attempt < startAttempts && strings.Contains(m.LogTail(40), "address already in use") {
			continue
		}
		Expect(err).NotTo(HaveOccurred(), "%s did not become healthy; last log lines:\n%s", name, m.LogTail(40))
	}
}

// waitOK waits until the manager's probe endpoint path answers 200.
func waitOK(ctx context.Context, m *manager, path string) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	return framework.WaitHTTPOK(ctx, m.probeURL(path), false, m.Process)
}

// expectFailedStart waits for p to exit on its own, quickly and with exit
// status 1, and checks that its output contains every one of want.
func expectFailedStart(p *framework.Process, want ...string) {
	GinkgoHelper()
	Eventually(p.Done()).WithTimeout(exitTimeout).Should(BeClosed(),
		"%s should exit at once; last log lines:\n%s", p.Name, p.LogTail(20))
	var exitErr *exec.ExitError
	Expect(errors.As(p.ExitError(), &exitErr)).To(BeTrue(), "%s should fail, got %v", p.Name, p.ExitError())
	Expect(exitErr.ExitCode()).To(Equal(1))
	out, err := os.ReadFile(p.LogPath)
	Expect(err).NotTo(HaveOccurred())
	for _, w := range want {
		Expect(string(out)).To(ContainSubstring(w))
	}
}

// expectCleanExit stops the manager and checks that SIGTERM ended it with
// status 0 (no SIGKILL needed).
func expectCleanExit(m *manager) {
	GinkgoHelper()
	Expect(m.Stop()).To(Succeed())
	Expect(m.ExitError()).NotTo(HaveOccurred(), "%s should exit cleanly on SIGTERM; last log lines:\n%s",
		m.Name, m.LogTail(20))
}

// unsetEnv removes key from the test process's environment (which the
// managers inherit) for the rest of the spec.
func unsetEnv(key string) {
	GinkgoHelper()
	if v, ok := os.LookupEnv(key); ok {
		Expect(os.Unsetenv(key)).To(Succeed())
		DeferCleanup(os.Setenv, key, v)
	}
}

// loadSample reads the ManagedProxyConfiguration sample.
func loadSample() *proxyv1alpha1.ManagedProxyConfiguration {
	GinkgoHelper()
	root, err := framework.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	data, err := os.ReadFile(filepath.Join(root, sampleMPC))
	Expect(err).NotTo(HaveOccurred())
	obj, _, err := serializer.NewCodecFactory(scheme).UniversalDeserializer().Decode(data, nil, nil)
	Expect(err).NotTo(HaveOccurred())
	mpc, ok := obj.(*proxyv1alpha1.ManagedProxyConfiguration)
	Expect(ok).To(BeTrue(), "%s holds a %T", sampleMPC, obj)
	return mpc
}

// newMPC returns a ManagedProxyConfiguration like the sample, named name,
// with its proxy-servers in namespace ns.
func newMPC(name, ns string) *proxyv1alpha1.ManagedProxyConfiguration {
	GinkgoHelper()
	mpc := loadSample()
	mpc.Name = name
	mpc.Spec.ProxyServer.Namespace = ns
	return mpc
}

// createMPC creates the ManagedProxyConfiguration and deletes it when the
// spec ends.
func createMPC(ctx context.Context, mpc *proxyv1alpha1.ManagedProxyConfiguration) {
	GinkgoHelper()
	Expect(k8sClient.Create(ctx, mpc)).To(Succeed())
	DeferCleanup(deleteMPC, mpc.Name)
}

func deleteMPC(ctx context.Context, name string) {
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}}
	Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, mpc))).To(Succeed())
}

// expectReconciled waits until every condition of a fully reconciled
// ManagedProxyConfiguration is True and the current generation is observed,
// then checks the hub objects.
func expectReconciled(ctx context.Context, name string) {
	GinkgoHelper()
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, types.NamespacedName{Name: name}, mpc)).To(Succeed())
		for typ, reason := range readyConditions {
			cond := meta.FindStatusCondition(mpc.Status.Conditions, typ)
			g.Expect(cond).NotTo(BeNil(), "condition %s not set; conditions: %v", typ, mpc.Status.Conditions)
			g.Expect(cond.Status).To(Equal(metav1.ConditionTrue), "condition %s: %s", typ, cond.Message)
			g.Expect(cond.Reason).To(Equal(reason), "condition %s: %s", typ, cond.Message)
		}
		g.Expect(mpc.Status.LastObservedGeneration).To(Equal(mpc.Generation))
	}).WithContext(ctx).WithTimeout(reconcileTimeout).Should(Succeed())

	ns := mpc.Spec.ProxyServer.Namespace
	Expect(k8sClient.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{})).To(Succeed())
	Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: mpc.Name}, &appsv1.Deployment{})).To(Succeed())
	for _, name := range hubSecrets {
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &corev1.Secret{})).To(Succeed(),
			"secret %s/%s", ns, name)
	}
}

// leaseHolder returns the holder identity of the addon-manager's Lease.
func leaseHolder(ctx context.Context) (string, error) {
	lease := &coordinationv1.Lease{}
	key := types.NamespacedName{Namespace: managerNamespace, Name: addonmanager.LeaderElectionID}
	if err := k8sClient.Get(ctx, key, lease); err != nil {
		return "", err
	}
	return ptr.Deref(lease.Spec.HolderIdentity, ""), nil
}

// becameLeader matches the log line of controller-runtime's leader election
// Event, which carries the Lease holder identity (hostname_uuid).
var becameLeader = regexp.MustCompile(`"(\S+) became leader"`)

// leaderIdentity returns the holder identity with which the manager last
// became leader according to its log, or "" when it never did. The Lease
// names its holder only by this identity, which is how a holder maps to a
// process.
func leaderIdentity(m *manager) string {
	data, err := os.ReadFile(m.LogPath)
	Expect(err).NotTo(HaveOccurred())
	matches := becameLeader.FindAllSubmatch(data, -1)
	if len(matches) == 0 {
		return ""
	}
	return string(matches[len(matches)-1][1])
}

// leaders returns the names of the managers whose log says they became
// leader.
func leaders(managers ...*manager) []string {
	var out []string
	for _, m := range managers {
		if leaderIdentity(m) != "" {
			out = append(out, m.Name)
		}
	}
	return out
}
