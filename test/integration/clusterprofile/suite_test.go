// Package clusterprofile_test runs the real addon-manager binary (built from
// cmd/manager) against a real kube-apiserver with and without the
// ClusterProfile feature gate: the ClusterProfile CRD of
// sigs.k8s.io/cluster-inventory-api installed after a gated manager started,
// the open-cluster-management access provider published only on the
// ClusterProfiles OCM manages, other providers kept, the user-server's
// Secret appearing later, and the published CA checked in TLS handshakes
// with the user-server's serving certificate.
package clusterprofile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	cpv1alpha1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/addonmanager"
	"open-cluster-management.io/cluster-proxy/internal/command"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	// managerNamespace plays POD_NAMESPACE (and holds the CA Secret).
	managerNamespace = "open-cluster-management-addon"
	// proxyNamespace is the proxy-server namespace of the suite's
	// ManagedProxyConfiguration: the user-server and its Secret live there.
	proxyNamespace = "cluster-proxy-profiles"
	// profileNamespace holds the suite's ClusterProfiles.
	profileNamespace = "open-cluster-management"

	// startTimeout bounds how long a manager takes to serve /healthz.
	startTimeout = 60 * time.Second
	// timeout bounds how long a manager takes to do what a spec waits for.
	timeout = 30 * time.Second
	// quiet is how long a spec watches something a manager must not do.
	quiet = 3 * time.Second
	// sampleMPC is the ManagedProxyConfiguration sample, relative to the
	// repository root.
	sampleMPC = "config/samples/managedproxyconfiguration.yaml"
)

var (
	apiServer      *framework.APIServer
	k8sClient      client.Client
	scheme         *runtime.Scheme
	managerBinary  string
	kubeConfigPath string

	// specProcesses are the processes the current spec started, for the
	// failure report.
	specProcesses []*framework.Process
)

func TestClusterProfile(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ClusterProfile feature gate")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	By("building the addon-manager")
	var err error
	managerBinary, err = framework.BuildBinary("./cmd/manager", "manager")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, filepath.Dir(managerBinary))

	dir, err := os.MkdirTemp("", "clusterprofile-suite-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)

	By("starting kube-apiserver with the OCM hub CRDs, without the ClusterProfile CRD (a spec installs it)")
	apiServer, kubeConfigPath, err = framework.StartOCMHub(dir)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(apiServer.Stop)

	scheme, err = addonmanager.NewScheme()
	Expect(err).NotTo(HaveOccurred())
	Expect(apiextensionsv1.AddToScheme(scheme)).To(Succeed())
	k8sClient, err = client.New(apiServer.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	for _, ns := range []string{managerNamespace, profileNamespace} {
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
})

var _ = BeforeEach(func() {
	specProcesses = nil
})

// When a spec fails, show what the managers logged; AfterEach runs before
// the spec's DeferCleanup stops them and removes their logs.
var _ = AfterEach(func() {
	if !CurrentSpecReport().Failed() {
		return
	}
	for _, p := range specProcesses {
		_, _ = fmt.Fprintf(GinkgoWriter, "\n----- %s (pid %d), last 80 lines of %s -----\n%s\n",
			p.Name, p.PID, p.LogPath, p.LogTail(80))
	}
})

// manager is a running addon-manager process.
type manager struct {
	*framework.Process
}

// startManager starts an addon-manager in managerNamespace (no leader
// election, no metrics) with extra flags and returns once /healthz answers;
// the spec's cleanup stops it.
func startManager(ctx context.Context, name string, extraArgs ...string) *manager {
	GinkgoHelper()
	for attempt := 1; ; attempt++ {
		port, err := framework.FreeLoopbackPort()
		Expect(err).NotTo(HaveOccurred())
		args := append([]string{
			"--kubeconfig=" + kubeConfigPath,
			"--metrics-bind-address=0",
			fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", port),
			"--signer-secret-namespace=" + managerNamespace,
		}, extraArgs...)
		p, err := framework.StartProcess(name, managerBinary, args,
			[]string{command.PodNamespaceEnv + "=" + managerNamespace}, GinkgoT().TempDir())
		Expect(err).NotTo(HaveOccurred())
		specProcesses = append(specProcesses, p)
		DeferCleanup(p.Stop)

		waitCtx, cancel := context.WithTimeout(ctx, startTimeout)
		err = framework.WaitHTTPOK(waitCtx, fmt.Sprintf("http://127.0.0.1:%d/healthz", port), false, p)
		cancel()
		if err == nil {
			return &manager{Process: p}
		}
		if attempt < 3 && strings.Contains(p.LogTail(40), "address already in use") {
			continue
		}
		Expect(err).NotTo(HaveOccurred(), "%s did not become healthy; last log lines:\n%s", name, p.LogTail(40))
	}
}

// log is what the manager has logged so far.
func (m *manager) log() string {
	data, err := os.ReadFile(m.LogPath)
	Expect(err).NotTo(HaveOccurred())
	return string(data)
}

// stop stops the manager and checks that SIGTERM ended it cleanly.
func (m *manager) stop() {
	GinkgoHelper()
	Expect(m.Stop()).To(Succeed())
	Expect(m.ExitError()).NotTo(HaveOccurred(), "%s should exit cleanly on SIGTERM; last log lines:\n%s", m.Name, m.LogTail(20))
}

// installClusterProfileCRD creates the ClusterProfile CRD of the
// cluster-inventory-api module and waits until it is served.
func installClusterProfileCRD(ctx context.Context) {
	GinkgoHelper()
	crd, err := framework.ClusterProfileCRD()
	Expect(err).NotTo(HaveOccurred())
	Expect(k8sClient.Create(ctx, crd)).To(Succeed())
	Eventually(func(g Gomega) {
		got := &apiextensionsv1.CustomResourceDefinition{}
		g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(crd), got)).To(Succeed())
		established := false
		for _, c := range got.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
				established = true
			}
		}
		g.Expect(established).To(BeTrue(), "CRD %s not established yet", crd.Name)
		g.Expect(k8sClient.List(ctx, &cpv1alpha1.ClusterProfileList{})).To(Succeed())
	}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
}

// createConfiguration creates the ManagedProxyConfiguration
// proxyv1alpha1.DefaultName from the sample, its proxy-servers in
// proxyNamespace, with the user-server (spec.userServer) when userServer.
func createConfiguration(ctx context.Context, userServer bool) {
	GinkgoHelper()
	root, err := framework.RepoRoot()
	Expect(err).NotTo(HaveOccurred())
	data, err := os.ReadFile(filepath.Join(root, sampleMPC))
	Expect(err).NotTo(HaveOccurred())
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
	Expect(runtime.DecodeInto(serializer.NewCodecFactory(scheme).UniversalDeserializer(), data, mpc)).To(Succeed())
	Expect(mpc.Name).To(Equal(proxyv1alpha1.DefaultName))
	mpc.Spec.ProxyServer.Namespace = proxyNamespace
	if userServer {
		mpc.Spec.UserServer = &proxyv1alpha1.UserServerConfiguration{}
	}
	Expect(k8sClient.Create(ctx, mpc)).To(Succeed())
}

// setUserServer turns spec.userServer of the configuration on or off.
func setUserServer(ctx context.Context, on bool) {
	GinkgoHelper()
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
	Expect(k8sClient.Get(ctx, types.NamespacedName{Name: proxyv1alpha1.DefaultName}, mpc)).To(Succeed())
	before := mpc.DeepCopy()
	mpc.Spec.UserServer = nil
	if on {
		mpc.Spec.UserServer = &proxyv1alpha1.UserServerConfiguration{}
	}
	Expect(k8sClient.Patch(ctx, mpc, client.MergeFrom(before))).To(Succeed())
}

// userServerSecret waits until the manager has issued the user-server's
// Secret and returns it.
func userServerSecret(ctx context.Context) *corev1.Secret {
	GinkgoHelper()
	secret := &corev1.Secret{}
	Eventually(func(g Gomega) {
		g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: proxyNamespace, Name: proxyv1alpha1.UserServerSecretName}, secret)).To(Succeed())
		g.Expect(secret.Data).To(HaveKeyWithValue(corev1.TLSCertKey, Not(BeEmpty())))
		g.Expect(secret.Data).To(HaveKeyWithValue(proxyv1alpha1.CASecretKey, Not(BeEmpty())))
	}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
	return secret
}

// profileLabels are the labels of a ClusterProfile OCM manages.
func profileLabels(cluster string) map[string]string {
	return map[string]string{
		cpv1alpha1.LabelClusterManagerKey:         "open-cluster-management",
		"open-cluster-management.io/cluster-name": cluster,
	}
}

// createProfile creates a ClusterProfile named name in profileNamespace
// with labels and, through the status subresource, providers.
func createProfile(ctx context.Context, name string, labels map[string]string, providers ...cpv1alpha1.AccessProvider) *cpv1alpha1.ClusterProfile {
	GinkgoHelper()
	p := &cpv1alpha1.ClusterProfile{
		ObjectMeta: metav1.ObjectMeta{Namespace: profileNamespace, Name: name, Labels: labels},
		Spec:       cpv1alpha1.ClusterProfileSpec{ClusterManager: cpv1alpha1.ClusterManager{Name: "open-cluster-management"}},
	}
	Expect(k8sClient.Create(ctx, p)).To(Succeed())
	if len(providers) > 0 {
		p.Status.AccessProviders = providers
		Expect(k8sClient.Status().Update(ctx, p)).To(Succeed())
	}
	return p
}

// getProfile reads the ClusterProfile name of profileNamespace.
func getProfile(ctx context.Context, name string) (*cpv1alpha1.ClusterProfile, error) {
	p := &cpv1alpha1.ClusterProfile{}
	err := k8sClient.Get(ctx, types.NamespacedName{Namespace: profileNamespace, Name: name}, p)
	return p, err
}
