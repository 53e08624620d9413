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
	clocktesting "k8s.io/utils/clock/testing"

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
	It("is renewed every period while the proxy-agent reports ready, and not while it does not", func(ctx SpecContext) {
		const ns = "open-cluster-management-cluster-proxy"
		const period = time.Minute
		_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		// Stands in for the proxy-agent's /readyz (200 once connected to a
		// proxy-server): what is under test is the lease's reaction to it.
		// Its request count witnesses that a pass of the updater ran.
		var ready atomic.Bool
		var checks atomic.Int64
		ready.Store(true)
		proxyAgent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			checks.Add(1)
			if ready.Load() {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.WriteHeader(http.StatusInternalServerError)
		}))
		DeferCleanup(proxyAgent.Close)

		// Whole seconds: the Lease stores renewals in microseconds.
		fakeClock := clocktesting.NewFakeClock(time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC))
		updater := &addonagent.LeaseUpdater{
			Managed: client, Namespace: ns, ClusterName: "cluster1",
			Duration: period, Clock: fakeClock,
			Checks: []func(context.Context) error{addonagent.ReadyCheck(proxyAgent.Client(), proxyAgent.URL+"/readyz")},
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); updater.Run(runCtx) }()
		DeferCleanup(func() {
			stop()
			Eventually(done).WithTimeout(10 * time.Second).Should(BeClosed())
		})

		// waiting returns once the updater has finished a pass and waits for
		// its next period on the fake clock.
		waiting := func() {
			Eventually(fakeClock.HasWaiters).WithContext(ctx).WithTimeout(10 * time.Second).WithPolling(10 * time.Millisecond).Should(BeTrue())
		}
		// tick moves past the longest jittered period and returns once the
		// pass it triggers has finished (the timer that fired is gone until
		// the pass ends), reporting how many health checks that pass made:
		// none if no pass ran.
		tick := func() int64 {
			waiting()
			before := checks.Load()
			fakeClock.Step(2 * period)
			waiting()
			return checks.Load() - before
		}
		renewTime := func() time.Time {
			lease, err := client.CoordinationV1().Leases(ns).Get(ctx, addonagent.LeaseName, metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred())
			Expect(*lease.Spec.LeaseDurationSeconds).To(BeEquivalentTo(60))
			return lease.Spec.RenewTime.Time
		}

		By("ready: the Lease is created at once, stamped with the updater's clock")
		waiting()
		Expect(checks.Load()).To(BeEquivalentTo(1))
		Expect(renewTime()).To(BeTemporally("==", fakeClock.Now()))

		By("not before the period has passed")
		stamped := fakeClock.Now()
		fakeClock.Step(period - time.Second)
		Expect(fakeClock.HasWaiters()).To(BeTrue(), "the updater stopped waiting before its period")
		Expect(checks.Load()).To(BeEquivalentTo(1))
		Expect(renewTime()).To(BeTemporally("==", stamped))

		By("renewed once the period has passed")
		Expect(tick()).To(BeEquivalentTo(1))
		Expect(renewTime()).To(BeTemporally("==", fakeClock.Now()))

		By("not ready: a pass runs the health check and leaves the Lease alone")
		stalled := renewTime()
		ready.Store(false)
		Expect(tick()).To(BeEquivalentTo(1), "the pass did not ask the proxy-agent")
		Expect(renewTime()).To(BeTemporally("==", stalled))
		Expect(tick()).To(BeEquivalentTo(1))
		Expect(renewTime()).To(BeTemporally("==", stalled))

		By("ready again: renewals resume")
		ready.Store(true)
		Expect(tick()).To(BeEquivalentTo(1))
		Expect(renewTime()).To(BeTemporally("==", fakeClock.Now()))
		Expect(renewTime()).To(BeTemporally(">", stalled))
	})
})
