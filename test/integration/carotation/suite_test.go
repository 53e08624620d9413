// Package carotation_test runs the CA rotation controller
// (internal/carotation) against a real kube-apiserver with OCM's hub CRDs,
// on an injected clock. The specs play the other parties (the
// ManagedProxyConfiguration reconciler, the proxy-servers' reports, the
// work agents) by writing what they would write, and check that the
// controller moves on only when the evidence is complete. The whole
// rotation with the real parties is the e2e suite's.
package carotation_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"open-cluster-management.io/cluster-proxy/internal/addonmanager"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

var (
	apiServer *framework.APIServer
	k8sClient client.Client
	scheme    *runtime.Scheme
)

func TestCARotation(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "CA rotation")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ocmCRDs, err := framework.OCMHubCRDs(GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
	apiServer, err = framework.StartAPIServer(ocmCRDs)
	Expect(err).NotTo(HaveOccurred())
	scheme, err = addonmanager.NewScheme()
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(apiServer.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if apiServer != nil {
		Expect(apiServer.Stop()).To(Succeed())
	}
})
