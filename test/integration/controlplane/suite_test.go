// Package controlplane_test checks the test control plane itself: a real
// kube-controller-manager started by the framework next to envtest's
// kube-apiserver garbage-collects dependents and finalises namespaces, which
// the bare API server never does.
package controlplane_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"

	"open-cluster-management.io/cluster-proxy/test/framework"
)

var (
	apiServer         *framework.APIServer
	controllerManager *framework.ControllerManager
	kubeClient        kubernetes.Interface
)

func TestControlPlane(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Test control plane")
}

var _ = BeforeSuite(func() {
	var err error
	apiServer, err = framework.StartAPIServer()
	Expect(err).NotTo(HaveOccurred())

	controllerManager, err = framework.StartControllerManager(apiServer)
	Expect(err).NotTo(HaveOccurred())

	kubeClient, err = kubernetes.NewForConfig(apiServer.Config)
	Expect(err).NotTo(HaveOccurred())
})

// When a spec fails, show what the controller-manager logged: that is where
// a stuck garbage collector or namespace controller explains itself.
var _ = AfterEach(func() {
	if CurrentSpecReport().Failed() && controllerManager != nil {
		AddReportEntry("kube-controller-manager log ("+controllerManager.LogPath+")",
			controllerManager.LogTail(100), ReportEntryVisibilityFailureOrVerbose)
	}
})

var _ = AfterSuite(func() {
	if controllerManager != nil {
		Expect(controllerManager.Stop()).To(Succeed())
	}
	if apiServer != nil {
		Expect(apiServer.Stop()).To(Succeed())
	}
})
