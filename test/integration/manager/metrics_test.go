package manager_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/agentaddon"
	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/proxyconfig"
	"open-cluster-management.io/cluster-proxy/internal/servicecert"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// Gauges of the addon-manager's certificate metrics.
const (
	expiryMetric      = "cluster_proxy_manager_certificate_expiry_timestamp_seconds"
	agentExpiryMetric = "cluster_proxy_manager_agent_certificate_expiry_timestamp_seconds"
)

// gauges scrapes the manager's metrics and returns metric name's series,
// each keyed by its label values joined with "/" in label-name order.
func gauges(ctx context.Context, url, name string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, m := range families[name].GetMetric() {
		labels := m.GetLabel()
		sort.Slice(labels, func(i, j int) bool { return labels[i].GetName() < labels[j].GetName() })
		values := make([]string, 0, len(labels))
		for _, l := range labels {
			values = append(values, l.GetValue())
		}
		out[strings.Join(values, "/")] = m.GetGauge().GetValue()
	}
	return out, nil
}

// notAfter is the expiry, in Unix seconds, of the certificate in PEM.
func notAfter(certPEM []byte) float64 {
	GinkgoHelper()
	cert, err := certs.ParseCertificate(certPEM)
	Expect(err).NotTo(HaveOccurred())
	return float64(cert.NotAfter.Unix())
}

// secretNotAfter is notAfter of key of Secret namespace/name.
func secretNotAfter(ctx context.Context, namespace, name, key string) float64 {
	GinkgoHelper()
	s := &corev1.Secret{}
	Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, s)).To(Succeed())
	return notAfter(s.Data[key])
}

// agentCSR is the proxy-agent certificate request cluster's klusterlet
// makes for the addon, as OCM's registration agent names and labels it.
func agentCSR(ca *x509.Certificate, cluster string) *certificatesv1.CertificateSigningRequest {
	GinkgoHelper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{
		CommonName:         identity.ProxyAgentUser,
		Organization:       []string{identity.AgentGroup},
		OrganizationalUnit: []string{identity.SignerOU(ca), identity.ClusterOU(cluster)},
	}}, key)
	Expect(err).NotTo(HaveOccurred())
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "addon-" + cluster + "-proxy-agent", Labels: map[string]string{
			clusterv1.ClusterNameLabelKey: cluster,
			addonapiv1beta1.AddonLabelKey: agentaddon.AddonName,
		}},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: identity.SignerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth},
		},
	}
}

var _ = Describe("The addon-manager's certificate metrics", Label("manager", "metrics"), func() {
	It("report the NotAfter of every certificate it issues, and of each cluster's proxy-agent certificate until the cluster goes", func(ctx SpecContext) {
		const (
			ns      = "metrics-proxy-servers"
			cluster = "metrics-cluster"
		)
		port, err := framework.FreeLoopbackPort()
		Expect(err).NotTo(HaveOccurred())
		url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
		startManager(ctx, "manager-metrics", fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port), "--enable-service-proxy")

		By("a ManagedProxyConfiguration with a user-server certificate, and the service-proxy certificate `cluster-proxy controllers` keeps")
		mpc := newMPC("metrics", ns)
		mpc.Spec.UserServer = &proxyv1alpha1.UserServerConfiguration{}
		createMPC(ctx, mpc)
		expectReconciled(ctx, mpc.Name)
		Eventually(func() error {
			return k8sClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: proxyconfig.UserServerSecretName}, &corev1.Secret{})
		}).WithContext(ctx).WithTimeout(reconcileTimeout).Should(Succeed())
		caSecret := &corev1.Secret{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: managerNamespace, Name: signerSecretName}, caSecret)).To(Succeed())
		ca, err := certs.ParseCA(caSecret.Data[signer.CertKey], caSecret.Data[signer.KeyKey])
		Expect(err).NotTo(HaveOccurred())
		// Issued a day ago, so it expires at another second than the
		// others.
		spCert, spKey, err := ca.Issue(servicecert.Spec, time.Now().Add(-24*time.Hour))
		Expect(err).NotTo(HaveOccurred())
		spSecret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: managerNamespace, Name: proxyv1alpha1.ServiceProxyCertSecretName},
			Type:       corev1.SecretTypeTLS,
			Data:       map[string][]byte{corev1.TLSCertKey: spCert, corev1.TLSPrivateKeyKey: spKey},
		}
		Expect(k8sClient.Create(ctx, spSecret)).To(Succeed())
		DeferCleanup(func(ctx context.Context) {
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, spSecret))).To(Succeed())
		})

		By("a cluster whose klusterlet asks for the proxy-agent certificate, which the addon-manager signs")
		Expect(k8sClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cluster}})).To(Succeed())
		managedCluster := &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: cluster}, Spec: clusterv1.ManagedClusterSpec{HubAcceptsClient: true}}
		Expect(k8sClient.Create(ctx, managedCluster)).To(Succeed())
		DeferCleanup(func(ctx context.Context) {
			Expect(client.IgnoreNotFound(k8sClient.Delete(ctx, managedCluster))).To(Succeed())
		})
		Expect(k8sClient.Create(ctx, &addonapiv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Namespace: cluster, Name: agentaddon.AddonName}})).To(Succeed())
		klusterletGroup := "system:open-cluster-management:" + cluster
		Expect(framework.BindClusterRole(ctx, kubernetes.NewForConfigOrDie(apiServer.Config), "metrics-klusterlet", rbacv1.Subject{Kind: rbacv1.GroupKind, Name: klusterletGroup},
			rbacv1.PolicyRule{APIGroups: []string{certificatesv1.GroupName}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"create", "get"}})).To(Succeed())
		klusterletConfig, err := apiServer.AddUser(klusterletGroup+":agent", klusterletGroup)
		Expect(err).NotTo(HaveOccurred())
		klusterlet, err := client.New(klusterletConfig, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		csr := agentCSR(ca.Cert, cluster)
		Expect(klusterlet.Create(ctx, csr)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Name: csr.Name}, csr)).To(Succeed())
			g.Expect(csr.Status.Certificate).NotTo(BeEmpty())
		}).WithContext(ctx).WithTimeout(reconcileTimeout).Should(Succeed())

		By("the scrape: one series per certificate, each at its NotAfter")
		want := map[string]float64{
			"ca/" + signerSecretName + "/" + managerNamespace:                                           notAfter(caSecret.Data[signer.CertKey]),
			"service-proxy-server/" + proxyv1alpha1.ServiceProxyCertSecretName + "/" + managerNamespace: notAfter(spCert),
		}
		for _, c := range proxyconfig.CertificateSecrets(mpc) {
			want[c.Certificate+"/"+c.Name+"/"+c.Namespace] = secretNotAfter(ctx, c.Namespace, c.Name, corev1.TLSCertKey)
		}
		Expect(want).To(HaveLen(6), "the CA, the service-proxy's and the configuration's 4")
		Eventually(gauges).WithContext(ctx).WithArguments(url, expiryMetric).WithTimeout(reconcileTimeout).Should(Equal(want))
		Expect(gauges(ctx, url, agentExpiryMetric)).To(Equal(map[string]float64{cluster: notAfter(csr.Status.Certificate)}))

		By("a reissued certificate shows its new date")
		proxyClient := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: mpc.Spec.Authentication.Dump.Secrets.SigningProxyClientSecretName}}
		before := want["proxy-client/"+proxyClient.Name+"/"+ns]
		time.Sleep(time.Second) // the new certificate's NotAfter is a second later at least
		Expect(k8sClient.Delete(ctx, proxyClient)).To(Succeed())
		Eventually(func(g Gomega) {
			reissued := &corev1.Secret{}
			g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(proxyClient), reissued)).To(Succeed())
			want["proxy-client/"+proxyClient.Name+"/"+ns] = notAfter(reissued.Data[corev1.TLSCertKey])
			g.Expect(want["proxy-client/"+proxyClient.Name+"/"+ns]).To(BeNumerically(">", before))
			g.Expect(gauges(ctx, url, expiryMetric)).To(Equal(want))
		}).WithContext(ctx).WithTimeout(reconcileTimeout).Should(Succeed())

		By("the cluster's series goes with the cluster, while its CSR stays")
		Expect(k8sClient.Delete(ctx, managedCluster)).To(Succeed())
		Eventually(gauges).WithContext(ctx).WithArguments(url, agentExpiryMetric).WithTimeout(reconcileTimeout).Should(BeEmpty())
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: csr.Name}, &certificatesv1.CertificateSigningRequest{})).To(Succeed())
	})
})
