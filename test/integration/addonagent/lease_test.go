// Package addonagent_test checks the addon-agent's Lease against a real
// kube-apiserver standing in for the managed cluster.
package addonagent_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"open-cluster-management.io/cluster-proxy/internal/addonagent"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

func TestAddonAgent(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "addon-agent")
}

var (
	managed *framework.APIServer
	client  kubernetes.Interface
)

var _ = BeforeSuite(func() {
	var err error
	managed, err = framework.StartAPIServer()
	Expect(err).NotTo(HaveOccurred())
	client, err = kubernetes.NewForConfig(managed.Config)
	Expect(err).NotTo(HaveOccurred())
})

var _ = AfterSuite(func() {
	if managed != nil {
		Expect(managed.Stop()).To(Succeed())
	}
})

var _ = Describe("The addon lease", Label("addonagent"), func() {
	It("is renewed only while the proxy-agent reports ready", func(ctx SpecContext) {
		const ns = "open-cluster-management-cluster-proxy"
		_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		// Stands in for the proxy-agent's /readyz (200 once connected to a
		// proxy-server): what is under test is the lease's reaction to it.
		var ready atomic.Bool
		ready.Store(true)
		proxyAgent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if ready.Load() {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.WriteHeader(http.StatusInternalServerError)
		}))
		DeferCleanup(proxyAgent.Close)

		updater := &addonagent.LeaseUpdater{
			Managed: client, Namespace: ns, ClusterName: "cluster1",
			Duration: time.Second, Clock: clock.RealClock{},
			Checks: []func(context.Context) error{addonagent.ReadyCheck(proxyAgent.Client(), proxyAgent.URL+"/readyz")},
		}
		runCtx, stop := context.WithCancel(ctx)
		DeferCleanup(stop)
		go updater.Run(runCtx)

		renewTime := func() time.Time {
			lease, err := client.CoordinationV1().Leases(ns).Get(ctx, addonagent.LeaseName, metav1.GetOptions{})
			if err != nil {
				return time.Time{}
			}
			return lease.Spec.RenewTime.Time
		}
		By("ready: the Lease exists and keeps being renewed")
		Eventually(renewTime).WithContext(ctx).WithTimeout(10 * time.Second).ShouldNot(BeZero())
		first := renewTime()
		Eventually(renewTime).WithContext(ctx).WithTimeout(10 * time.Second).Should(BeTemporally(">", first))

		By("not ready: renewals stop")
		ready.Store(false)
		time.Sleep(2 * time.Second) // let an in-flight renewal finish
		stalled := renewTime()
		Consistently(renewTime).WithContext(ctx).WithTimeout(4 * time.Second).Should(Equal(stalled))

		By("ready again: renewals resume")
		ready.Store(true)
		Eventually(renewTime).WithContext(ctx).WithTimeout(10 * time.Second).Should(BeTemporally(">", stalled))
	})
})
