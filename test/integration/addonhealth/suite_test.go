// Package addonhealth_test runs the proxy-servers' health report Writer
// (internal/healthreport) and the hub controller that sets each
// ManagedClusterAddOn's Available and Degraded conditions from the reports
// (internal/addonhealth) against a real kube-apiserver with OCM's hub CRDs
// and a real kube-controller-manager's garbage collector, the controller on
// an injected clock.
package addonhealth_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"open-cluster-management.io/cluster-proxy/internal/addonhealth"
	"open-cluster-management.io/cluster-proxy/internal/addonmanager"
	"open-cluster-management.io/cluster-proxy/internal/agentaddon"
	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	// proxyNamespace is the proxy-server namespace of the suite's
	// ManagedProxyConfiguration: the reports the controller reads live
	// there.
	proxyNamespace = "cluster-proxy-health"
	// grace and staleness are the controller's; the specs step its clock
	// past them.
	grace     = 5 * time.Minute
	staleness = 10 * time.Minute
	// resync makes the controller look again often, so a stepped clock
	// takes effect at once.
	resync = 300 * time.Millisecond

	timeout  = 30 * time.Second
	interval = 100 * time.Millisecond
	// quiet is how long a spec watches for something that must not happen.
	quiet = 2 * time.Second
)

var (
	apiServer  *framework.APIServer
	kcm        *framework.ControllerManager
	k8sClient  client.Client
	kubeClient kubernetes.Interface
	scheme     *runtime.Scheme
	// fakeClock is the controller's clock and the report writers'.
	fakeClock *clocktesting.FakeClock
	stopMgr   context.CancelFunc
	// proxyServerBinary and proxyAgentBinary are our tunnel's commands.
	proxyServerBinary, proxyAgentBinary string
)

func TestAddonHealth(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Addon health: reports and conditions")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	proxyServerBinary, err = framework.BuildBinary("./cmd/proxy-server", "proxy-server")
	Expect(err).NotTo(HaveOccurred())
	proxyAgentBinary, err = framework.BuildBinary("./cmd/proxy-agent", "proxy-agent")
	Expect(err).NotTo(HaveOccurred())
	ocmCRDs, err := framework.OCMHubCRDs(GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
	apiServer, err = framework.StartAPIServer(ocmCRDs)
	Expect(err).NotTo(HaveOccurred())
	kcm, err = framework.StartControllerManager(apiServer, "garbagecollector")
	Expect(err).NotTo(HaveOccurred())

	scheme, err = addonmanager.NewScheme()
	Expect(err).NotTo(HaveOccurred())
	k8sClient, err = client.New(apiServer.Config, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	kubeClient, err = kubernetes.NewForConfig(apiServer.Config)
	Expect(err).NotTo(HaveOccurred())
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: proxyNamespace}})).To(Succeed())

	fakeClock = clocktesting.NewFakeClock(time.Now())
	mgr, err := ctrl.NewManager(apiServer.Config, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		// As the addon-manager's cache will hold them: report ConfigMaps only.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {Label: healthreport.Selector()},
		}},
	})
	Expect(err).NotTo(HaveOccurred())
	reconciler := &addonhealth.Reconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Recorder:          mgr.GetEventRecorder("cluster-proxy-addon-manager"),
		Clock:             fakeClock,
		ConfigurationName: agentaddon.ConfigurationName,
		Staleness:         staleness,
		Grace:             grace,
		Resync:            resync,
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
