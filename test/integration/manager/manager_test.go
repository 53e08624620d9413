package manager_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/signer"
)

var _ = Describe("The addon-manager binary", Label("manager"), func() {
	Context("with bad input", func() {
		It("exits at once naming POD_NAMESPACE when it is not set", func() {
			unsetEnv(command.PodNamespaceEnv)
			p := startProcess("manager-no-pod-namespace", baseArgs("0"), nil)
			expectFailedStart(p, command.PodNamespaceEnv)
		})

		It("exits at once naming --image-pull-policy when it is invalid", func() {
			p := startProcess("manager-bad-pull-policy",
				append(baseArgs("0"), "--image-pull-policy=Sometimes"), podNamespaceEnv())
			expectFailedStart(p, "--image-pull-policy", "Sometimes")
		})
	})

	It("serves its probes, reconciles the sample ManagedProxyConfiguration and creates the CA", func(ctx SpecContext) {
		m := startManager(ctx, "manager")

		By("answering /healthz and /readyz")
		Expect(waitOK(ctx, m, "/healthz")).To(Succeed())
		Expect(waitOK(ctx, m, "/readyz")).To(Succeed())

		By("reconciling the sample")
		mpc := loadSample()
		createMPC(ctx, mpc)
		expectReconciled(ctx, mpc.Name)

		By("keeping the CA in --signer-secret-namespace")
		ca := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: managerNamespace, Name: signerSecretName}, ca)).To(Succeed())
		Expect(ca.Data).To(HaveKeyWithValue(signer.CertKey, Not(BeEmpty())))
		Expect(ca.Data).To(HaveKeyWithValue(signer.KeyKey, Not(BeEmpty())))
		err := k8sClient.Get(ctx, types.NamespacedName{Namespace: "default", Name: signerSecretName}, &corev1.Secret{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no CA in the default signer namespace, got %v", err)

		By("exiting cleanly on SIGTERM")
		expectCleanExit(m)
	})

	It("hands leadership over to the standby when the leader stops", func(ctx SpecContext) {
		a := startManager(ctx, "manager-a", "--leader-elect")
		b := startManager(ctx, "manager-b", "--leader-elect")
		Expect(a.probePort).NotTo(Equal(b.probePort))
		Expect(waitOK(ctx, a, "/readyz")).To(Succeed())
		Expect(waitOK(ctx, b, "/readyz")).To(Succeed())

		By("exactly one manager holding the Lease")
		var holder string
		Eventually(func(g Gomega) {
			var err error
			holder, err = leaseHolder(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(holder).NotTo(BeEmpty())
			g.Expect(leaders(a, b)).To(HaveLen(1), "exactly one manager should have become leader")
		}).WithContext(ctx).WithTimeout(handoverTimeout).Should(Succeed())
		leader, standby := a, b
		if leaderIdentity(b) != "" {
			leader, standby = b, a
		}
		Expect(leaderIdentity(leader)).To(Equal(holder), "the Lease should name %s", leader.Name)
		Consistently(func(g Gomega) {
			g.Expect(leaseHolder(ctx)).To(Equal(holder))
			g.Expect(leaders(a, b)).To(ConsistOf(leader.Name))
		}).WithContext(ctx).WithTimeout(3 * time.Second).Should(Succeed())

		By("the leader reconciling a ManagedProxyConfiguration")
		first := newMPC("leader-first", "cluster-proxy-leader-first")
		createMPC(ctx, first)
		expectReconciled(ctx, first.Name)

		By("stopping the leader")
		expectCleanExit(leader)
		stopped := time.Now()

		By("the standby acquiring the Lease")
		Eventually(func(g Gomega) {
			current, err := leaseHolder(ctx)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(current).NotTo(BeEmpty())
			g.Expect(current).NotTo(Equal(holder))
			g.Expect(leaderIdentity(standby)).To(Equal(current), "the Lease should name %s", standby.Name)
		}).WithContext(ctx).WithTimeout(handoverTimeout).Should(Succeed())
		AddReportEntry("lease handover", time.Since(stopped).Round(time.Millisecond).String())

		By("the new leader reconciling a ManagedProxyConfiguration created after the handover")
		second := newMPC("leader-second", "cluster-proxy-leader-second")
		createMPC(ctx, second)
		expectReconciled(ctx, second.Name)

		By("the new leader releasing the Lease and exiting cleanly on SIGTERM")
		expectCleanExit(standby)
		Eventually(leaseHolder).WithContext(ctx).WithTimeout(handoverTimeout).Should(BeEmpty())
	})
})
