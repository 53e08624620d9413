// Package proxyconfig_test runs the ManagedProxyConfiguration reconciler
// against a real kube-apiserver (and a real kube-controller-manager for
// garbage collection) and checks the hub objects it produces.
package proxyconfig_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"open-cluster-management.io/cluster-proxy/internal/addonmanager"
	"open-cluster-management.io/cluster-proxy/internal/proxyconfig"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	// managerNamespace plays POD_NAMESPACE: the CA Secret and the TLS
	// profile ConfigMap live there.
	managerNamespace = "open-cluster-management-addon"
	signerSecretName = "cluster-proxy-signer"
)

var (
	apiServer *framework.APIServer
	kcm       *framework.ControllerManager
	k8sClient client.Client
	scheme    *runtime.Scheme
	// fakeClock is the reconciler's clock; specs step it to prove rotation.
	fakeClock *clocktesting.FakeClock
	stopMgr   context.CancelFunc
	// caStore is the reconciler's CA; caChanged tells it the CA Secret
	// changed, as the addon-manager's watch of that Secret does.
	caStore   *signer.Store
	caChanged = make(chan event.GenericEvent, 1)
)

func TestProxyServer(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "ManagedProxyConfiguration reconciler")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	apiServer, err = framework.StartAPIServer()
	Expect(err).NotTo(HaveOccurred())
	kcm, err = framework.StartControllerManager(apiServer, "garbagecollector")
	Expect(err).NotTo(HaveOccurred())

	scheme, err = addonmanager.NewScheme()
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(apiServer.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8sClient.Create(ctx, namespace(managerNamespace))).To(Succeed())

	fakeClock = clocktesting.NewFakeClock(time.Now())
	mgr, err := ctrl.NewManager(apiServer.Config, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		// The production cache scoping, so the specs see what the manager sees.
		Cache: addonmanager.CacheOptions(managerNamespace),
	})
	Expect(err).NotTo(HaveOccurred())
	caStore = &signer.Store{Client: k8sClient, Namespace: managerNamespace, Name: signerSecretName, Clock: fakeClock}
	reconciler := &proxyconfig.Reconciler{
		Client:              mgr.GetClient(),
		Recorder:            mgr.GetEventRecorder("cluster-proxy-addon-manager"),
		Clock:               fakeClock,
		CA:                  caStore,
		CAChanged:           caChanged,
		TLSProfileNamespace: managerNamespace,
	}
	Expect(reconciler.SetupWithManager(mgr)).To(Succeed())

	// The manager outlives this node: stopped in AfterSuite.
	mgrCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	stopMgr = stop
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(mgrCtx)).To(Succeed())
	}()
})

var _ = AfterSuite(func() {
	if stopMgr != nil {
		stopMgr()
	}
	if kcm != nil {
		Expect(kcm.Stop()).To(Succeed())
	}
	if apiServer != nil {
		Expect(apiServer.Stop()).To(Succeed())
	}
})
