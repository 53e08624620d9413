package e2e_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/test/localenv"
)

// signerSecretName is the chart's CA Secret, in the release namespace.
const signerSecretName = "cluster-proxy-signer"

// rotationWait bounds each phase of the rotation: the reports (every 30 s),
// the ManifestWorks, the agents' new certificates (a certificate request
// each) and the controller's settle time (2 minutes).
const rotationWait = 6 * time.Minute

// reloadingHubTLS is the TLS of a proxy-server client that follows the
// Secrets as a long-running user would (client.ReloadingTLSConfig), reading
// them every 2 seconds.
func reloadingHubTLS(ctx context.Context) *tls.Config {
	GinkgoHelper()
	reloadCtx, stop := context.WithCancel(ctx)
	DeferCleanup(stop)
	cfg, err := client.ReloadingTLSConfig(reloadCtx, 2*time.Second, func(ctx context.Context) (*tls.Config, error) {
		return client.TLSConfigForHub(ctx, hubCfg, localenv.MPCName)
	})
	Expect(err).NotTo(HaveOccurred())
	return cfg
}

// podIdentities returns "<namespace>/<name>" -> "<uid>/<restarts>" of the
// pods listed by selector in namespace.
func podIdentities(ctx context.Context, pods func(context.Context) (*corev1.PodList, error)) map[string]string {
	GinkgoHelper()
	list, err := pods(ctx)
	Expect(err).NotTo(HaveOccurred())
	out := map[string]string{}
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		restarts := 0
		for _, s := range p.Status.ContainerStatuses {
			restarts += int(s.RestartCount)
		}
		out[p.Namespace+"/"+p.Name] = string(p.UID) + "/" + strconv.Itoa(restarts)
	}
	return out
}

// rotationPhase reads the CA Secret's rotation phase.
func rotationPhase(ctx context.Context) (signer.Phase, error) {
	s, err := hubKube.CoreV1().Secrets(localenv.ChartNamespace).Get(ctx, signerSecretName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return signer.Phase(s.Annotations[signer.AnnotationPhase]), nil
}

// issuedBy parses certPEM and checks that ca signed it.
func issuedBy(certPEM []byte, ca *x509.Certificate) error {
	cert, err := certs.ParseCertificate(certPEM)
	if err != nil {
		return err
	}
	return cert.CheckSignatureFrom(ca)
}

var _ = Describe("CA rotation on the local environment", Ordered, Label("carotation"), func() {
	It("rotates the CA under a steady stream of tunnelled requests: none fails, no pod restarts, every certificate ends on the new CA and the old CA leaves every bundle", func(ctx SpecContext) {
		namespace := proxyServerNamespace(ctx)
		before, err := hubKube.CoreV1().Secrets(localenv.ChartNamespace).Get(ctx, signerSecretName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		oldCA, err := certs.ParseCertificate(before.Data[signer.CertKey])
		Expect(err).NotTo(HaveOccurred())
		Expect(before.Annotations[signer.AnnotationPhase]).To(BeEmpty(), "no rotation under way")

		By("noting the pods that must not restart")
		serverPods := func(ctx context.Context) (*corev1.PodList, error) {
			return hubKube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: proxyServerSelector})
		}
		pods := map[string]func(context.Context) (*corev1.PodList, error){"proxy-servers": serverPods}
		for _, c := range localenv.ManagedClusters {
			pods["agents of "+c] = func(ctx context.Context) (*corev1.PodList, error) {
				return managed[c].CoreV1().Pods(agentNamespace).List(ctx, metav1.ListOptions{})
			}
		}
		identities := map[string]map[string]string{}
		for what, list := range pods {
			identities[what] = podIdentities(ctx, list)
			Expect(identities[what]).NotTo(BeEmpty(), what)
		}

		By("sending a steady stream of tunnelled requests to both clusters through a pooled Dialer that follows the Secrets")
		d := hubDialerWith(reloadingHubTLS(ctx))
		var requests atomic.Int64
		var failuresMu sync.Mutex
		var failures []string
		streamCtx, stopStream := context.WithCancel(ctx)
		var stream sync.WaitGroup
		DeferCleanup(func() { stopStream(); stream.Wait() })
		for _, c := range localenv.ManagedClusters {
			cs := throughTunnel(d, c)
			_, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
			Expect(err).NotTo(HaveOccurred(), c)
			for range 2 {
				stream.Go(func() {
					for streamCtx.Err() == nil {
						reqCtx, cancel := context.WithTimeout(streamCtx, 10*time.Second)
						_, err := cs.CoreV1().Namespaces().Get(reqCtx, "default", metav1.GetOptions{})
						cancel()
						if streamCtx.Err() != nil {
							return
						}
						requests.Add(1)
						if err != nil {
							failuresMu.Lock()
							failures = append(failures, fmt.Sprintf("%s %s: %v", time.Now().Format(time.TimeOnly), c, err))
							failuresMu.Unlock()
						}
						time.Sleep(100 * time.Millisecond)
					}
				})
			}
		}

		By("asking for a rotation on the CA Secret")
		started := time.Now()
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, signer.AnnotationRotate, "e2e-"+strconv.FormatInt(started.Unix(), 10))
		_, err = hubKube.CoreV1().Secrets(localenv.ChartNamespace).Patch(ctx, signerSecretName, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		Expect(err).NotTo(HaveOccurred())
		for _, phase := range []signer.Phase{signer.PhaseTrusting, signer.PhaseSigning, signer.PhaseNone} {
			Eventually(rotationPhase).WithContext(ctx).WithTimeout(rotationWait).WithPolling(2*time.Second).Should(Equal(phase), "phase %q", phase)
			GinkgoWriter.Printf("CA rotation: phase %q reached after %v\n", phase, time.Since(started).Round(time.Second))
		}
		after, err := hubKube.CoreV1().Secrets(localenv.ChartNamespace).Get(ctx, signerSecretName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		newCA, err := certs.ParseCertificate(after.Data[signer.CertKey])
		Expect(err).NotTo(HaveOccurred())
		Expect(newCA.Equal(oldCA)).To(BeFalse(), "a new CA signs")
		newBundle := certs.EncodeCertificate(newCA)

		By("every certificate on the new CA, the old CA in no bundle")
		Eventually(func(g Gomega) {
			caSecret, err := hubKube.CoreV1().Secrets(namespace).Get(ctx, proxyv1alpha1.CASecretName, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(caSecret.Data[proxyv1alpha1.CASecretKey]).To(Equal(newBundle), "the proxy-server CA bundle")
			for _, name := range []string{"proxy-server", "agent-server", "proxy-client", proxyv1alpha1.UserServerSecretName} {
				s, err := hubKube.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(issuedBy(s.Data[corev1.TLSCertKey], newCA)).To(Succeed(), name)
				g.Expect(s.Data[proxyv1alpha1.CASecretKey]).To(Equal(newBundle), "the bundle of %s", name)
			}
			sp, err := hubKube.CoreV1().Secrets(localenv.ChartNamespace).Get(ctx, proxyv1alpha1.ServiceProxyCertSecretName, metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(issuedBy(sp.Data[corev1.TLSCertKey], newCA)).To(Succeed(), "the service-proxy certificate")
			g.Expect(sp.Data[proxyv1alpha1.CASecretKey]).To(Equal(newBundle), "the service-proxy certificate's bundle")
			for _, c := range localenv.ManagedClusters {
				agentCA, err := managed[c].CoreV1().Secrets(agentNamespace).Get(ctx, "cluster-proxy-ca", metav1.GetOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(agentCA.Data["ca.crt"]).To(Equal(newBundle), "the agents' CA on %s", c)
				agentCert, err := managed[c].CoreV1().Secrets(agentNamespace).Get(ctx, agentCertSecret, metav1.GetOptions{})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(issuedBy(agentCert.Data[corev1.TLSCertKey], newCA)).To(Succeed(), "the proxy-agent certificate of %s", c)
			}
			cms, err := hubKube.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{LabelSelector: healthreport.Selector().String()})
			g.Expect(err).NotTo(HaveOccurred())
			fresh := 0
			for i := range cms.Items {
				r, err := healthreport.FromConfigMap(&cms.Items[i])
				g.Expect(err).NotTo(HaveOccurred())
				if time.Since(r.UpdateTime) > time.Minute {
					continue
				}
				fresh++
				g.Expect(r.TrustedSigners).To(Equal([]string{identity.SignerOU(newCA)}), "the CAs %s trusts", r.ServerID)
				g.Expect(r.ServingSigners).To(Equal([]string{identity.SignerOU(newCA)}), "the CA of %s's certificates", r.ServerID)
				for _, cl := range r.Clusters {
					g.Expect(cl.Certificate.Signer).To(Equal(identity.SignerOU(newCA)), "the proxy-agent of %s on %s", cl.Name, r.ServerID)
				}
			}
			g.Expect(fresh).To(BeNumerically(">=", 1))
		}).WithContext(ctx).WithTimeout(2 * time.Minute).WithPolling(2 * time.Second).Should(Succeed())

		By("no request failed and no pod restarted")
		time.Sleep(2 * time.Second)
		stopStream()
		stream.Wait()
		GinkgoWriter.Printf("CA rotation: %d tunnelled requests, %d failed, in %v\n", requests.Load(), len(failures), time.Since(started).Round(time.Second))
		Expect(failures).To(BeEmpty())
		Expect(requests.Load()).To(BeNumerically(">", 100), "the stream ran")
		for what, list := range pods {
			Expect(podIdentities(ctx, list)).To(Equal(identities[what]), "%s: the same pods, not restarted", what)
		}
		for _, c := range localenv.ManagedClusters {
			expectConditions(ctx, c, metav1.ConditionTrue, "ProxyAgentConnected", metav1.ConditionFalse, "ProxyAgentHealthy", "valid until")
		}

		By("a fresh client of the user-server works with the new CA")
		Expect(localenv.WriteUserServerAccess(ctx, env, clusterProxyBin)).To(Succeed())
		for _, c := range localenv.ManagedClusters {
			Eventually(func() error {
				_, errOut, err := viaUserServer(ctx, c, "get", "namespace", "default", "-o", "name")
				if err != nil {
					return fmt.Errorf("%w: %s", err, errOut)
				}
				return nil
			}).WithContext(ctx).WithTimeout(time.Minute).WithPolling(2*time.Second).Should(Succeed(), "%s through the user-server", c)
		}
	})
})
