package addonhealth_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	gomegatypes "github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/addonhealth"
	"open-cluster-management.io/cluster-proxy/internal/agentaddon"
	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// serverIDs are the suite's proxy-servers: the ManagedProxyConfiguration
// runs three.
var serverIDs = []string{"s1", "s2", "s3"}

// fleet is what each proxy-server of the suite reports, and the Writers
// that publish it.
type fleet struct {
	mu      sync.Mutex
	state   map[string]map[string]healthreport.Cluster
	writers []*healthreport.Writer
}

func newFleet() *fleet {
	f := &fleet{state: map[string]map[string]healthreport.Cluster{}}
	for _, id := range serverIDs {
		f.state[id] = map[string]healthreport.Cluster{}
		w, err := healthreport.NewWriter(healthreport.WriterOptions{
			Client: kubeClient.CoreV1(), Namespace: proxyNamespace, Owner: healthreport.Owner{PodName: "proxy-server-" + id},
			Period: time.Hour, Snapshot: f.snapshot(id), Clock: fakeClock,
		})
		Expect(err).NotTo(HaveOccurred())
		f.writers = append(f.writers, w)
	}
	return f
}

func (f *fleet) snapshot(id string) func() healthreport.Report {
	return func() healthreport.Report {
		f.mu.Lock()
		defer f.mu.Unlock()
		r := healthreport.Report{ServerID: id, ServerCount: len(serverIDs)}
		for _, c := range f.state[id] {
			r.Clusters = append(r.Clusters, c)
		}
		return r
	}
}

// connect has cluster's agent, presenting cert, connected to servers.
func (f *fleet) connect(cluster string, cert *healthreport.Certificate, servers ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range servers {
		f.state[id][cluster] = healthreport.Cluster{Name: cluster, Agents: 1, Certificate: cert}
	}
}

// disconnect drops cluster's agent from servers.
func (f *fleet) disconnect(cluster string, servers ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range servers {
		delete(f.state[id], cluster)
	}
}

// publish writes every server's report, dated by the fake clock.
func (f *fleet) publish(ctx context.Context) {
	GinkgoHelper()
	for _, w := range f.writers {
		Expect(w.Write(ctx)).To(Succeed())
	}
}

// validCert is a certificate far from expiry.
func validCert() *healthreport.Certificate {
	now := fakeClock.Now()
	return &healthreport.Certificate{NotBefore: now.Add(-time.Hour), NotAfter: now.Add(180 * 24 * time.Hour), Serial: "1a",
		Issuer: "open-cluster-management:cluster-proxy", Signer: "signer-0123456789abcdef0123456789abcdef"}
}

// createCluster creates a ManagedCluster that is Available, its namespace
// and its cluster-proxy addon, with conditions others wrote.
func createCluster(ctx context.Context, name string, conditions ...metav1.Condition) {
	GinkgoHelper()
	Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
	mc := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: clusterv1.ManagedClusterSpec{HubAcceptsClient: true}}
	Expect(k8sClient.Create(ctx, mc)).To(Succeed())
	setClusterAvailable(ctx, name, metav1.ConditionTrue)
	addon := &addonapiv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: addonhealth.AddonName}}
	Expect(k8sClient.Create(ctx, addon)).To(Succeed())
	if len(conditions) > 0 {
		// The controller may have written the new addon's status already:
		// these conditions replace what it wrote, as if they were there
		// before it looked.
		Expect(updateAddonStatus(ctx, name, func(s *addonapiv1beta1.ManagedClusterAddOnStatus) {
			s.Conditions = conditions
		})).To(Succeed())
	}
}

// leaseAvailable is the Available condition OCM's registration agent
// writes under the Lease health prober: what an addon has when this
// controller takes over.
var leaseAvailable = metav1.Condition{Type: "Available", Status: metav1.ConditionTrue, Reason: "ManagedClusterAddOnLeaseUpdated",
	Message: "cluster-proxy add-on is available.", LastTransitionTime: metav1.NewTime(time.Now().Truncate(time.Second))}

// setClusterAvailable sets the ManagedCluster's own Available condition, as
// the registration controllers do.
func setClusterAvailable(ctx context.Context, name string, status metav1.ConditionStatus) {
	GinkgoHelper()
	Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mc := &clusterv1.ManagedCluster{}
		if err := k8sClient.Get(ctx, types.NamespacedName{Name: name}, mc); err != nil {
			return err
		}
		reason := map[metav1.ConditionStatus]string{metav1.ConditionTrue: "ManagedClusterAvailable", metav1.ConditionUnknown: "ManagedClusterLeaseUpdateStopped"}[status]
		meta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: clusterv1.ManagedClusterConditionAvailable, Status: status,
			Reason: reason, Message: "set by the test"})
		return k8sClient.Status().Update(ctx, mc)
	})).To(Succeed())
}

// updateAddonStatus changes the addon's status as another writer would,
// retrying conflicts.
func updateAddonStatus(ctx context.Context, cluster string, mutate func(*addonapiv1beta1.ManagedClusterAddOnStatus)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		addon := &addonapiv1beta1.ManagedClusterAddOn{}
		if err := k8sClient.Get(ctx, types.NamespacedName{Namespace: cluster, Name: addonhealth.AddonName}, addon); err != nil {
			return err
		}
		mutate(&addon.Status)
		return k8sClient.Status().Update(ctx, addon)
	})
}

func getAddon(ctx context.Context, g Gomega, cluster string) *addonapiv1beta1.ManagedClusterAddOn {
	addon := &addonapiv1beta1.ManagedClusterAddOn{}
	g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: cluster, Name: addonhealth.AddonName}, addon)).To(Succeed())
	return addon
}

// haveCondition matches a condition list holding typ with status, reason
// and a message matching message.
func haveCondition(typ string, status metav1.ConditionStatus, reason string, message any) gomegatypes.GomegaMatcher {
	return ContainElement(And(HaveField("Type", typ), HaveField("Status", status), HaveField("Reason", reason), HaveField("Message", message)))
}

// conditionsMatch checks that cluster's addon has every condition the
// matchers describe.
func conditionsMatch(ctx context.Context, cluster string, matchers []gomegatypes.GomegaMatcher) func(Gomega) {
	return func(g Gomega) {
		conds := getAddon(ctx, g, cluster).Status.Conditions
		for _, m := range matchers {
			g.Expect(conds).To(m)
		}
	}
}

// expectConditions waits until cluster's addon has every condition the
// matchers describe.
func expectConditions(ctx context.Context, cluster string, matchers ...gomegatypes.GomegaMatcher) {
	GinkgoHelper()
	Eventually(conditionsMatch(ctx, cluster, matchers)).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
}

// keepsConditions checks, for a while, that cluster's addon keeps every
// condition the matchers describe.
func keepsConditions(ctx context.Context, cluster string, matchers ...gomegatypes.GomegaMatcher) {
	GinkgoHelper()
	Consistently(conditionsMatch(ctx, cluster, matchers)).WithContext(ctx).WithTimeout(quiet).WithPolling(interval).Should(Succeed())
}

// expectEvent waits for an Event on cluster's addon.
func expectEvent(ctx context.Context, cluster, eventType, reason, note string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		events := &eventsv1.EventList{}
		g.Expect(k8sClient.List(ctx, events, client.InNamespace(cluster))).To(Succeed())
		g.Expect(events.Items).To(ContainElement(And(
			HaveField("Regarding.Kind", "ManagedClusterAddOn"),
			HaveField("Regarding.Name", addonhealth.AddonName),
			HaveField("Type", eventType),
			HaveField("Reason", reason),
			HaveField("Note", ContainSubstring(note)),
		)))
	}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
}

// connectedTo is the message of an agent of cluster connected to n of the
// three proxy-servers.
func connectedTo(cluster string, n int) string {
	return fmt.Sprintf("the proxy-agent of %s is connected to %d of 3 proxy-servers", cluster, n)
}

var _ = Describe("The addon health controller", Ordered, Label("addonhealth"), func() {
	var servers *fleet

	BeforeAll(func(ctx SpecContext) {
		Expect(addonhealth.AddonName).To(Equal(agentaddon.AddonName))
		mpc := &proxyv1alpha1.ManagedProxyConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: proxyv1alpha1.DefaultName},
			Spec: proxyv1alpha1.ManagedProxyConfigurationSpec{
				ProxyServer: proxyv1alpha1.ManagedProxyConfigurationProxyServer{
					Image: "quay.io/open-cluster-management/cluster-proxy:test", Namespace: proxyNamespace, Replicas: 3,
					Entrypoint: &proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint{Type: proxyv1alpha1.EntryPointTypePortForward},
				},
				ProxyAgent: proxyv1alpha1.ManagedProxyConfigurationProxyAgent{Image: "quay.io/open-cluster-management/cluster-proxy:test", Replicas: 1},
			},
		}
		Expect(k8sClient.Create(ctx, mpc)).To(Succeed())
		servers = newFleet()
		servers.publish(ctx)
	})

	It("says Available when the agent is connected to every proxy-server, and patches nothing while that holds", func(ctx SpecContext) {
		createCluster(ctx, "full")
		servers.connect("full", validCert(), serverIDs...)
		servers.publish(ctx)
		expectConditions(ctx, "full",
			haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("full", 3)),
			haveCondition("Degraded", metav1.ConditionFalse, addonhealth.ReasonHealthy, HavePrefix(connectedTo("full", 3)+"; its client certificate (serial 1a) is valid until ")))
		// The first look may precede some reports: the Event may say False
		// before and fewer proxy-servers.
		expectEvent(ctx, "full", corev1.EventTypeNormal, addonhealth.ReasonConnected, "to True (ProxyAgentConnected): the proxy-agent of full is connected to ")

		By("rewriting the reports with nothing new while another cluster joins")
		var before string
		Eventually(func(g Gomega) { before = getAddon(ctx, g, "full").ResourceVersion }).Should(Succeed())
		createCluster(ctx, "full-witness")
		servers.connect("full-witness", nil, serverIDs...)
		servers.publish(ctx)
		expectConditions(ctx, "full-witness", haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("full-witness", 3)))
		Consistently(func(g Gomega) {
			g.Expect(getAddon(ctx, g, "full").ResourceVersion).To(Equal(before), "the addon was written though its health did not change")
		}).WithContext(ctx).WithTimeout(quiet).WithPolling(interval).Should(Succeed())
	})

	It("says Degraded, still Available, when one of the three proxy-servers lacks the agent", func(ctx SpecContext) {
		createCluster(ctx, "partial")
		servers.connect("partial", validCert(), "s1", "s2")
		servers.publish(ctx)
		expectConditions(ctx, "partial",
			haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("partial", 2)),
			haveCondition("Degraded", metav1.ConditionTrue, addonhealth.ReasonPartiallyConnected, connectedTo("partial", 2)))
		expectEvent(ctx, "partial", corev1.EventTypeWarning, addonhealth.ReasonPartiallyConnected, "to True (ProxyAgentPartiallyConnected): the proxy-agent of partial is connected to ")

		By("healing when the agent reaches the third")
		servers.connect("partial", validCert(), "s3")
		servers.publish(ctx)
		expectConditions(ctx, "partial", haveCondition("Degraded", metav1.ConditionFalse, addonhealth.ReasonHealthy, HavePrefix(connectedTo("partial", 3))))
		expectEvent(ctx, "partial", corev1.EventTypeNormal, addonhealth.ReasonHealthy, "Degraded changed from True (ProxyAgentPartiallyConnected) to False (ProxyAgentHealthy)")
	})

	It("takes Available over from the Lease prober, rides out a disconnection for the grace period, then says Available False naming the tunnel", func(ctx SpecContext) {
		By("an addon the Lease prober said was Available, its agent not (yet) reported: held")
		createCluster(ctx, "gone", leaseAvailable)
		createCluster(ctx, "gone-early-witness")
		expectConditions(ctx, "gone-early-witness", haveCondition("Available", metav1.ConditionFalse, addonhealth.ReasonDisconnected,
			"the proxy-agent of gone-early-witness is connected to none of the 3 proxy-servers"))
		keepsConditions(ctx, "gone", haveCondition("Available", metav1.ConditionTrue, leaseAvailable.Reason, leaseAvailable.Message))

		servers.connect("gone", validCert(), serverIDs...)
		servers.publish(ctx)
		expectConditions(ctx, "gone", haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("gone", 3)))
		expectEvent(ctx, "gone", corev1.EventTypeNormal, addonhealth.ReasonConnected,
			"Available changed from True (ManagedClusterAddOnLeaseUpdated) to True (ProxyAgentConnected): "+connectedTo("gone", 3))

		By("the agent leaving every proxy-server while another cluster joins")
		servers.disconnect("gone", serverIDs...)
		createCluster(ctx, "gone-witness")
		servers.connect("gone-witness", nil, serverIDs...)
		servers.publish(ctx)
		expectConditions(ctx, "gone-witness", haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("gone-witness", 3)))
		keepsConditions(ctx, "gone",
			haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("gone", 3)),
			haveCondition("Degraded", metav1.ConditionFalse, addonhealth.ReasonHealthy, HavePrefix(connectedTo("gone", 3))))

		By("the grace period passing")
		fakeClock.Step(grace)
		none := "the proxy-agent of gone is connected to none of the 3 proxy-servers"
		expectConditions(ctx, "gone",
			haveCondition("Available", metav1.ConditionFalse, addonhealth.ReasonDisconnected, none),
			haveCondition("Degraded", metav1.ConditionTrue, addonhealth.ReasonDisconnected, none))
		expectEvent(ctx, "gone", corev1.EventTypeWarning, addonhealth.ReasonDisconnected,
			"Available changed from True (ProxyAgentConnected) to False (ProxyAgentDisconnected): "+none)
		addon := &addonapiv1beta1.ManagedClusterAddOn{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: "gone", Name: addonhealth.AddonName}, addon)).To(Succeed())
		Expect(meta.FindStatusCondition(addon.Status.Conditions, "Available").LastTransitionTime.Time).To(BeTemporally("~", fakeClock.Now(), time.Second),
			"the transition is dated by the controller's clock")

		By("coming back at once when the agent reconnects, with no grace")
		servers.connect("gone", validCert(), "s2")
		servers.publish(ctx)
		expectConditions(ctx, "gone",
			haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("gone", 1)),
			haveCondition("Degraded", metav1.ConditionTrue, addonhealth.ReasonPartiallyConnected, connectedTo("gone", 1)))
	})

	It("says Degraded with the expiry when the clock reaches the certificate's last tenth", func(ctx SpecContext) {
		createCluster(ctx, "expiry")
		now := fakeClock.Now()
		// 1,001 minutes of life; the last tenth starts 54 s from now.
		cert := &healthreport.Certificate{NotBefore: now.Add(-900 * time.Minute), NotAfter: now.Add(101 * time.Minute), Serial: "5e",
			Issuer: "open-cluster-management:cluster-proxy", Signer: "signer-0123456789abcdef0123456789abcdef"}
		notAfter := cert.NotAfter.UTC().Format(time.RFC3339)
		servers.connect("expiry", cert, serverIDs...)
		servers.publish(ctx)
		expectConditions(ctx, "expiry",
			haveCondition("Degraded", metav1.ConditionFalse, addonhealth.ReasonHealthy,
				connectedTo("expiry", 3)+"; its client certificate (serial 5e) is valid until "+notAfter))

		By("moving the clock two minutes on, with no new report")
		fakeClock.Step(2 * time.Minute)
		expiring := connectedTo("expiry", 3) + "; its client certificate (serial 5e) expires at " + notAfter + ", within the last 10% of its lifetime"
		expectConditions(ctx, "expiry",
			haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("expiry", 3)),
			haveCondition("Degraded", metav1.ConditionTrue, addonhealth.ReasonCertificateExpiring, expiring))
		expectEvent(ctx, "expiry", corev1.EventTypeWarning, addonhealth.ReasonCertificateExpiring,
			"Degraded changed from False (ProxyAgentHealthy) to True (ProxyAgentCertificateExpiring): "+expiring)

		By("healing when a renewed certificate shows up")
		servers.connect("expiry", validCert(), serverIDs...)
		servers.publish(ctx)
		expectConditions(ctx, "expiry", haveCondition("Degraded", metav1.ConditionFalse, addonhealth.ReasonHealthy, HavePrefix(connectedTo("expiry", 3))))
	})

	It("keeps the conditions other writers set, while they write concurrently", func(ctx SpecContext) {
		createCluster(ctx, "shared")
		stamp := metav1.NewTime(time.Now().Truncate(time.Second))
		others := []metav1.Condition{
			{Type: "ManifestApplied", Status: metav1.ConditionTrue, Reason: "AddonManifestApplied", Message: "manifests of addon are applied successfully", LastTransitionTime: stamp},
			{Type: "RegistrationApplied", Status: metav1.ConditionTrue, Reason: "SetPermissionApplied", Message: "Registration of the addon agent is configured", LastTransitionTime: stamp},
			{Type: "ClusterCertificateRotated", Status: metav1.ConditionTrue, Reason: "ClientCertificateUpdated", Message: "client certificate rotated", LastTransitionTime: stamp},
		}
		Expect(updateAddonStatus(ctx, "shared", func(s *addonapiv1beta1.ManagedClusterAddOnStatus) {
			for _, c := range others {
				meta.SetStatusCondition(&s.Conditions, c)
			}
		})).To(Succeed())
		servers.connect("shared", validCert(), serverIDs...)
		servers.publish(ctx)
		expectConditions(ctx, "shared", haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("shared", 3)))

		By("another writer updating Progressing again and again while the agent's certificate comes near expiry and is renewed, thrice")
		// A flag, not a cancelled context, stops the writer: a request
		// cancelled in flight may still have been written.
		var lastWritten atomic.Int64
		var stop atomic.Bool
		writerDone := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(writerDone)
			for n := int64(1); !stop.Load(); n++ {
				err := updateAddonStatus(ctx, "shared", func(s *addonapiv1beta1.ManagedClusterAddOnStatus) {
					meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: "Progressing", Status: metav1.ConditionFalse,
						Reason: "Completed", Message: fmt.Sprintf("write %d", n), LastTransitionTime: stamp})
				})
				if err == nil {
					lastWritten.Store(n)
				}
			}
		}()
		for range 3 {
			now := fakeClock.Now()
			servers.connect("shared", &healthreport.Certificate{NotBefore: now.Add(-91 * 24 * time.Hour), NotAfter: now.Add(9 * 24 * time.Hour)}, serverIDs...)
			servers.publish(ctx)
			expectConditions(ctx, "shared", haveCondition("Degraded", metav1.ConditionTrue, addonhealth.ReasonCertificateExpiring, ContainSubstring("within the last 10% of its lifetime")))
			servers.connect("shared", validCert(), serverIDs...)
			servers.publish(ctx)
			expectConditions(ctx, "shared", haveCondition("Degraded", metav1.ConditionFalse, addonhealth.ReasonHealthy, HavePrefix(connectedTo("shared", 3))))
		}
		stop.Store(true)
		Eventually(writerDone).WithTimeout(timeout).Should(BeClosed())
		Expect(lastWritten.Load()).To(BeNumerically(">", 3), "the other writer barely wrote")

		By("both writers' last words standing")
		matchers := []gomegatypes.GomegaMatcher{
			haveCondition("Progressing", metav1.ConditionFalse, "Completed", fmt.Sprintf("write %d", lastWritten.Load())),
			haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("shared", 3)),
			haveCondition("Degraded", metav1.ConditionFalse, addonhealth.ReasonHealthy, HavePrefix(connectedTo("shared", 3))),
		}
		for _, c := range others {
			matchers = append(matchers, haveCondition(c.Type, c.Status, c.Reason, c.Message))
		}
		keepsConditions(ctx, "shared", matchers...)
	})

	It("leaves Available to the hub while the ManagedCluster itself is Unknown, and still says Degraded", func(ctx SpecContext) {
		createCluster(ctx, "lost")
		servers.connect("lost", validCert(), serverIDs...)
		servers.publish(ctx)
		expectConditions(ctx, "lost", haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("lost", 3)))

		By("the cluster turning Unknown and the hub's registration controller copying that to the addon")
		setClusterAvailable(ctx, "lost", metav1.ConditionUnknown)
		hubSays := haveCondition("Available", metav1.ConditionUnknown, "ManagedClusterLeaseUpdateStopped", "set by the test")
		Expect(updateAddonStatus(ctx, "lost", func(s *addonapiv1beta1.ManagedClusterAddOnStatus) {
			meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: "Available", Status: metav1.ConditionUnknown,
				Reason: "ManagedClusterLeaseUpdateStopped", Message: "set by the test"})
		})).To(Succeed())

		By("a proxy-server losing the agent: Degraded follows, Available stays the hub's")
		servers.disconnect("lost", "s1")
		servers.publish(ctx)
		expectConditions(ctx, "lost", haveCondition("Degraded", metav1.ConditionTrue, addonhealth.ReasonPartiallyConnected, connectedTo("lost", 2)))
		keepsConditions(ctx, "lost", hubSays)

		By("the cluster coming back")
		setClusterAvailable(ctx, "lost", metav1.ConditionTrue)
		expectConditions(ctx, "lost", haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("lost", 2)))
	})

	It("says Unknown when no proxy-server of the addon's ManagedProxyConfiguration reports, and reads no other namespace's reports", func(ctx SpecContext) {
		other := &proxyv1alpha1.ManagedProxyConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"},
			Spec: proxyv1alpha1.ManagedProxyConfigurationSpec{
				ProxyServer: proxyv1alpha1.ManagedProxyConfigurationProxyServer{
					Image: "quay.io/open-cluster-management/cluster-proxy:test", Namespace: "cluster-proxy-elsewhere", Replicas: 3,
					Entrypoint: &proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint{Type: proxyv1alpha1.EntryPointTypePortForward},
				},
				ProxyAgent: proxyv1alpha1.ManagedProxyConfigurationProxyAgent{Image: "quay.io/open-cluster-management/cluster-proxy:test", Replicas: 1},
			},
		}
		Expect(k8sClient.Create(ctx, other)).To(Succeed())
		createCluster(ctx, "elsewhere")
		Expect(updateAddonStatus(ctx, "elsewhere", func(s *addonapiv1beta1.ManagedClusterAddOnStatus) {
			s.ConfigReferences = []addonapiv1beta1.ConfigReference{{
				ConfigGroupResource: addonapiv1beta1.ConfigGroupResource{Group: proxyv1alpha1.GroupName, Resource: "managedproxyconfigurations"},
				DesiredConfig:       &addonapiv1beta1.ConfigSpecHash{ConfigReferent: addonapiv1beta1.ConfigReferent{Name: "elsewhere"}, SpecHash: "h"},
			}}
		})).To(Succeed())
		missing := "no proxy-server has reported on its agents in the last 10m0s"
		expectConditions(ctx, "elsewhere",
			haveCondition("Available", metav1.ConditionUnknown, addonhealth.ReasonReportsMissing, missing),
			haveCondition("Degraded", metav1.ConditionUnknown, addonhealth.ReasonReportsMissing, missing))

		By("the default configuration's proxy-servers listing the cluster, while another cluster joins")
		servers.connect("elsewhere", validCert(), serverIDs...)
		createCluster(ctx, "elsewhere-witness")
		servers.connect("elsewhere-witness", nil, serverIDs...)
		servers.publish(ctx)
		expectConditions(ctx, "elsewhere-witness", haveCondition("Available", metav1.ConditionTrue, addonhealth.ReasonConnected, connectedTo("elsewhere-witness", 3)))
		keepsConditions(ctx, "elsewhere", haveCondition("Available", metav1.ConditionUnknown, addonhealth.ReasonReportsMissing, missing))
	})
})
