package addonhealth_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// snapshot is a proxy-server's state the specs change.
type snapshot struct {
	mu       sync.Mutex
	clusters []healthreport.Cluster
	// calls counts the Writer's reads.
	calls int
}

func (s *snapshot) set(clusters ...healthreport.Cluster) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusters = clusters
}

func (s *snapshot) report() healthreport.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return healthreport.Report{ServerID: "server-a", ServerCount: 2, Clusters: append([]healthreport.Cluster(nil), s.clusters...)}
}

// createPod creates a proxy-server pod object (no kubelet runs it) in
// namespace and returns it.
func createPod(ctx context.Context, namespace, name string) *corev1.Pod {
	GinkgoHelper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name,
			Labels: map[string]string{proxyv1alpha1.LabelComponentName: proxyv1alpha1.ComponentProxyServer}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "proxy-server", Image: "quay.io/open-cluster-management/cluster-proxy:test"}}},
	}
	Expect(k8sClient.Create(ctx, pod)).To(Succeed())
	return pod
}

// readReport reads and decodes the report of pod in namespace.
func readReport(ctx context.Context, namespace, pod string) (*corev1.ConfigMap, healthreport.Report, error) {
	cm, err := kubeClient.CoreV1().ConfigMaps(namespace).Get(ctx, healthreport.ConfigMapName(pod), metav1.GetOptions{})
	if err != nil {
		return nil, healthreport.Report{}, err
	}
	r, err := healthreport.FromConfigMap(cm)
	return cm, r, err
}

// runWriter runs w until the spec ends and checks that Run returns when
// its context is cancelled.
func runWriter(ctx context.Context, w *healthreport.Writer) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	DeferCleanup(func() {
		cancel()
		Eventually(done).WithTimeout(timeout).Should(Receive(Not(HaveOccurred())), "Run did not return after its context was cancelled")
	})
}

// writerSpecs numbers the Writer specs' namespaces.
var writerSpecs int

var _ = Describe("The health report Writer", Label("healthreport"), func() {
	var namespace string

	BeforeEach(func(ctx SpecContext) {
		writerSpecs++
		namespace = fmt.Sprintf("writer-%d", writerSpecs)
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})).To(Succeed())
	})

	It("writes its pod's report ConfigMap at start, on a trigger and every period, and the garbage collector removes it with the pod", func(ctx SpecContext) {
		pod := createPod(ctx, namespace, "proxy-server-7d9f-abcde")
		clock := clocktesting.NewFakeClock(time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC))
		state := &snapshot{}
		notAfter := time.Date(2026, time.August, 28, 12, 0, 0, 0, time.UTC)
		state.set(healthreport.Cluster{Name: "cluster1", Agents: 2, Certificate: &healthreport.Certificate{
			NotBefore: notAfter.Add(-180 * 24 * time.Hour), NotAfter: notAfter, Serial: "1a2b",
			Issuer: "open-cluster-management:cluster-proxy", Signer: "signer-0123456789abcdef0123456789abcdef",
		}})
		w, err := healthreport.NewWriter(healthreport.WriterOptions{
			Client: kubeClient.CoreV1(), Namespace: namespace, Owner: healthreport.Owner{PodName: pod.Name, PodUID: pod.UID},
			Period: time.Minute, Snapshot: state.report, Clock: clock,
		})
		Expect(err).NotTo(HaveOccurred())
		runWriter(ctx, w)

		By("writing at start")
		var cm *corev1.ConfigMap
		Eventually(func(g Gomega) {
			var r healthreport.Report
			var err error
			cm, r, err = readReport(ctx, namespace, pod.Name)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r.Version).To(Equal(healthreport.Version))
			g.Expect(r.ServerID).To(Equal("server-a"))
			g.Expect(r.ServerCount).To(Equal(2))
			g.Expect(r.UpdateTime).To(BeTemporally("==", clock.Now()))
			g.Expect(r.Clusters).To(HaveLen(1))
			g.Expect(r.Clusters[0].Name).To(Equal("cluster1"))
			g.Expect(r.Clusters[0].Agents).To(Equal(2))
			g.Expect(r.Clusters[0].Certificate.NotAfter).To(BeTemporally("==", notAfter))
			g.Expect(r.Clusters[0].Certificate.Signer).To(Equal("signer-0123456789abcdef0123456789abcdef"))
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
		Expect(cm.Labels).To(Equal(healthreport.Labels()))
		Expect(cm.Data).To(HaveKey(healthreport.DataKey))
		Expect(cm.OwnerReferences).To(ConsistOf(And(
			HaveField("Kind", "Pod"), HaveField("Name", pod.Name), HaveField("UID", pod.UID),
			HaveField("BlockOwnerDeletion", BeNil()),
		)))

		By("not writing again before a trigger or the period")
		state.set(healthreport.Cluster{Name: "cluster1", Agents: 1}, healthreport.Cluster{Name: "cluster2", Agents: 1})
		Consistently(func(g Gomega) {
			_, r, err := readReport(ctx, namespace, pod.Name)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r.Clusters).To(HaveLen(1))
		}).WithContext(ctx).WithTimeout(quiet).WithPolling(interval).Should(Succeed())

		By("writing on a trigger")
		w.Trigger()
		Eventually(func(g Gomega) {
			_, r, err := readReport(ctx, namespace, pod.Name)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r.Clusters).To(HaveLen(2))
			g.Expect(r.UpdateTime).To(BeTemporally("==", clock.Now()))
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())

		By("writing every period")
		state.set()
		clock.Step(time.Minute)
		Eventually(func(g Gomega) {
			_, r, err := readReport(ctx, namespace, pod.Name)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r.Clusters).To(BeEmpty())
			g.Expect(r.UpdateTime).To(BeTemporally("==", clock.Now()))
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())

		By("the garbage collector deleting the report once the pod is gone")
		// No kubelet runs the pod: delete it at once.
		Expect(k8sClient.Delete(ctx, pod, client.GracePeriodSeconds(0))).To(Succeed())
		Eventually(func() error {
			_, err := kubeClient.CoreV1().ConfigMaps(namespace).Get(ctx, healthreport.ConfigMapName(pod.Name), metav1.GetOptions{})
			return err
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Satisfy(apierrors.IsNotFound))
	})

	It("moves a report too large to read into gzipped binaryData and back", func(ctx SpecContext) {
		state := &snapshot{}
		state.set(healthreport.Cluster{Name: "cluster1", Agents: 1})
		w, err := healthreport.NewWriter(healthreport.WriterOptions{
			Client: kubeClient.CoreV1(), Namespace: namespace, Owner: healthreport.Owner{PodName: "outside-a-pod"},
			Period: time.Hour, Snapshot: state.report,
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(w.Write(ctx)).To(Succeed())
		cm, _, err := readReport(ctx, namespace, "outside-a-pod")
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.OwnerReferences).To(BeEmpty(), "no pod, no owner")
		Expect(cm.Data).To(HaveKey(healthreport.DataKey))

		By("writing 10,000 clusters")
		many := make([]healthreport.Cluster, 0, 10000)
		for i := range 10000 {
			many = append(many, healthreport.Cluster{Name: fmt.Sprintf("cluster-%05d", i), Agents: 1, Certificate: &healthreport.Certificate{
				NotBefore: time.Date(2026, time.March, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2026, time.August, 28, 0, 0, 0, 0, time.UTC),
				Serial: fmt.Sprintf("%032x", i), Issuer: "open-cluster-management:cluster-proxy", Signer: "signer-0123456789abcdef0123456789abcdef",
			}})
		}
		state.set(many...)
		Expect(w.Write(ctx)).To(Succeed())
		cm, r, err := readReport(ctx, namespace, "outside-a-pod")
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.Data).NotTo(HaveKey(healthreport.DataKey), "the readable copy is gone")
		Expect(cm.BinaryData).To(HaveKey(healthreport.GzipDataKey))
		Expect(r.Clusters).To(HaveLen(10000))
		c, ok := r.Cluster("cluster-09999")
		Expect(ok).To(BeTrue())
		Expect(c.Certificate.Serial).To(Equal(fmt.Sprintf("%032x", 9999)))

		By("writing a small report again")
		state.set(healthreport.Cluster{Name: "cluster2", Agents: 1})
		Expect(w.Write(ctx)).To(Succeed())
		cm, r, err = readReport(ctx, namespace, "outside-a-pod")
		Expect(err).NotTo(HaveOccurred())
		Expect(cm.BinaryData).To(BeEmpty())
		Expect(r.Clusters).To(ConsistOf(HaveField("Name", "cluster2")))
	})

	It("says which ConfigMap it could not write, and writes nothing it would not read", func(ctx SpecContext) {
		state := &snapshot{}
		w, err := healthreport.NewWriter(healthreport.WriterOptions{
			Client: kubeClient.CoreV1(), Namespace: "no-such-namespace", Owner: healthreport.Owner{PodName: "p"},
			Snapshot: state.report,
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(w.Write(ctx)).To(MatchError(And(
			ContainSubstring("failed to write ConfigMap no-such-namespace/cluster-proxy-health-p"),
			ContainSubstring(`namespaces "no-such-namespace" not found`))))

		w, err = healthreport.NewWriter(healthreport.WriterOptions{
			Client: kubeClient.CoreV1(), Namespace: namespace, Owner: healthreport.Owner{PodName: "p"},
			Snapshot: func() healthreport.Report {
				return healthreport.Report{ServerID: "s", ServerCount: 1, Clusters: []healthreport.Cluster{{Name: "Not_A_Cluster", Agents: 1}}}
			},
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(w.Write(ctx)).To(MatchError(ContainSubstring(`clusters[0].name: Invalid value: "Not_A_Cluster"`)))
		_, err = kubeClient.CoreV1().ConfigMaps(namespace).Get(ctx, healthreport.ConfigMapName("p"), metav1.GetOptions{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "an invalid report must not be written: %v", err)
		Expect(state.calls).To(Equal(1), "the first writer read its snapshot once")
	})
})
