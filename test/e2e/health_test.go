package e2e_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	addonv1alpha1 "open-cluster-management.io/api/addon/v1alpha1"

	"open-cluster-management.io/cluster-proxy/internal/addonhealth"
	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	"open-cluster-management.io/cluster-proxy/test/localenv"
	"open-cluster-management.io/cluster-proxy/test/localenv/netns"
)

// healthWait bounds each wait for a condition: the server's keepalive
// (30 s and 20 s without an answer) drops a silent agent, the controller
// holds a healthy addon's conditions for its 2-minute grace, and a
// restarted proxy-agent may wait out the kubelet's back-off.
const healthWait = 5 * time.Minute

// addonConditions returns the Available and Degraded conditions of
// cluster's addon (nil when unset).
func addonConditions(ctx context.Context, cluster string) (available, degraded *metav1.Condition, err error) {
	mca, err := hubAddon.AddonV1alpha1().ManagedClusterAddOns(cluster).Get(ctx, localenv.AddonName, metav1.GetOptions{})
	if err != nil {
		return nil, nil, err
	}
	return meta.FindStatusCondition(mca.Status.Conditions, addonv1alpha1.ManagedClusterAddOnConditionAvailable),
		meta.FindStatusCondition(mca.Status.Conditions, addonv1alpha1.ManagedClusterAddOnConditionDegraded), nil
}

// expectConditions waits until cluster's addon has Available and Degraded
// with these statuses and reasons, and messages containing what is given.
func expectConditions(ctx context.Context, cluster string, available metav1.ConditionStatus, availableReason string,
	degraded metav1.ConditionStatus, degradedReason, message string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		a, d, err := addonConditions(ctx, cluster)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(a).NotTo(BeNil(), "Available")
		g.Expect(d).NotTo(BeNil(), "Degraded")
		g.Expect(*a).To(And(HaveField("Status", available), HaveField("Reason", availableReason)), "Available")
		g.Expect(*d).To(And(HaveField("Status", degraded), HaveField("Reason", degradedReason)), "Degraded")
		g.Expect(d.Message).To(ContainSubstring(message), "Degraded")
		g.Expect(a.Message).To(ContainSubstring("the proxy-agent of "+cluster), "Available names the cluster's tunnel")
	}).WithContext(ctx).WithTimeout(healthWait).WithPolling(2*time.Second).Should(Succeed(), "the addon on %s", cluster)
}

// expectEvent waits for an Event on cluster's addon with reason.
func expectEvent(ctx context.Context, cluster, reason string) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		events, err := hubKube.EventsV1().Events(cluster).List(ctx, metav1.ListOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		var reasons []string
		for _, e := range events.Items {
			if e.Regarding.Name == localenv.AddonName && e.ReportingController != "" {
				reasons = append(reasons, e.Reason)
			}
		}
		g.Expect(reasons).To(ContainElement(reason))
	}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed(), "an Event %s on the addon of %s", reason, cluster)
}

// cutAgentNetwork takes the network of every proxy-agent pod of cluster
// down (its eth0), as a cut cable would: the processes keep running, their
// connections go silent. It returns what brings the network back.
func cutAgentNetwork(ctx context.Context, cluster string) (restore func(context.Context)) {
	GinkgoHelper()
	var namespaces []string
	for _, pid := range proxyAgentPIDs(ctx, cluster) {
		out, err := exec.CommandContext(ctx, "ip", "netns", "identify", fmt.Sprint(pid)).Output()
		Expect(err).NotTo(HaveOccurred(), "the network namespace of proxy-agent pid %d", pid)
		ns := strings.TrimSpace(string(out))
		Expect(ns).NotTo(BeEmpty(), "proxy-agent pid %d runs in no named network namespace", pid)
		namespaces = append(namespaces, ns)
	}
	for _, ns := range namespaces {
		Expect(netns.IP(ctx, "-n", ns, "link", "set", "eth0", "down")).To(Succeed(), ns)
	}
	return func(ctx context.Context) {
		for _, ns := range namespaces {
			if netns.Exists(ns) {
				Expect(netns.IP(ctx, "-n", ns, "link", "set", "eth0", "up")).To(Succeed(), ns)
			}
		}
	}
}

var _ = Describe("Addon health on the local environment", Ordered, Label("health"), func() {
	var namespace string

	BeforeAll(func(ctx SpecContext) {
		namespace = proxyServerNamespace(ctx)
		DeferCleanup(backToOneServer, namespace)
	})

	It("tells a healthy addon, one short of a proxy-server (Degraded, still Available) and one whose agent is cut off (not Available), naming the tunnel, and recovers", func(ctx SpecContext) {
		By("running three proxy-servers, each holding both clusters' agents and reporting them")
		setReplicas(ctx, 3)
		everyAgentOnEveryServer(ctx, namespace, 3)
		Eventually(func(g Gomega) {
			cms, err := hubKube.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{LabelSelector: healthreport.Selector().String()})
			g.Expect(err).NotTo(HaveOccurred())
			pods := serverPods(ctx, namespace)
			g.Expect(pods).To(HaveLen(3))
			for _, p := range pods {
				var report *healthreport.Report
				for i := range cms.Items {
					if cms.Items[i].Name == healthreport.ConfigMapName(p.Name) {
						r, err := healthreport.FromConfigMap(&cms.Items[i])
						g.Expect(err).NotTo(HaveOccurred())
						report = &r
					}
				}
				g.Expect(report).NotTo(BeNil(), "the report of %s", p.Name)
				g.Expect(report.ServerCount).To(Equal(3))
				for _, c := range localenv.ManagedClusters {
					cluster, ok := report.Cluster(c)
					g.Expect(ok).To(BeTrue(), "%s in the report of %s", c, p.Name)
					g.Expect(cluster.Agents).To(BeNumerically(">=", 1))
					g.Expect(cluster.Certificate).NotTo(BeNil())
				}
			}
		}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(2 * time.Second).Should(Succeed())
		for _, c := range localenv.ManagedClusters {
			expectConditions(ctx, c, metav1.ConditionTrue, addonhealth.ReasonConnected,
				metav1.ConditionFalse, addonhealth.ReasonHealthy, "is connected to 3 of 3 proxy-servers; its client certificate (serial ")
		}

		By("keeping a third proxy-server from running (a pod quota one short), and cutting cluster2's agents off the network")
		pods, err := hubKube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				running++
			}
		}
		quota := &corev1.ResourceQuota{
			ObjectMeta: metav1.ObjectMeta{Name: "e2e-one-server-short", Namespace: namespace},
			Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
				corev1.ResourcePods: *resource.NewQuantity(int64(running-1), resource.DecimalSI),
			}},
		}
		_, err = hubKube.CoreV1().ResourceQuotas(namespace).Create(ctx, quota, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) {
			err := hubKube.CoreV1().ResourceQuotas(namespace).Delete(ctx, quota.Name, metav1.DeleteOptions{})
			if !apierrors.IsNotFound(err) {
				Expect(err).NotTo(HaveOccurred())
			}
		})
		Eventually(func(g Gomega) {
			q, err := hubKube.CoreV1().ResourceQuotas(namespace).Get(ctx, quota.Name, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(q.Status.Used).To(HaveKey(corev1.ResourcePods), "the quota controller counted the pods")
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())
		victim := serverPods(ctx, namespace)[0]
		Expect(hubKube.CoreV1().Pods(namespace).Delete(ctx, victim.Name, metav1.DeleteOptions{})).To(Succeed())
		restore := cutAgentNetwork(ctx, "cluster2")
		DeferCleanup(func(ctx SpecContext) { restore(ctx) })
		cut := time.Now()

		By("cluster1: Degraded, still Available, connected to 2 of 3")
		expectConditions(ctx, "cluster1", metav1.ConditionTrue, addonhealth.ReasonConnected,
			metav1.ConditionTrue, addonhealth.ReasonPartiallyConnected, "the proxy-agent of cluster1 is connected to 2 of 3 proxy-servers")
		By("cluster2: not Available, its agent connected to none")
		expectConditions(ctx, "cluster2", metav1.ConditionFalse, addonhealth.ReasonDisconnected,
			metav1.ConditionTrue, addonhealth.ReasonDisconnected, "the proxy-agent of cluster2 is connected to none of the 3 proxy-servers")
		GinkgoWriter.Printf("cluster2's addon left Available %v after its agents were cut off\n", time.Since(cut).Round(time.Second))
		for _, c := range localenv.ManagedClusters {
			a, d, err := addonConditions(ctx, c)
			Expect(err).NotTo(HaveOccurred())
			GinkgoWriter.Printf("%s: Available %s (%s); Degraded %s (%s): %s\n", c, a.Status, a.Reason, d.Status, d.Reason, d.Message)
		}
		expectEvent(ctx, "cluster1", addonhealth.ReasonPartiallyConnected)
		expectEvent(ctx, "cluster2", addonhealth.ReasonDisconnected)
		Expect(hubKube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: proxyServerSelector})).
			To(HaveField("Items", HaveLen(2)), "the quota kept the third proxy-server from running throughout")

		By("recovering once the quota is gone and cluster2's network is back")
		Expect(hubKube.CoreV1().ResourceQuotas(namespace).Delete(ctx, quota.Name, metav1.DeleteOptions{})).To(Succeed())
		// The ReplicaSet controller backs off after each refused create and
		// does not watch quotas: a change to the ReplicaSet has it try now.
		sets, err := hubKube.AppsV1().ReplicaSets(namespace).List(ctx, metav1.ListOptions{LabelSelector: proxyServerSelector})
		Expect(err).NotTo(HaveOccurred())
		for _, rs := range sets.Items {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{"e2e.cluster-proxy/quota-lifted":%q}}}`, time.Now().UTC().Format(time.RFC3339))
			_, err := hubKube.AppsV1().ReplicaSets(namespace).Patch(ctx, rs.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			Expect(err).NotTo(HaveOccurred())
		}
		restore(ctx)
		for _, c := range localenv.ManagedClusters {
			expectConditions(ctx, c, metav1.ConditionTrue, addonhealth.ReasonConnected,
				metav1.ConditionFalse, addonhealth.ReasonHealthy, "is connected to 3 of 3 proxy-servers")
		}
		expectEvent(ctx, "cluster2", addonhealth.ReasonConnected)
		everyAgentOnEveryServer(ctx, namespace, 3)
	})
})
