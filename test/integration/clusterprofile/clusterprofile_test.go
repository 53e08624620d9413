package clusterprofile_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	cpv1alpha1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/clusterprofile"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// gateOn and gateOff are the manager's --feature-gates flag.
const (
	gateOn  = "--feature-gates=ClusterProfile=true"
	gateOff = "--feature-gates=ClusterProfile=false"
)

// providerName is the access provider the manager owns.
const providerName = "open-cluster-management"

// otherProvider is an access provider another party wrote.
var otherProvider = cpv1alpha1.AccessProvider{
	Name: "kubeconfig",
	Cluster: clientcmdv1.Cluster{
		Server:                   "https://cluster3.example:6443",
		CertificateAuthorityData: []byte("not ours"),
		TLSServerName:            "api.cluster3.example",
	},
}

// expectProvider waits until the ClusterProfile name holds exactly the
// access provider the manager publishes for it, trusting caPEM, and returns
// the profile.
func expectProvider(ctx context.Context, name string, caPEM []byte) *cpv1alpha1.ClusterProfile {
	GinkgoHelper()
	var profile *cpv1alpha1.ClusterProfile
	Eventually(func(g Gomega) {
		var err error
		profile, err = getProfile(ctx, name)
		g.Expect(err).NotTo(HaveOccurred())
		p := provider(profile)
		g.Expect(p).NotTo(BeNil(), "no %s access provider in %v", providerName, profile.Status.AccessProviders)
		g.Expect(p.Cluster.Server).To(Equal("https://cluster-proxy-addon-user." + proxyNamespace + ":9092/" + name))
		g.Expect(p.Cluster.CertificateAuthorityData).To(Equal(caPEM))
		g.Expect(p.Cluster.Extensions).To(HaveLen(1))
		g.Expect(p.Cluster.Extensions[0].Name).To(Equal("client.authentication.k8s.io/exec"))
		g.Expect(p.Cluster.Extensions[0].Extension.Raw).To(MatchJSON(`{"clusterName": "` + name + `"}`))
	}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
	return profile
}

// expectNoProvider checks, for a while, that the ClusterProfile name has
// no access provider of the manager's.
func expectNoProvider(ctx context.Context, name string) {
	GinkgoHelper()
	Consistently(func(g Gomega) {
		profile, err := getProfile(ctx, name)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(provider(profile)).To(BeNil(), "ClusterProfile %s got %v", name, profile.Status.AccessProviders)
	}).WithContext(ctx).WithTimeout(quiet).Should(Succeed())
}

// provider returns the manager's access provider of profile, or nil.
func provider(profile *cpv1alpha1.ClusterProfile) *cpv1alpha1.AccessProvider {
	for i := range profile.Status.AccessProviders {
		if profile.Status.AccessProviders[i].Name == providerName {
			return &profile.Status.AccessProviders[i]
		}
	}
	return nil
}

// jsonOf is v as JSON, to compare objects as the API server stores them.
func jsonOf(v any) string {
	GinkgoHelper()
	data, err := json.Marshal(v)
	Expect(err).NotTo(HaveOccurred())
	return string(data)
}

// serveUserServerCert serves HTTPS on loopback with the certificate and key
// of secret, as the user-server does, answering every request with its
// path. It stops when the spec ends.
func serveUserServerCert(secret *corev1.Secret) string {
	GinkgoHelper()
	return serveTLS(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
}

func serveTLS(certPEM, keyPEM []byte) string {
	GinkgoHelper()
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	Expect(err).NotTo(HaveOccurred())
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	DeferCleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// getThroughProvider sends GET <server>/version, as a client built from the
// access provider p does, to the HTTPS server listening at addr (standing in
// for the user-server's Service address): TLS verified with p's CA data
// against p's host name.
func getThroughProvider(ctx context.Context, p *cpv1alpha1.AccessProvider, addr string) (string, error) {
	server, err := url.Parse(p.Cluster.Server)
	Expect(err).NotTo(HaveOccurred())
	cfg := &rest.Config{
		Host: "https://" + addr + server.Path,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:     p.Cluster.CertificateAuthorityData,
			ServerName: server.Hostname(),
		},
		Timeout: 10 * time.Second,
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	Expect(err).NotTo(HaveOccurred())
	defer httpClient.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/version", nil)
	Expect(err).NotTo(HaveOccurred())
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// handshake dials addr with only caPEM as root, verifying serverName.
func handshake(addr, serverName string, caPEM []byte) error {
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(caPEM)).To(BeTrue())
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err != nil {
		return err
	}
	return conn.Close()
}

var _ = Describe("The ClusterProfile feature gate", Ordered, Label("clusterprofile", "manager"), func() {
	It("on without the ClusterProfile CRD: the manager does all else, says it waits for the CRD, and starts publishing once it is installed", func(ctx SpecContext) {
		m := startManager(ctx, "manager-gate-on-no-crd", gateOn)

		By("reconciling the ManagedProxyConfiguration: the user-server's certificate is issued")
		createConfiguration(ctx, true)
		userServerSecret(ctx)

		By("logging that it waits for the CRD, naming it")
		Eventually(m.log).WithTimeout(timeout).Should(And(
			ContainSubstring("the ClusterProfile CRD is not installed; the ClusterProfile reconciler starts once it is"),
			ContainSubstring("clusterprofiles.multicluster.x-k8s.io"),
		))
		Consistently(m.Done()).WithTimeout(quiet).ShouldNot(BeClosed(), "the manager must keep running")

		By("installing the CRD: the same manager starts the reconciler and publishes access")
		installClusterProfileCRD(ctx)
		createProfile(ctx, "cluster1", profileLabels("cluster1"))
		expectProvider(ctx, "cluster1", userServerSecret(ctx).Data[proxyv1alpha1.CASecretKey])
		Expect(m.log()).To(ContainSubstring("ClusterProfiles are served: starting the ClusterProfile reconciler"))
		m.stop()
	})

	It("off: a matching ClusterProfile stays untouched while the manager reconciles; on, the same profile is filled in", func(ctx SpecContext) {
		off := startManager(ctx, "manager-gate-off", gateOff)
		createProfile(ctx, "cluster2", profileLabels("cluster2"))

		By("the manager running: it reissues the user-server's Secret once deleted")
		old := userServerSecret(ctx)
		Expect(k8sClient.Delete(ctx, old)).To(Succeed())
		Eventually(func(g Gomega) {
			s := &corev1.Secret{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: proxyNamespace, Name: proxyv1alpha1.UserServerSecretName}, s)).To(Succeed())
			g.Expect(s.UID).NotTo(Equal(old.UID))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())

		By("leaving the ClusterProfile alone")
		expectNoProvider(ctx, "cluster2")
		profile, err := getProfile(ctx, "cluster2")
		Expect(err).NotTo(HaveOccurred())
		Expect(profile.Status.AccessProviders).To(BeEmpty())
		Expect(off.log()).To(ContainSubstring("clusterProfile=false"), "the options logged")
		Expect(off.log()).NotTo(Or(
			ContainSubstring("ClusterProfile CRD"), ContainSubstring("ClusterProfile reconciler"), ContainSubstring(`controller="clusterprofile"`), ContainSubstring(`logger="clusterprofile"`),
		), "with the gate off nothing about ClusterProfiles runs")
		off.stop()

		By("the gate on: the same ClusterProfile gets the provider")
		startManager(ctx, "manager-gate-on", gateOn)
		expectProvider(ctx, "cluster2", userServerSecret(ctx).Data[proxyv1alpha1.CASecretKey])
	})

	It("on: publishes only on the ClusterProfiles OCM manages, and keeps the other providers as they are", func(ctx SpecContext) {
		startManager(ctx, "manager-gate-on", gateOn)
		caPEM := userServerSecret(ctx).Data[proxyv1alpha1.CASecretKey]

		unnamed := createProfile(ctx, "unnamed", map[string]string{cpv1alpha1.LabelClusterManagerKey: "open-cluster-management"}, otherProvider)
		foreign := createProfile(ctx, "foreign", map[string]string{
			cpv1alpha1.LabelClusterManagerKey:         "fleet",
			"open-cluster-management.io/cluster-name": "foreign",
		})
		stale := cpv1alpha1.AccessProvider{Name: providerName, Cluster: clientcmdv1.Cluster{Server: "https://stale.example/cluster3"}}
		createProfile(ctx, "cluster3", profileLabels("cluster3"), otherProvider, stale)

		By("replacing the stale provider in place and keeping the other one unchanged")
		profile := expectProvider(ctx, "cluster3", caPEM)
		Expect(profile.Status.AccessProviders).To(HaveLen(2))
		Expect(jsonOf(profile.Status.AccessProviders[0])).To(MatchJSON(jsonOf(otherProvider)))
		Expect(profile.Status.AccessProviders[1].Name).To(Equal(providerName))

		By("leaving a profile without the cluster-name label and another cluster manager's profile alone")
		for _, p := range []*cpv1alpha1.ClusterProfile{unnamed, foreign} {
			expectNoProvider(ctx, p.Name)
			got, err := getProfile(ctx, p.Name)
			Expect(err).NotTo(HaveOccurred())
			Expect(got.ResourceVersion).To(Equal(p.ResourceVersion), "ClusterProfile %s must not be written", p.Name)
		}

		By("putting the provider back when someone edits it, still keeping the other one")
		profile, err := getProfile(ctx, "cluster3")
		Expect(err).NotTo(HaveOccurred())
		profile.Status.AccessProviders[1].Cluster.Server = "https://edited.example"
		Expect(k8sClient.Status().Update(ctx, profile)).To(Succeed())
		profile = expectProvider(ctx, "cluster3", caPEM)
		Expect(jsonOf(profile.Status.AccessProviders[0])).To(MatchJSON(jsonOf(otherProvider)))
	})

	It("on: fills a profile in as soon as the user-server's Secret appears, not at the periodic recheck", func(ctx SpecContext) {
		m := startManager(ctx, "manager-gate-on", gateOn)

		By("switching the user-server off: its Secret goes")
		setUserServer(ctx, false)
		Eventually(func() bool {
			err := k8sClient.Get(ctx, types.NamespacedName{Namespace: proxyNamespace, Name: proxyv1alpha1.UserServerSecretName}, &corev1.Secret{})
			return apierrors.IsNotFound(err)
		}).WithContext(ctx).WithTimeout(timeout).Should(BeTrue())

		By("a new profile waits, saying why")
		created := time.Now()
		createProfile(ctx, "cluster4", profileLabels("cluster4"))
		expectNoProvider(ctx, "cluster4")
		Eventually(m.log).WithTimeout(timeout).Should(ContainSubstring("the user-server is not enabled"))

		By("switching the user-server on: the profile is filled in well before the one-minute recheck")
		setUserServer(ctx, true)
		expectProvider(ctx, "cluster4", userServerSecret(ctx).Data[proxyv1alpha1.CASecretKey])
		Expect(time.Since(created)).To(BeNumerically("<", clusterprofile.MissingRecheck),
			"filled in by the Secret's watch, not by the recheck a minute after the profile's first reconcile")
	})

	It("on: the published CA verifies the user-server's serving certificate in a TLS handshake, also after it is reissued", func(ctx SpecContext) {
		startManager(ctx, "manager-gate-on", gateOn)
		secret := userServerSecret(ctx)
		profile := expectProvider(ctx, "cluster1", secret.Data[proxyv1alpha1.CASecretKey])
		p := provider(profile)
		host, err := url.Parse(p.Cluster.Server)
		Expect(err).NotTo(HaveOccurred())

		By("a client built from the provider reaching a server with the user-server's certificate")
		addr := serveUserServerCert(secret)
		Expect(getThroughProvider(ctx, p, addr)).To(Equal("/cluster1/version"))

		By("the same client refusing a certificate for the same names from another CA")
		other, err := certs.NewCA("another-ca", time.Now(), time.Hour)
		Expect(err).NotTo(HaveOccurred())
		certPEM, keyPEM, err := other.Issue(certs.LeafSpec{
			CommonName: "cluster-proxy-user-server", SANs: []string{host.Hostname()}, Usage: certs.UsageServing,
		}, time.Now())
		Expect(err).NotTo(HaveOccurred())
		_, err = getThroughProvider(ctx, p, serveTLS(certPEM, keyPEM))
		Expect(err).To(MatchError(ContainSubstring("certificate signed by unknown authority")))

		By("the certificate reissued (Secret deleted): the provider is unchanged and still verifies it; the old leaf as a trust anchor would not")
		Expect(k8sClient.Delete(ctx, secret)).To(Succeed())
		var reissued *corev1.Secret
		Eventually(func(g Gomega) {
			reissued = &corev1.Secret{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: proxyNamespace, Name: proxyv1alpha1.UserServerSecretName}, reissued)).To(Succeed())
			g.Expect(reissued.UID).NotTo(Equal(secret.UID))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
		Expect(reissued.Data[corev1.TLSCertKey]).NotTo(Equal(secret.Data[corev1.TLSCertKey]))
		newAddr := serveUserServerCert(reissued)
		Expect(handshake(newAddr, host.Hostname(), secret.Data[corev1.TLSCertKey])).To(HaveOccurred(),
			"a provider holding the old leaf certificate breaks at the reissue")
		profile = expectProvider(ctx, "cluster1", reissued.Data[proxyv1alpha1.CASecretKey])
		Expect(provider(profile).Cluster.CertificateAuthorityData).To(Equal(p.Cluster.CertificateAuthorityData))
		Expect(getThroughProvider(ctx, provider(profile), newAddr)).To(Equal("/cluster1/version"))
	})
})
