package proxyconfig_test

import (
	"context"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// setReadyReplicas plays the deployment controller (which this suite does
// not run): it writes the proxy-server Deployment's status through the
// status subresource, with ready of its replicas ready and its current
// generation observed.
func setReadyReplicas(ctx context.Context, ns, name string, ready int32) {
	GinkgoHelper()
	Eventually(func() error {
		d := &appsv1.Deployment{}
		if err := get(ctx, ns, name, d); err != nil {
			return err
		}
		replicas := ptr.Deref(d.Spec.Replicas, 1)
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation,
			Replicas:           replicas,
			UpdatedReplicas:    replicas,
			ReadyReplicas:      ready,
			AvailableReplicas:  ready,
		}
		return k8sClient.Status().Update(ctx, d)
	}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
}

// expectEvent waits for an Event on the ManagedProxyConfiguration name.
func expectEvent(ctx context.Context, name, eventType, reason, note string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		events := &eventsv1.EventList{}
		// Events on cluster-scoped objects land in the default namespace.
		g.Expect(k8sClient.List(ctx, events, client.InNamespace(metav1.NamespaceDefault))).To(Succeed())
		g.Expect(events.Items).To(ContainElement(And(
			HaveField("Regarding.Kind", "ManagedProxyConfiguration"),
			HaveField("Regarding.Name", name),
			HaveField("Type", eventType),
			HaveField("Reason", reason),
			HaveField("Note", ContainSubstring(note)),
		)), "no %s Event %s on %s", eventType, reason, name)
	}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
}

// eventCount counts the Events of eventType and reason on the
// ManagedProxyConfiguration name, series included: a repeated Event of one
// action and reason is recorded as a series on the first (whose note stays).
func eventCount(ctx context.Context, name, eventType, reason string) (int32, error) {
	events := &eventsv1.EventList{}
	if err := k8sClient.List(ctx, events, client.InNamespace(metav1.NamespaceDefault)); err != nil {
		return 0, err
	}
	var n int32
	for _, e := range events.Items {
		if e.Regarding.Kind != "ManagedProxyConfiguration" || e.Regarding.Name != name || e.Type != eventType || e.Reason != reason {
			continue
		}
		if e.Series != nil {
			n += e.Series.Count
		} else {
			n++
		}
	}
	return n, nil
}

var _ = Describe("The health conditions", Label("proxyconfig", "health"), func() {
	It("follow the proxy-server replicas becoming ready, with an Event on each change", func(ctx SpecContext) {
		const name, ns = "health", "proxy-health"
		createMPC(ctx, newMPC(name, ns))
		DeferCleanup(deleteMPC, name)

		By("no replica ready: not Available, Degraded")
		cond := expectCondition(ctx, name, proxyv1alpha1.ConditionTypeProxyServerAvailable, metav1.ConditionFalse, proxyv1alpha1.ReasonNoReplicaReady)
		Expect(cond.Message).To(HavePrefix("0 of 3 proxy-servers ready"))
		cond = expectCondition(ctx, name, proxyv1alpha1.ConditionTypeDegraded, metav1.ConditionTrue, proxyv1alpha1.ReasonProxyServerReplicasNotReady)
		Expect(cond.Message).To(HavePrefix("0 of 3 proxy-servers ready"))
		expectEvent(ctx, name, corev1.EventTypeWarning, proxyv1alpha1.ReasonNoReplicaReady, "ProxyServerAvailable set to False")
		expectEvent(ctx, name, corev1.EventTypeWarning, proxyv1alpha1.ReasonProxyServerReplicasNotReady, "Degraded set to True")
		waitObserved(ctx, name)

		By("2 of 3 ready: Available, still Degraded")
		setReadyReplicas(ctx, ns, name, 2)
		cond = expectCondition(ctx, name, proxyv1alpha1.ConditionTypeProxyServerAvailable, metav1.ConditionTrue, proxyv1alpha1.ReasonReplicasReady)
		Expect(cond.Message).To(Equal("2 of 3 proxy-servers ready"))
		Eventually(func() string {
			return meta.FindStatusCondition(getMPC(ctx, name).Status.Conditions, proxyv1alpha1.ConditionTypeDegraded).Message
		}).WithContext(ctx).WithTimeout(timeout).Should(Equal("2 of 3 proxy-servers ready"))
		Expect(meta.IsStatusConditionTrue(getMPC(ctx, name).Status.Conditions, proxyv1alpha1.ConditionTypeDegraded)).To(BeTrue())
		expectEvent(ctx, name, corev1.EventTypeNormal, proxyv1alpha1.ReasonReplicasReady,
			"ProxyServerAvailable changed from False (NoReplicaReady) to True (ReplicasReady): 2 of 3 proxy-servers ready")

		By("3 of 3 ready: not Degraded")
		setReadyReplicas(ctx, ns, name, 3)
		cond = expectCondition(ctx, name, proxyv1alpha1.ConditionTypeDegraded, metav1.ConditionFalse, proxyv1alpha1.ReasonAsExpected)
		Expect(cond.Message).To(HavePrefix("3 of 3 proxy-servers ready; the first certificate to expire is the certificate in secret " + ns + "/"))
		expectEvent(ctx, name, corev1.EventTypeNormal, proxyv1alpha1.ReasonAsExpected,
			"Degraded changed from True (ProxyServerReplicasNotReady) to False (AsExpected)")

		By("the other conditions are as before")
		for _, typ := range []string{
			proxyv1alpha1.ConditionTypeProxyServerDeployed,
			proxyv1alpha1.ConditionTypeProxyServerSecretSigned,
			proxyv1alpha1.ConditionTypeAgentServerSecretSigned,
			proxyv1alpha1.ConditionTypeProxyClientSecretSigned,
			proxyv1alpha1.ConditionTypeProxyServerAvailable,
		} {
			Expect(meta.IsStatusConditionTrue(getMPC(ctx, name).Status.Conditions, typ)).To(BeTrue(), typ)
		}

		By("a reconcile that finds nothing new writes no status")
		mpc := getMPC(ctx, name)
		degraded := meta.FindStatusCondition(mpc.Status.Conditions, proxyv1alpha1.ConditionTypeDegraded)
		poke(ctx, name)
		poked := getMPC(ctx, name).ResourceVersion
		Consistently(func() string {
			return getMPC(ctx, name).ResourceVersion
		}).WithContext(ctx).WithTimeout(2*time.Second).Should(Equal(poked), "the status was patched with nothing new")
		Expect(meta.FindStatusCondition(getMPC(ctx, name).Status.Conditions, proxyv1alpha1.ConditionTypeDegraded).LastTransitionTime).
			To(Equal(degraded.LastTransitionTime))

		By("one replica lost: Degraded again, with a Warning")
		setReadyReplicas(ctx, ns, name, 2)
		cond = expectCondition(ctx, name, proxyv1alpha1.ConditionTypeDegraded, metav1.ConditionTrue, proxyv1alpha1.ReasonProxyServerReplicasNotReady)
		Expect(cond.Message).To(Equal("2 of 3 proxy-servers ready"))
		// The same action and reason as the first Warning: recorded as its
		// series.
		Eventually(eventCount).WithContext(ctx).WithArguments(name, corev1.EventTypeWarning, proxyv1alpha1.ReasonProxyServerReplicasNotReady).
			WithTimeout(timeout).WithPolling(interval).Should(BeEquivalentTo(2))
		Expect(eventCount(ctx, name, corev1.EventTypeWarning, proxyv1alpha1.ReasonNoReplicaReady)).
			To(BeEquivalentTo(1), "a change announced more than once")
	})

	It("report a certificate whose renewal keeps failing once it is in the last tenth of its lifetime, until it is renewed", func(ctx SpecContext) {
		const name, ns = "expiring", "proxy-expiring"
		createMPC(ctx, newMPC(name, ns))
		DeferCleanup(deleteMPC, name)
		waitObserved(ctx, name)
		setReadyReplicas(ctx, ns, name, 3)
		expectCondition(ctx, name, proxyv1alpha1.ConditionTypeDegraded, metav1.ConditionFalse, proxyv1alpha1.ReasonAsExpected)
		old := getLeaf(ctx, ns, "proxy-server").cert

		By("an admission policy refusing any new certificate in the proxy-server Secret")
		policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "block-renewal-" + ns},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: ptr.To(admissionregistrationv1.Fail),
				MatchConstraints: &admissionregistrationv1.MatchResources{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}},
					ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
						ResourceNames: []string{"proxy-server"},
						RuleWithOperations: admissionregistrationv1.RuleWithOperations{
							Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
							Rule: admissionregistrationv1.Rule{
								APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"},
							},
						},
					}},
				},
				Validations: []admissionregistrationv1.Validation{{
					Expression: "!has(oldObject.data) || !('tls.crt' in oldObject.data) || " +
						"(has(object.data) && 'tls.crt' in object.data && object.data['tls.crt'] == oldObject.data['tls.crt'])",
					Message: "the test blocks the renewal of this certificate",
				}},
			},
		}
		binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        policy.Name,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			},
		}
		Expect(k8sClient.Create(ctx, policy)).To(Succeed())
		Expect(k8sClient.Create(ctx, binding)).To(Succeed())
		removePolicy := func(ctx context.Context) {
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, binding))).To(Succeed())
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, policy))).To(Succeed())
		}
		DeferCleanup(removePolicy)
		// The API server loads policies asynchronously: a dry run tells when
		// it enforces this one, and later when it no longer does.
		renewalRefused := func() (bool, error) {
			secret, other := &corev1.Secret{}, &corev1.Secret{}
			if err := get(ctx, ns, "proxy-server", secret); err != nil {
				return false, err
			}
			// Another valid key pair, so the API server has nothing to warn about.
			if err := get(ctx, ns, "agent-server", other); err != nil {
				return false, err
			}
			secret.Data = other.Data
			err := k8sClient.Update(ctx, secret, client.DryRunAll)
			if err != nil && !strings.Contains(err.Error(), "the test blocks the renewal") {
				return false, err
			}
			return err != nil, nil
		}
		Eventually(renewalRefused).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(BeTrue())

		By("past 90% of the certificates' lifetime: the renewal fails, Degraded names the Secret and its expiry")
		lifetime := old.NotAfter.Sub(old.NotBefore)
		fakeClock.SetTime(old.NotBefore.Add(lifetime * 91 / 100))
		poke(ctx, name)
		cond := expectCondition(ctx, name, proxyv1alpha1.ConditionTypeDegraded, metav1.ConditionTrue, proxyv1alpha1.ReasonCertificateExpiring)
		Expect(cond.Message).To(HavePrefix("3 of 3 proxy-servers ready; "))
		Expect(cond.Message).To(ContainSubstring("the certificate in secret %s/proxy-server expires at %s, within the last 10%% of its lifetime",
			ns, old.NotAfter.UTC().Format(time.RFC3339)))
		expectEvent(ctx, name, corev1.EventTypeWarning, proxyv1alpha1.ReasonCertificateExpiring,
			"Degraded changed from False (AsExpected) to True (CertificateExpiring)")
		expectCondition(ctx, name, proxyv1alpha1.ConditionTypeProxyServerSecretSigned, metav1.ConditionFalse, proxyv1alpha1.ReasonNotYetSigned)
		Expect(getLeaf(ctx, ns, "proxy-server").cert.SerialNumber).To(Equal(old.SerialNumber), "the policy let the renewal through")
		Expect(meta.IsStatusConditionTrue(getMPC(ctx, name).Status.Conditions, proxyv1alpha1.ConditionTypeProxyServerAvailable)).To(BeTrue())

		By("the obstacle removed: renewed, and no longer Degraded")
		removePolicy(ctx)
		Eventually(renewalRefused).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(BeFalse())
		poke(ctx, name)
		Eventually(func() string {
			return getLeaf(ctx, ns, "proxy-server").cert.SerialNumber.String()
		}).WithContext(ctx).WithTimeout(timeout).ShouldNot(Equal(old.SerialNumber.String()))
		cond = expectCondition(ctx, name, proxyv1alpha1.ConditionTypeDegraded, metav1.ConditionFalse, proxyv1alpha1.ReasonAsExpected)
		Expect(cond.Message).To(HavePrefix("3 of 3 proxy-servers ready; the first certificate to expire is "))
		// The second recovery of this configuration: a series on the first.
		Eventually(eventCount).WithContext(ctx).WithArguments(name, corev1.EventTypeNormal, proxyv1alpha1.ReasonAsExpected).
			WithTimeout(timeout).WithPolling(interval).Should(BeEquivalentTo(2))
		expectCondition(ctx, name, proxyv1alpha1.ConditionTypeProxyServerSecretSigned, metav1.ConditionTrue, proxyv1alpha1.ReasonSuccessfullySigned)
	})
})
