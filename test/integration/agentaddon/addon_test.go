package agentaddon_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"open-cluster-management.io/cluster-proxy/internal/agentaddon"
	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

func hostnameEntrypoint(host string, port int32) *proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint {
	return &proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint{
		Type: proxyv1alpha1.EntryPointTypeHostname, Hostname: &proxyv1alpha1.EntryPointHostname{Value: host}, Port: port,
	}
}

// hubCA reads the CA the addon-manager created.
func hubCA(ctx SpecContext) *certs.CA {
	secret := &corev1.Secret{}
	Eventually(func() error {
		return k8sClient.Get(ctx, types.NamespacedName{Namespace: hubNamespace, Name: "cluster-proxy-signer"}, secret)
	}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
	ca, err := certs.ParseCA(secret.Data[signer.CertKey], secret.Data[signer.KeyKey])
	Expect(err).NotTo(HaveOccurred())
	return ca
}

// putServiceProxyCertificate issues a service-proxy serving certificate from
// the hub CA, as `cluster-proxy controllers` does, and stores it in the
// Secret the addon-manager copies to every cluster. It returns the
// certificate PEM.
func putServiceProxyCertificate(ctx SpecContext, commonName string) []byte {
	certPEM, keyPEM, err := hubCA(ctx).Issue(certs.LeafSpec{
		CommonName: commonName, SANs: []string{"*.open-cluster-management.proxy"}, Usage: certs.UsageServing,
	}, time.Now())
	Expect(err).NotTo(HaveOccurred())
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: hubNamespace, Name: proxyv1alpha1.ServiceProxyCertSecretName}}
	_, err = controllerutil.CreateOrUpdate(ctx, k8sClient, secret, func() error {
		secret.Type = corev1.SecretTypeTLS
		secret.Data = map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM}
		return nil
	})
	Expect(err).NotTo(HaveOccurred())
	return certPEM
}

// secretData decodes key of the Secret name among a ManifestWork's objects.
func secretData(g Gomega, objs map[string]*unstructured.Unstructured, name, key string) []byte {
	g.Expect(objs).To(HaveKey("Secret/" + name))
	encoded, _, err := unstructuredString(objs["Secret/"+name].Object, "data", key)
	g.Expect(err).NotTo(HaveOccurred())
	data, err := base64.StdEncoding.DecodeString(encoded)
	g.Expect(err).NotTo(HaveOccurred())
	return data
}

var _ = Describe("The agent addon", Ordered, Label("agentaddon"), func() {
	var serviceProxyCert []byte
	BeforeAll(func(ctx SpecContext) {
		Expect(k8sClient.Create(ctx, newMPC("cluster-proxy", hostnameEntrypoint("proxy.hub.example.com", 443)))).To(Succeed())
		// The manager runs with its default --enable-service-proxy=true; the
		// CA exists once it has reconciled the configuration.
		serviceProxyCert = putServiceProxyCertificate(ctx, "service-proxy-1")
		createCluster(ctx, "cluster1", true)
		createAddon(ctx, "cluster1")
		configure(ctx, "cluster1", mpcConfig("cluster-proxy"))
	})

	It("renders the agent into a ManifestWork in the cluster namespace", func(ctx SpecContext) {
		Eventually(agentDeployment).WithContext(ctx).WithArguments("cluster1").WithTimeout(timeout).Should(Not(BeNil()))
		objs, err := manifests(ctx, "cluster1")
		Expect(err).NotTo(HaveOccurred())
		Expect(objs).To(HaveKey("Namespace/open-cluster-management-cluster-proxy"))
		Expect(objs).To(HaveKey("ServiceAccount/cluster-proxy"))
		Expect(objs).To(HaveKey("Service/cluster1"), "the ExternalName Service of the kube-apiserver proxy")
		Expect(objs).To(HaveKey("Secret/cluster-proxy-ca"))
		caData, _, _ := unstructuredString(objs["Secret/cluster-proxy-ca"].Object, "data", "ca.crt")
		caPEM, err := base64.StdEncoding.DecodeString(caData)
		Expect(err).NotTo(HaveOccurred())
		Expect(caPEM).To(Equal(hubCA(ctx).CertPEM), "agents trust the hub CA")

		d, err := agentDeployment(ctx, "cluster1")
		Expect(err).NotTo(HaveOccurred())
		Expect(d.Namespace).To(Equal("open-cluster-management-cluster-proxy"))
		Expect(*d.Spec.Replicas).To(BeEquivalentTo(1))
		agent := container(d, "proxy-agent")
		Expect(agent.Image).To(Equal("quay.io/open-cluster-management/cluster-proxy:v1.0.0"))
		Expect(agent.Args).To(ContainElements(
			"--proxy-server-host=proxy.hub.example.com",
			"--proxy-server-port=443",
			"--agent-identifiers=host=cluster1&host=cluster1.open-cluster-management-cluster-proxy&host="+proxyv1alpha1.ServiceProxyHost("cluster1"),
			"--ca-cert=/etc/ca/ca.crt", "--agent-cert=/etc/tls/tls.crt", "--agent-key=/etc/tls/tls.key",
		))
		addonAgent := container(d, "addon-agent")
		Expect(addonAgent.Args).To(ContainElements(
			"--hub-kubeconfig=/etc/kubeconfig/kubeconfig", "--cluster-name=cluster1", "--proxy-server-namespace="+hubNamespace))
		Expect(addonAgent.Args).NotTo(ContainElement(HavePrefix("--enable-port-forward-proxy")))
		Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue(proxyv1alpha1.AnnotationConfigurationGeneration, "1"))

		By("running the service-proxy with the hub's certificate and the hub CA for its callers")
		serviceProxy := container(d, "service-proxy")
		Expect(serviceProxy.Command).To(Equal([]string{"/cluster-proxy"}))
		Expect(serviceProxy.Args).To(ContainElements("service-proxy", "--client-ca=/server-cert/ca.crt", "--enable-impersonation=true"))
		Expect(d.Spec.Template.Spec.HostAliases).To(ConsistOf(corev1.HostAlias{IP: "127.0.0.1", Hostnames: []string{proxyv1alpha1.ServiceProxyHost("cluster1")}}))
		Expect(secretData(Default, objs, "cluster-proxy-service-proxy-server-certificates", corev1.TLSCertKey)).To(Equal(serviceProxyCert))
		Expect(secretData(Default, objs, "cluster-proxy-service-proxy-server-certificates", "ca.crt")).To(Equal(hubCA(ctx).CertPEM))
	})

	It("delivers a reissued service-proxy certificate to the cluster without any other change", func(ctx SpecContext) {
		// Nothing the addon-framework watches changes: only the manager's
		// watch on the Secret re-renders the addon.
		reissued := putServiceProxyCertificate(ctx, "service-proxy-2")
		Expect(reissued).NotTo(Equal(serviceProxyCert))
		Eventually(func(g Gomega) {
			objs, err := manifests(ctx, "cluster1")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(secretData(g, objs, "cluster-proxy-service-proxy-server-certificates", corev1.TLSCertKey)).To(Equal(reissued))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
	})

	It("registers the agents with the hub: kube client and the proxy-agent signer naming the cluster", func(ctx SpecContext) {
		ca := hubCA(ctx)
		Eventually(func(g Gomega) {
			addon := &addonapiv1beta1.ManagedClusterAddOn{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: "cluster1", Name: "cluster-proxy"}, addon)).To(Succeed())
			g.Expect(addon.Status.Registrations).To(ContainElement(And(
				HaveField("Type", addonapiv1beta1.CustomSigner),
				HaveField("CustomSigner.SignerName", identity.SignerName),
				HaveField("CustomSigner.Subject.OrganizationUnits", ConsistOf(identity.SignerOU(ca.Cert), "cluster:cluster1")),
			)))
			g.Expect(addon.Status.Registrations).To(ContainElement(HaveField("Type", addonapiv1beta1.KubeClient)))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())

		By("the hub RBAC of the agent")
		Eventually(func() error {
			return k8sClient.Get(ctx, types.NamespacedName{Namespace: "cluster1", Name: agentaddon.AgentRoleName}, &rbacv1.Role{})
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
	})

	It("rolls the agents when the configuration changes", func(ctx SpecContext) {
		// The manager updates the MPC's status concurrently: retry on conflict.
		Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
			mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
			if err := k8sClient.Get(ctx, types.NamespacedName{Name: "cluster-proxy"}, mpc); err != nil {
				return err
			}
			mpc.Spec.ProxyAgent.AdditionalArgs = []string{"--keepalive-time=20s"}
			mpc.Spec.ProxyAgent.Replicas = 2
			return k8sClient.Update(ctx, mpc)
		})).To(Succeed())
		configure(ctx, "cluster1", mpcConfig("cluster-proxy"))
		Eventually(func(g Gomega) {
			d, err := agentDeployment(ctx, "cluster1")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(2))
			g.Expect(container(d, "proxy-agent").Args).To(ContainElement("--keepalive-time=20s"))
			g.Expect(d.Spec.Template.Annotations).To(HaveKeyWithValue(proxyv1alpha1.AnnotationConfigurationGeneration, "2"))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
	})

	It("re-renders when an AddOnDeploymentConfig changes", func(ctx SpecContext) {
		adc := &addonapiv1beta1.AddOnDeploymentConfig{
			ObjectMeta: metav1.ObjectMeta{Namespace: "cluster1", Name: "proxy-config"},
			Spec: addonapiv1beta1.AddOnDeploymentConfigSpec{
				NodePlacement: &addonapiv1beta1.NodePlacement{NodeSelector: map[string]string{"zone": "a"}},
				ProxyConfig:   addonapiv1beta1.ProxyConfig{HTTPSProxy: "http://proxy.example.com:3128", NoProxy: "10.0.0.0/8"},
				Registries: []addonapiv1beta1.ImageMirror{
					{Source: "quay.io/open-cluster-management", Mirror: "mirror.example.com/ocm"},
				},
			},
		}
		Expect(k8sClient.Create(ctx, adc)).To(Succeed())
		configure(ctx, "cluster1", mpcConfig("cluster-proxy"), adcConfig("cluster1", "proxy-config"))
		Eventually(func(g Gomega) {
			d, err := agentDeployment(ctx, "cluster1")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d.Spec.Template.Spec.NodeSelector).To(HaveKeyWithValue("zone", "a"))
			g.Expect(container(d, "proxy-agent").Env).To(ContainElements(
				corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://proxy.example.com:3128"},
				corev1.EnvVar{Name: "NO_PROXY", Value: "10.0.0.0/8"},
			))
			g.Expect(container(d, "proxy-agent").Image).To(Equal("mirror.example.com/ocm/cluster-proxy:v1.0.0"))
			g.Expect(container(d, "addon-agent").Image).To(Equal("mirror.example.com/ocm/cluster-proxy:v1.0.0"))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())

		By("changing it")
		Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(adc), adc)).To(Succeed())
		adc.Spec.NodePlacement.NodeSelector = map[string]string{"zone": "b"}
		adc.Spec.CustomizedVariables = []addonapiv1beta1.CustomizedVariable{{Name: "serviceDomain", Value: "svc.example.internal"}}
		Expect(k8sClient.Update(ctx, adc)).To(Succeed())
		configure(ctx, "cluster1", mpcConfig("cluster-proxy"), adcConfig("cluster1", "proxy-config"))
		Eventually(func(g Gomega) {
			d, err := agentDeployment(ctx, "cluster1")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(d.Spec.Template.Spec.NodeSelector).To(HaveKeyWithValue("zone", "b"))
			objs, err := manifests(ctx, "cluster1")
			g.Expect(err).NotTo(HaveOccurred())
			target, _, _ := unstructuredString(objs["Service/cluster1"].Object, "spec", "externalName")
			g.Expect(target).To(Equal("kubernetes.default.svc.example.internal"))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
	})

	It("re-renders when the cluster's image-registries annotation changes", func(ctx SpecContext) {
		createCluster(ctx, "cluster2", true)
		createAddon(ctx, "cluster2")
		configure(ctx, "cluster2", mpcConfig("cluster-proxy"))
		Eventually(func(g Gomega) {
			d, err := agentDeployment(ctx, "cluster2")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(container(d, "proxy-agent").Image).To(Equal("quay.io/open-cluster-management/cluster-proxy:v1.0.0"))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())

		cluster := &clusterv1.ManagedCluster{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: "cluster2"}, cluster)).To(Succeed())
		cluster.Annotations = map[string]string{"open-cluster-management.io/image-registries": `{"registries":[{"mirror":"annotated.example.com/ocm","source":"quay.io/open-cluster-management"}]}`}
		Expect(k8sClient.Update(ctx, cluster)).To(Succeed())
		Eventually(func(g Gomega) {
			d, err := agentDeployment(ctx, "cluster2")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(container(d, "proxy-agent").Image).To(Equal("annotated.example.com/ocm/cluster-proxy:v1.0.0"))
			g.Expect(container(d, "addon-agent").Image).To(Equal("annotated.example.com/ocm/cluster-proxy:v1.0.0"))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
	})

	It("produces manifests a real managed cluster's API server accepts", func(ctx SpecContext) {
		managed, err := framework.StartAPIServer()
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(managed.Stop)
		managedClient, err := client.New(managed.Config, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())

		objs, err := manifests(ctx, "cluster1")
		Expect(err).NotTo(HaveOccurred())
		// Namespaces first, as the work agent orders them.
		for _, kind := range []string{"Namespace", ""} {
			for key, obj := range objs {
				if (kind == "Namespace") != (obj.GetKind() == "Namespace") {
					continue
				}
				Expect(managedClient.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.DeepCopy()),
					client.FieldOwner("work-agent"), client.ForceOwnership)).To(Succeed(), "server-side apply of %s", key)
			}
		}
	})

	It("leaves an addon whose entrypoint is not ready unrendered, saying why", func(ctx SpecContext) {
		lb := newMPC("pending-lb", &proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint{
			Type: proxyv1alpha1.EntryPointTypeLoadBalancerService,
		})
		lb.Spec.ProxyServer.Namespace = "pending-lb"
		Expect(k8sClient.Create(ctx, lb)).To(Succeed())
		createCluster(ctx, "cluster-pending", true)
		createAddon(ctx, "cluster-pending")
		configure(ctx, "cluster-pending", mpcConfig("pending-lb"))

		Eventually(func(g Gomega) {
			addon := &addonapiv1beta1.ManagedClusterAddOn{}
			g.Expect(k8sClient.Get(ctx, types.NamespacedName{Namespace: "cluster-pending", Name: "cluster-proxy"}, addon)).To(Succeed())
			cond := meta.FindStatusCondition(addon.Status.Conditions, addonapiv1beta1.ManagedClusterAddOnManifestApplied)
			g.Expect(cond).NotTo(BeNil())
			g.Expect(cond.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(cond.Message).To(ContainSubstring("ManagedProxyConfiguration pending-lb: entrypoint not ready"))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
		_, err := manifests(ctx, "cluster-pending")
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no half-rendered agent")
	})
})

// csrRequest builds a CSR for the addon of cluster as a klusterlet's
// registration agent creates it (named addon-..., labelled with cluster and
// addon).
func csrRequest(name, cluster, signerName string, subject pkix.Name) *certificatesv1.CertificateSigningRequest {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	Expect(err).NotTo(HaveOccurred())
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "addon-" + name, Labels: map[string]string{
			"open-cluster-management.io/cluster-name": cluster,
			"open-cluster-management.io/addon-name":   "cluster-proxy",
		}},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: signerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth},
		},
	}
}

// klusterletClient acts as the hub identity of cluster's klusterlet.
func klusterletClient(cluster string) client.Client {
	cfg, err := hub.AddUser("system:open-cluster-management:"+cluster+":agent1",
		"system:open-cluster-management:"+cluster, "system:open-cluster-management:managed-clusters")
	Expect(err).NotTo(HaveOccurred())
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

func proxyAgentSubject(ca *certs.CA, cluster string) pkix.Name {
	return pkix.Name{
		CommonName:         identity.ProxyAgentUser,
		Organization:       []string{identity.AgentGroup},
		OrganizationalUnit: []string{identity.SignerOU(ca.Cert), identity.ClusterOU(cluster)},
	}
}

func isApproved(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

var _ = Describe("Agent certificate requests", Ordered, Label("agentaddon", "csr"), func() {
	BeforeAll(func(ctx SpecContext) {
		// Klusterlets create their CSRs on the hub; let the test's klusterlet
		// identities do so.
		Expect(k8sClient.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "test-klusterlets-create-csrs"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "system:open-cluster-management:managed-clusters"}},
		})).To(Succeed())
		for _, c := range []struct {
			name     string
			accepted bool
		}{{"csr1", true}, {"csr1x", true}, {"rejected", false}} {
			createCluster(ctx, c.name, c.accepted)
			createAddon(ctx, c.name)
		}
	})

	get := func(ctx SpecContext, name string) *certificatesv1.CertificateSigningRequest {
		csr := &certificatesv1.CertificateSigningRequest{}
		Expect(k8sClient.Get(ctx, types.NamespacedName{Name: "addon-" + name}, csr)).To(Succeed())
		return csr
	}

	It("approves and signs the proxy-agent request of the right cluster with a certificate that verifies against the CA", func(ctx SpecContext) {
		ca := hubCA(ctx)
		Expect(klusterletClient("csr1").Create(ctx, csrRequest("good", "csr1", identity.SignerName, proxyAgentSubject(ca, "csr1")))).To(Succeed())
		var csr *certificatesv1.CertificateSigningRequest
		Eventually(func(g Gomega) {
			csr = get(ctx, "good")
			g.Expect(isApproved(csr)).To(BeTrue())
			g.Expect(csr.Status.Certificate).NotTo(BeEmpty())
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())

		cert, err := certs.ParseCertificate(csr.Status.Certificate)
		Expect(err).NotTo(HaveOccurred())
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		Expect(err).NotTo(HaveOccurred())
		Expect(cert.NotAfter.Sub(cert.NotBefore)).To(BeNumerically("~", agentaddon.AgentCertificateValidity, 2*time.Minute))
		cluster, err := identity.ClusterFromCertificate(cert)
		Expect(err).NotTo(HaveOccurred())
		Expect(cluster).To(Equal("csr1"))
	})

	It("approves the addon-agent's kube-client request (signed by the hub's own signer)", func(ctx SpecContext) {
		subject := pkix.Name{CommonName: identity.AddonAgentUser, Organization: []string{identity.AgentGroup}}
		Expect(klusterletClient("csr1").Create(ctx, csrRequest("kube-client", "csr1", certificatesv1.KubeAPIServerClientSignerName, subject))).To(Succeed())
		Eventually(func() bool { return isApproved(get(ctx, "kube-client")) }).WithContext(ctx).WithTimeout(timeout).Should(BeTrue())
	})

	It("never approves a request from another cluster, a prefix look-alike or a cluster the hub does not accept", func(ctx SpecContext) {
		ca := hubCA(ctx)
		By("cluster csr1x's klusterlet asking for csr1")
		Expect(klusterletClient("csr1x").Create(ctx, csrRequest("prefix-longer", "csr1", identity.SignerName, proxyAgentSubject(ca, "csr1")))).To(Succeed())
		By("cluster csr1's klusterlet asking for csr1x")
		Expect(klusterletClient("csr1").Create(ctx, csrRequest("prefix-shorter", "csr1x", identity.SignerName, proxyAgentSubject(ca, "csr1x")))).To(Succeed())
		By("a cluster with hubAcceptsClient false")
		Expect(klusterletClient("rejected").Create(ctx, csrRequest("not-accepted", "rejected", identity.SignerName, proxyAgentSubject(ca, "rejected")))).To(Succeed())
		By("the right cluster asking for another cluster's identity")
		Expect(klusterletClient("csr1").Create(ctx, csrRequest("wrong-subject", "csr1", identity.SignerName, proxyAgentSubject(ca, "csr1x")))).To(Succeed())

		By("the controller looking at each and saying why it does not approve it")
		for name, cause := range map[string]string{
			"prefix-longer":  `requester "system:open-cluster-management:csr1x:agent1" is not the klusterlet of cluster csr1`,
			"prefix-shorter": `requester "system:open-cluster-management:csr1:agent1" is not the klusterlet of cluster csr1x`,
			"not-accepted":   "the hub does not accept cluster rejected (spec.hubAcceptsClient is false)",
			"wrong-subject":  "the request's organizational units",
		} {
			Eventually(func(g Gomega) {
				events := &eventsv1.EventList{}
				// Events on cluster-scoped objects land in the default namespace.
				g.Expect(k8sClient.List(ctx, events, client.InNamespace(metav1.NamespaceDefault))).To(Succeed())
				g.Expect(events.Items).To(ContainElement(And(
					HaveField("Regarding.Kind", "CertificateSigningRequest"),
					HaveField("Regarding.Name", "addon-"+name),
					HaveField("Type", corev1.EventTypeWarning),
					HaveField("Reason", "NotApprovedByClusterProxy"),
					HaveField("Note", ContainSubstring(cause)),
				)), "no refusal Event for CSR addon-%s", name)
			}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
		}

		By("and nothing approving or signing them afterwards")
		Consistently(func(g Gomega) {
			for _, name := range []string{"prefix-longer", "prefix-shorter", "not-accepted", "wrong-subject"} {
				csr := get(ctx, name)
				g.Expect(isApproved(csr)).To(BeFalse(), "CSR %s was approved", name)
				g.Expect(csr.Status.Certificate).To(BeEmpty(), "CSR %s was signed", name)
			}
		}).WithContext(ctx).WithTimeout(5 * time.Second).WithPolling(interval).Should(Succeed())
	})

	It("does not sign a request an administrator approved by hand when it is not what the registration asks for", func(ctx SpecContext) {
		ca := hubCA(ctx)
		Expect(klusterletClient("csr1").Create(ctx, csrRequest("hand-approved", "csr1", identity.SignerName, proxyAgentSubject(ca, "csr1x")))).To(Succeed())
		csr := get(ctx, "hand-approved")
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "ByHand", Message: "approved by an administrator",
		})
		Expect(k8sClient.SubResource("approval").Update(ctx, csr)).To(Succeed())

		Eventually(func(g Gomega) {
			csr := get(ctx, "hand-approved")
			g.Expect(csr.Status.Certificate).To(BeEmpty())
			g.Expect(csr.Status.Conditions).To(ContainElement(And(
				HaveField("Type", certificatesv1.CertificateFailed),
				HaveField("Reason", "RefusedByClusterProxySigner"),
				HaveField("Message", ContainSubstring("organizational units")),
			)))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
	})
})
