// Package manager_test runs the real addon-manager binary (built from
// cmd/manager, as the image's /manager) as a separate process against
// a real kube-apiserver: option validation, health probes, reconciling a
// ManagedProxyConfiguration end to end, and leader election handover
// between two replicas.
package manager_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/addonmanager"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	// managerNamespace plays POD_NAMESPACE: the leader election Lease and,
	// through --signer-secret-namespace, the CA Secret live there.
	managerNamespace = "open-cluster-management-addon"
	// signerSecretName is the default --signer-secret-name.
	signerSecretName = "cluster-proxy-signer"
)

var (
	apiServer *framework.APIServer
	k8sClient client.Client
	scheme    *runtime.Scheme
	// managerBinary is the addon-manager built for this run.
	managerBinary string
	// kubeConfigPath is the administrator kubeconfig the managers use.
	kubeConfigPath string

	// specProcesses are the processes the current spec started, for the
	// failure report.
	specProcesses []*framework.Process
	// allProcesses are every process the suite started, to check that none
	// is left running.
	allProcesses []*framework.Process
)

func TestManager(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Addon-manager binary")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	By("building the addon-manager")
	var err error
	managerBinary, err = framework.BuildBinary("./cmd/manager", "manager")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, filepath.Dir(managerBinary))

	dir, err := os.MkdirTemp("", "manager-suite-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, dir)

	By("starting kube-apiserver with the OCM hub CRDs the agent addon watches")
	apiServer, kubeConfigPath, err = framework.StartOCMHub(dir)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(apiServer.Stop)

	scheme, err = addonmanager.NewScheme()
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(apiServer.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: managerNamespace}})).To(Succeed())
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

var _ = AfterSuite(func() {
	for _, p := range allProcesses {
		// Every spec stops its processes; a Stop here is a no-op unless a
		// cleanup was skipped.
		Expect(p.Stop()).To(Succeed())
		Expect(p.Done()).To(BeClosed(), "%s (pid %d) should not be running", p.Name, p.PID)
	}
})
