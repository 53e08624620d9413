// Package agentaddon_test runs the cluster-proxy agent addon on the
// addon-framework against a real hub kube-apiserver with the OCM CRDs: agent
// manifests rendered into ManifestWorks, CSR approval and signing, and
// AddOnDeploymentConfig changes.
package agentaddon_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"open-cluster-management.io/cluster-proxy/internal/addonmanager"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// hubNamespace plays the addon-manager's namespace (POD_NAMESPACE) and holds
// the CA Secret.
const hubNamespace = "open-cluster-management-addon"

var (
	hub       *framework.APIServer
	k8sClient client.Client
	scheme    *runtime.Scheme
	stopMgr   context.CancelFunc
)

func TestAgentAddon(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "cluster-proxy agent addon")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ocmCRDs, err := framework.OCMHubCRDs(GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
	hub, err = framework.StartAPIServer(ocmCRDs)
	Expect(err).NotTo(HaveOccurred())

	scheme, err = addonmanager.NewScheme()
	Expect(err).NotTo(HaveOccurred())
	for _, add := range []func(*runtime.Scheme) error{clusterv1.Install, addonapiv1beta1.Install, workv1.Install} {
		Expect(add(scheme)).To(Succeed())
	}
	k8sClient, err = client.New(hub.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: hubNamespace}})).To(Succeed())
	Expect(k8sClient.Create(ctx, clusterManagementAddOn())).To(Succeed())

	opts := addonmanager.NewOptions()
	opts.PodNamespace = hubNamespace
	opts.SignerSecretNamespace = hubNamespace
	opts.MetricsBindAddress, opts.HealthProbeBindAddress = "0", "0"
	opts.AgentImageName = "quay.io/open-cluster-management/cluster-proxy:v1.0.0"
	Expect(opts.Validate()).To(Succeed())

	var mgrCtx context.Context
	// The manager outlives this node: stopped in AfterSuite.
	mgrCtx, stopMgr = context.WithCancel(logf.IntoContext(context.WithoutCancel(ctx), logf.Log))
	mgr, err := addonmanager.NewManager(mgrCtx, hub.Config, opts)
	Expect(err).NotTo(HaveOccurred())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(mgrCtx)).To(Succeed())
	}()
})

var _ = AfterSuite(func() {
	if stopMgr != nil {
		stopMgr()
	}
	if hub != nil {
		Expect(hub.Stop()).To(Succeed())
	}
})
