package proxyconfig_test

import (
	"crypto/x509"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/entrypoint"
	"open-cluster-management.io/cluster-proxy/internal/proxyconfig"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

var _ = Describe("A default ManagedProxyConfiguration", Label("proxyconfig"), func() {
	const name, ns = "cluster-proxy", "proxy-default"

	It("produces every hub object with the names, args, ports and labels of the spec, and True conditions", func(ctx SpecContext) {
		createMPC(ctx, newMPC(name, ns))
		DeferCleanup(deleteMPC, name)

		for _, typ := range []string{
			proxyv1alpha1.ConditionTypeProxyServerSecretSigned,
			proxyv1alpha1.ConditionTypeAgentServerSecretSigned,
			proxyv1alpha1.ConditionTypeProxyClientSecretSigned,
		} {
			cond := expectCondition(ctx, name, typ, metav1.ConditionTrue, proxyv1alpha1.ReasonSuccessfullySigned)
			Expect(cond.Message).To(HavePrefix("Expiry:"))
		}
		deployed := expectCondition(ctx, name, proxyv1alpha1.ConditionTypeProxyServerDeployed, metav1.ConditionTrue, proxyv1alpha1.ReasonSuccessfullyDeployed)
		Expect(deployed.Message).To(HavePrefix("Replicas: 3"))
		waitObserved(ctx, name)
		mpc := getMPC(ctx, name)
		Expect(mpc.Status.Conditions).NotTo(ContainElement(HaveField("Type", proxyv1alpha1.ConditionTypeUserServerSecretSigned)))

		By("creating the namespace, not owned, so deleting the configuration never deletes it")
		nsObj := &corev1.Namespace{}
		Expect(get(ctx, "", ns, nsObj)).To(Succeed())
		Expect(nsObj.OwnerReferences).To(BeEmpty())

		By("the ServiceAccount")
		sa := &corev1.ServiceAccount{}
		Expect(get(ctx, ns, "cluster-proxy", sa)).To(Succeed())
		Expect(isOwnedBy(sa, mpc)).To(BeTrue())

		By("the in-cluster Service")
		svc := &corev1.Service{}
		Expect(get(ctx, ns, "proxy-entrypoint", svc)).To(Succeed())
		Expect(isOwnedBy(svc, mpc)).To(BeTrue())
		Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeClusterIP))
		Expect(svc.Spec.ClusterIP).NotTo(BeEmpty())
		Expect(svc.Spec.Selector).To(Equal(map[string]string{"proxy.open-cluster-management.io/component-name": "proxy-server"}))
		Expect(svc.Spec.Ports).To(ConsistOf(
			And(HaveField("Name", "proxy-server"), HaveField("Port", int32(8090)), HaveField("TargetPort", intstr.FromInt32(8090))),
			And(HaveField("Name", "agent-server"), HaveField("Port", int32(8091)), HaveField("TargetPort", intstr.FromInt32(8091))),
		))

		By("the CA Secret and the three certificate Secrets, each verifying against it")
		ca := caOf(ctx, ns)
		Expect(ca.Subject.CommonName).To(Equal("open-cluster-management:cluster-proxy"))
		wantSANs := []string{"127.0.0.1", "localhost", "proxy-entrypoint." + ns, "proxy-entrypoint." + ns + ".svc"}
		for secret, usage := range map[string]x509.ExtKeyUsage{
			"proxy-server": x509.ExtKeyUsageServerAuth,
			"agent-server": x509.ExtKeyUsageServerAuth,
			"proxy-client": x509.ExtKeyUsageClientAuth,
		} {
			l := getLeaf(ctx, ns, secret)
			Expect(isOwnedBy(l.secret, mpc)).To(BeTrue())
			Expect(l.secret.Data).To(HaveKey("tls.key"))
			expectVerifies(l, ca, usage)
			Expect(sans(l.cert)).To(ConsistOf(wantSANs))
			Expect(l.cert.NotAfter.Sub(l.cert.NotBefore)).To(BeNumerically("~", 180*24*time.Hour, 2*time.Minute))
			if usage == x509.ExtKeyUsageClientAuth {
				Expect(l.cert.ExtKeyUsage).To(Equal([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}))
			}
		}

		By("the proxy-server Deployment")
		d := getDeployment(ctx, ns, name)
		Expect(isOwnedBy(d, mpc)).To(BeTrue())
		Expect(*d.Spec.Replicas).To(BeEquivalentTo(3))
		Expect(d.Spec.Selector.MatchLabels).To(Equal(map[string]string{"proxy.open-cluster-management.io/component-name": "proxy-server"}))
		pod := d.Spec.Template.Spec
		Expect(d.Spec.Template.Labels).To(HaveKeyWithValue("proxy.open-cluster-management.io/component-name", "proxy-server"))
		Expect(pod.ServiceAccountName).To(Equal("cluster-proxy"))
		Expect(*pod.SecurityContext.RunAsNonRoot).To(BeTrue())
		Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
		Expect(pod.Containers).To(HaveLen(1))
		c := pod.Containers[0]
		Expect(c.Name).To(Equal("proxy-server"))
		Expect(c.Image).To(Equal("quay.io/open-cluster-management/cluster-proxy:v1.0.0"))
		Expect(c.ImagePullPolicy).To(Equal(corev1.PullIfNotPresent))
		Expect(c.Command).To(Equal([]string{"/proxy-server"}))
		Expect(c.Args).To(Equal([]string{
			"--server-count=3",
			"--proxy-strategies=destHost",
			"--server-ca-cert=/etc/server-ca-pki/ca.crt",
			"--server-cert=/etc/server-pki/tls.crt",
			"--server-key=/etc/server-pki/tls.key",
			"--cluster-ca-cert=/etc/server-ca-pki/ca.crt",
			"--cluster-cert=/etc/agent-pki/tls.crt",
			"--cluster-key=/etc/agent-pki/tls.key",
			"--server-port=8090",
			"--agent-port=8091",
			"--health-port=8092",
			"--admin-port=8095",
			"--keepalive-time=30s",
			"--health-report",
			// No TLS profile ConfigMap: its defaults (tlsprofile_test.go).
			"--tls-min-version=VersionTLS12",
		}))
		By("the pod's name, namespace and UID from the downward API, for the health report")
		Expect(c.Env).To(ConsistOf(
			And(HaveField("Name", "POD_NAME"), HaveField("ValueFrom.FieldRef.FieldPath", "metadata.name")),
			And(HaveField("Name", "POD_NAMESPACE"), HaveField("ValueFrom.FieldRef.FieldPath", "metadata.namespace")),
			And(HaveField("Name", "POD_UID"), HaveField("ValueFrom.FieldRef.FieldPath", "metadata.uid")),
		))
		Expect(*c.SecurityContext.AllowPrivilegeEscalation).To(BeFalse())
		Expect(*c.SecurityContext.ReadOnlyRootFilesystem).To(BeTrue())
		Expect(c.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
		Expect(pod.Volumes).To(ConsistOf(
			And(HaveField("Name", "proxy-server-ca"), HaveField("Secret.SecretName", "proxy-server-ca")),
			And(HaveField("Name", "proxy-server-cert"), HaveField("Secret.SecretName", "proxy-server")),
			And(HaveField("Name", "agent-server-cert"), HaveField("Secret.SecretName", "agent-server")),
		))

		By("the port-forward Role and RoleBinding for the agents' group")
		role := &rbacv1.Role{}
		Expect(get(ctx, ns, "cluster-proxy-addon-agent:portforward", role)).To(Succeed())
		Expect(isOwnedBy(role, mpc)).To(BeTrue())
		Expect(role.Rules).To(ContainElement(HaveField("Resources", ContainElement("pods/portforward"))))
		binding := &rbacv1.RoleBinding{}
		Expect(get(ctx, ns, "cluster-proxy-addon-agent:portforward", binding)).To(Succeed())
		Expect(binding.RoleRef.Name).To(Equal("cluster-proxy-addon-agent:portforward"))
		Expect(binding.Subjects).To(ConsistOf(And(
			HaveField("Kind", "Group"), HaveField("Name", "open-cluster-management:cluster-proxy"))))

		By("the proxy-servers may write their health report ConfigMaps in their namespace, and nowhere else")
		proxyServer := "system:serviceaccount:" + ns + ":cluster-proxy"
		for _, verb := range []string{"get", "create", "patch"} {
			Eventually(canI).WithContext(ctx).WithArguments(proxyServer, ns, verb, "configmaps").Should(BeTrue(), verb)
			Expect(canI(ctx, proxyServer, managerNamespace, verb, "configmaps")).To(BeFalse(), "%s in %s", verb, managerNamespace)
		}
		Expect(canI(ctx, proxyServer, ns, "delete", "configmaps")).To(BeFalse())
		Expect(canI(ctx, proxyServer, ns, "get", "secrets")).To(BeFalse())
		healthRole := &rbacv1.Role{}
		Expect(get(ctx, ns, "cluster-proxy-proxy-server:health-report", healthRole)).To(Succeed())
		Expect(isOwnedBy(healthRole, mpc)).To(BeTrue())
	})
})

var _ = Describe("Changing a ManagedProxyConfiguration", Label("proxyconfig"), func() {
	const name, ns = "changes", "proxy-changes"

	It("rolls replicas, image, args and SANs out, and reissues certificates only when their SANs change", func(ctx SpecContext) {
		createMPC(ctx, newMPC(name, ns))
		DeferCleanup(deleteMPC, name)
		waitObserved(ctx, name)
		serverSerial := getLeaf(ctx, ns, "proxy-server").cert.SerialNumber
		clientSerial := getLeaf(ctx, ns, "proxy-client").cert.SerialNumber

		By("an unrelated change does not reissue any certificate")
		updateMPC(ctx, name, func(mpc *proxyv1alpha1.ManagedProxyConfiguration) { mpc.Spec.ProxyAgent.Replicas = 2 })
		waitObserved(ctx, name)
		Consistently(func() string {
			return getLeaf(ctx, ns, "proxy-server").cert.SerialNumber.String()
		}).WithContext(ctx).WithTimeout(2 * time.Second).Should(Equal(serverSerial.String()))

		By("replicas, image and additionalArgs reach the Deployment")
		updateMPC(ctx, name, func(mpc *proxyv1alpha1.ManagedProxyConfiguration) {
			mpc.Spec.ProxyServer.Replicas = 2
			mpc.Spec.ProxyServer.Image = "example.com/cluster-proxy:v2"
			mpc.Spec.ProxyServer.AdditionalArgs = []string{"--keepalive-time=30s"}
		})
		Eventually(func(g Gomega) {
			d := getDeployment(ctx, ns, name)
			g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(2))
			c := d.Spec.Template.Spec.Containers[0]
			g.Expect(c.Image).To(Equal("example.com/cluster-proxy:v2"))
			g.Expect(c.Args).To(ContainElement("--server-count=2"))
			g.Expect(c.Args[len(c.Args)-1]).To(Equal("--keepalive-time=30s"), "additionalArgs come last so they can override")
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
		Expect(getLeaf(ctx, ns, "proxy-server").cert.SerialNumber).To(Equal(serverSerial))

		By("an additional SAN reissues the certificates, and the proxy-server pods are left alone (they re-read them)")
		templateBefore := getDeployment(ctx, ns, name).Spec.Template
		updateMPC(ctx, name, func(mpc *proxyv1alpha1.ManagedProxyConfiguration) {
			mpc.Spec.Authentication.Signer.SelfSigned = &proxyv1alpha1.SelfSignedSigner{AdditionalSANs: []string{"proxy.example.com", "198.18.0.7"}}
		})
		Eventually(func(g Gomega) {
			for _, s := range []string{"proxy-server", "agent-server", "proxy-client"} {
				g.Expect(sans(getLeaf(ctx, ns, s).cert)).To(ContainElements("proxy.example.com", "198.18.0.7"))
			}
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
		Expect(getLeaf(ctx, ns, "proxy-server").cert.SerialNumber).NotTo(Equal(serverSerial))
		Expect(getLeaf(ctx, ns, "proxy-client").cert.SerialNumber).NotTo(Equal(clientSerial))
		Consistently(func() corev1.PodTemplateSpec {
			return getDeployment(ctx, ns, name).Spec.Template
		}).WithContext(ctx).WithTimeout(2*time.Second).Should(Equal(templateBefore), "a reissued certificate rolls no proxy-server pod")

		By("a Hostname entrypoint adds its host name to the certificates")
		updateMPC(ctx, name, func(mpc *proxyv1alpha1.ManagedProxyConfiguration) {
			mpc.Spec.ProxyServer.Entrypoint = &proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint{
				Type:     proxyv1alpha1.EntryPointTypeHostname,
				Hostname: &proxyv1alpha1.EntryPointHostname{Value: "proxy.hub.example.com"},
			}
		})
		Eventually(func() []string {
			return sans(getLeaf(ctx, ns, "agent-server").cert)
		}).WithContext(ctx).WithTimeout(timeout).Should(ContainElement("proxy.hub.example.com"))

		By("user-server certificate follows spec.userServer")
		updateMPC(ctx, name, func(mpc *proxyv1alpha1.ManagedProxyConfiguration) {
			mpc.Spec.UserServer = &proxyv1alpha1.UserServerConfiguration{AdditionalSANs: []string{"users.example.com"}}
		})
		expectCondition(ctx, name, proxyv1alpha1.ConditionTypeUserServerSecretSigned, metav1.ConditionTrue, proxyv1alpha1.ReasonSuccessfullySigned)
		user := getLeaf(ctx, ns, proxyconfig.UserServerSecretName)
		Expect(sans(user.cert)).To(ContainElements("users.example.com", "cluster-proxy-addon-user."+ns+".svc", "localhost"))
		expectVerifies(user, caOf(ctx, ns), x509.ExtKeyUsageServerAuth)
		updateMPC(ctx, name, func(mpc *proxyv1alpha1.ManagedProxyConfiguration) { mpc.Spec.UserServer = nil })
		Eventually(func() bool {
			return apierrors.IsNotFound(get(ctx, ns, proxyconfig.UserServerSecretName, &corev1.Secret{}))
		}).WithContext(ctx).WithTimeout(timeout).Should(BeTrue())
		waitObserved(ctx, name)
		Expect(getMPC(ctx, name).Status.Conditions).NotTo(ContainElement(HaveField("Type", proxyv1alpha1.ConditionTypeUserServerSecretSigned)))
	})
})

var _ = Describe("Certificate rotation", Label("proxyconfig", "rotation"), func() {
	const name, ns = "rotation", "proxy-rotation"

	It("reissues certificates past 80% of their lifetime and after a CA change", func(ctx SpecContext) {
		createMPC(ctx, newMPC(name, ns))
		DeferCleanup(deleteMPC, name)
		waitObserved(ctx, name)
		leaves := []string{"proxy-server", "agent-server", "proxy-client"}
		serials := func() map[string]string {
			out := map[string]string{}
			for _, s := range leaves {
				out[s] = getLeaf(ctx, ns, s).cert.SerialNumber.String()
			}
			return out
		}
		before := getLeaf(ctx, ns, "agent-server").cert
		firstSerials := serials()

		By("at 79% of the lifetime nothing is reissued")
		lifetime := before.NotAfter.Sub(before.NotBefore)
		fakeClock.SetTime(before.NotBefore.Add(lifetime * 79 / 100))
		// The witness: a new generation (a change the hub objects do not
		// depend on) is observed only by a reconcile that completed after the
		// clock moved, and a reconcile writes certificates before its status.
		updateMPC(ctx, name, func(mpc *proxyv1alpha1.ManagedProxyConfiguration) { mpc.Spec.ProxyAgent.Replicas = 2 })
		waitObserved(ctx, name)
		Expect(serials()).To(Equal(firstSerials))

		By("past 80% every leaf is reissued, valid from the (injected) now")
		fakeClock.SetTime(before.NotBefore.Add(lifetime * 81 / 100))
		poke(ctx, name)
		ca := caOf(ctx, ns)
		for _, s := range leaves {
			Eventually(func() string {
				return getLeaf(ctx, ns, s).cert.SerialNumber.String()
			}).WithContext(ctx).WithTimeout(timeout).ShouldNot(Equal(firstSerials[s]))
			l := getLeaf(ctx, ns, s)
			Expect(l.cert.NotBefore).To(BeTemporally(">", before.NotBefore.Add(lifetime*80/100)))
			usage := x509.ExtKeyUsageServerAuth
			if s == "proxy-client" {
				usage = x509.ExtKeyUsageClientAuth
			}
			expectVerifies(l, ca, usage)
		}

		By("a new CA reissues every leaf, and each verifies against the CA in proxy-server-ca")
		oldSerials := serials()
		newCA, err := certs.NewCA(certs.CACommonName, fakeClock.Now(), certs.CAValidity)
		Expect(err).NotTo(HaveOccurred())
		signerSecret := &corev1.Secret{}
		Expect(get(ctx, managerNamespace, signerSecretName, signerSecret)).To(Succeed())
		signerSecret.Data = map[string][]byte{"ca.crt": newCA.CertPEM, "ca.key": newCA.KeyPEM}
		Expect(k8sClient.Update(ctx, signerSecret)).To(Succeed())
		poke(ctx, name)
		Eventually(func() bool { return caOf(ctx, ns).Equal(newCA.Cert) }).WithContext(ctx).WithTimeout(timeout).Should(BeTrue())
		for _, s := range leaves {
			Eventually(func() string {
				return getLeaf(ctx, ns, s).cert.SerialNumber.String()
			}).WithContext(ctx).WithTimeout(timeout).ShouldNot(Equal(oldSerials[s]))
			usage := x509.ExtKeyUsageServerAuth
			if s == "proxy-client" {
				usage = x509.ExtKeyUsageClientAuth
			}
			expectVerifies(getLeaf(ctx, ns, s), newCA.Cert, usage)
		}
	})
})

var _ = Describe("A LoadBalancerService entrypoint", Label("proxyconfig", "loadbalancer"), func() {
	const name, ns = "lb", "proxy-lb"

	It("creates the Service with its annotations, explains the wait, and takes IP and host name ingress into the SANs", func(ctx SpecContext) {
		mpc := newMPC(name, ns)
		mpc.Spec.ProxyServer.Entrypoint = &proxyv1alpha1.ManagedProxyConfigurationProxyServerEntrypoint{
			Type: proxyv1alpha1.EntryPointTypeLoadBalancerService,
			LoadBalancerService: &proxyv1alpha1.EntryPointLoadBalancerService{
				Annotations: []proxyv1alpha1.AnnotationValue{
					{Key: "service.beta.kubernetes.io/aws-load-balancer-type", Value: "nlb"},
					{Key: "example.com/flag"},
				},
			},
			Port: 443,
		}
		createMPC(ctx, mpc)
		DeferCleanup(deleteMPC, name)

		By("the Service exists with every annotation and the entrypoint port")
		svc := &corev1.Service{}
		Eventually(get).WithContext(ctx).WithArguments(ns, "proxy-agent-entrypoint", svc).WithTimeout(timeout).Should(Succeed())
		Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeLoadBalancer))
		Expect(svc.Annotations).To(HaveKeyWithValue("service.beta.kubernetes.io/aws-load-balancer-type", "nlb"))
		Expect(svc.Annotations).To(HaveKeyWithValue("example.com/flag", ""))
		Expect(svc.Spec.Ports).To(ContainElement(And(
			HaveField("Name", "agent-server"), HaveField("Port", int32(443)), HaveField("TargetPort", intstr.FromInt32(8091)))))

		By("the condition explains the wait, and nothing else is held back")
		Eventually(func() string {
			cond := expectCondition(ctx, name, proxyv1alpha1.ConditionTypeAgentServerSecretSigned, metav1.ConditionFalse, proxyconfig.ReasonEntrypointPending)
			return cond.Message
		}).WithContext(ctx).WithTimeout(timeout).Should(ContainSubstring(
			"waiting for load balancer Service " + ns + "/proxy-agent-entrypoint to get an ingress IP or host name"))
		expectCondition(ctx, name, proxyv1alpha1.ConditionTypeProxyServerDeployed, metav1.ConditionTrue, proxyv1alpha1.ReasonSuccessfullyDeployed)
		Expect(getMPC(ctx, name).Status.LastObservedGeneration).To(BeZero(), "a pending entrypoint is not a completed reconcile")

		By("a cloud provider assigning an IP and a host name (the test plays the provider's controller)")
		Expect(get(ctx, ns, "proxy-agent-entrypoint", svc)).To(Succeed())
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.18.0.80"}, {Hostname: "lb.example.com"}}
		Expect(k8sClient.Status().Update(ctx, svc)).To(Succeed())
		expectCondition(ctx, name, proxyv1alpha1.ConditionTypeAgentServerSecretSigned, metav1.ConditionTrue, proxyv1alpha1.ReasonSuccessfullySigned)
		Expect(sans(getLeaf(ctx, ns, "agent-server").cert)).To(ContainElements("198.18.0.80", "lb.example.com"))
		waitObserved(ctx, name)

		By("a host-name-only load balancer works too")
		Expect(get(ctx, ns, "proxy-agent-entrypoint", svc)).To(Succeed())
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{Hostname: "only-host.example.com"}}
		Expect(k8sClient.Status().Update(ctx, svc)).To(Succeed())
		Eventually(func() []string {
			return sans(getLeaf(ctx, ns, "agent-server").cert)
		}).WithContext(ctx).WithTimeout(timeout).Should(ContainElement("only-host.example.com"))
		ep, err := entrypoint.Resolve(ctx, k8sClient, getMPC(ctx, name))
		Expect(err).NotTo(HaveOccurred())
		Expect(ep.Host).To(Equal("only-host.example.com"))
		Expect(ep.Port).To(BeEquivalentTo(443))

		By("annotation changes are kept in sync, including removals")
		updateMPC(ctx, name, func(mpc *proxyv1alpha1.ManagedProxyConfiguration) {
			mpc.Spec.ProxyServer.Entrypoint.LoadBalancerService.Annotations = []proxyv1alpha1.AnnotationValue{
				{Key: "service.beta.kubernetes.io/aws-load-balancer-type", Value: "external"},
			}
		})
		Eventually(func(g Gomega) {
			g.Expect(get(ctx, ns, "proxy-agent-entrypoint", svc)).To(Succeed())
			g.Expect(svc.Annotations).To(HaveKeyWithValue("service.beta.kubernetes.io/aws-load-balancer-type", "external"))
			g.Expect(svc.Annotations).NotTo(HaveKey("example.com/flag"))
		}).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
	})
})

var _ = Describe("Deleting a ManagedProxyConfiguration", Label("proxyconfig", "gc"), func() {
	const name, ns = "deleted", "proxy-deleted"

	It("removes everything it owns through the garbage collector, and keeps the namespace", func(ctx SpecContext) {
		createMPC(ctx, newMPC(name, ns))
		waitObserved(ctx, name)
		owned := map[string]client.Object{
			"cluster-proxy":                         &corev1.ServiceAccount{},
			"proxy-entrypoint":                      &corev1.Service{},
			"proxy-server-ca":                       &corev1.Secret{},
			"proxy-server":                          &corev1.Secret{},
			"agent-server":                          &corev1.Secret{},
			"proxy-client":                          &corev1.Secret{},
			"cluster-proxy-addon-agent:portforward": &rbacv1.Role{},
			name:                                    &appsv1.Deployment{},
		}
		for n, obj := range owned {
			Expect(get(ctx, ns, n, obj)).To(Succeed(), "%T %s", obj, n)
		}

		deleteMPC(ctx, name)
		for n, obj := range owned {
			Eventually(func() bool {
				return apierrors.IsNotFound(get(ctx, ns, n, obj))
			}).WithContext(ctx).WithTimeout(60*time.Second).Should(BeTrue(), "%T %s was not garbage collected", obj, n)
		}
		Expect(get(ctx, "", ns, &corev1.Namespace{})).To(Succeed())
		Expect(get(ctx, managerNamespace, signerSecretName, &corev1.Secret{})).To(Succeed(), "the CA outlives any one configuration")
	})
})

var _ = Describe("Input the reconciler cannot honour", Label("proxyconfig", "errors"), func() {
	It("reports an unsupported signer type on every condition", func(ctx SpecContext) {
		mpc := newMPC("provided", "proxy-provided")
		mpc.Spec.Authentication.Signer.Type = proxyv1alpha1.SignerTypeProvided
		createMPC(ctx, mpc)
		DeferCleanup(deleteMPC, "provided")
		for _, typ := range []string{proxyv1alpha1.ConditionTypeProxyServerDeployed, proxyv1alpha1.ConditionTypeAgentServerSecretSigned} {
			cond := expectCondition(ctx, "provided", typ, metav1.ConditionFalse, proxyconfig.ReasonUnsupportedSigner)
			Expect(cond.Message).To(ContainSubstring("spec.authentication.signer.type Provided is not supported"))
		}
		Expect(apierrors.IsNotFound(get(ctx, "proxy-provided", "provided", &appsv1.Deployment{}))).To(BeTrue())
	})

	It("says why when the namespace cannot be used, and recovers once it can", func(ctx SpecContext) {
		// A namespace stuck terminating: a finalizer holds it until the spec
		// releases it.
		stuck := namespace("proxy-stuck")
		stuck.Spec.Finalizers = []corev1.FinalizerName{"example.com/hold"}
		Expect(k8sClient.Create(ctx, stuck)).To(Succeed())
		Expect(k8sClient.Delete(ctx, stuck)).To(Succeed())

		createMPC(ctx, newMPC("stuck", "proxy-stuck"))
		DeferCleanup(deleteMPC, "stuck")
		cond := expectCondition(ctx, "stuck", proxyv1alpha1.ConditionTypeProxyServerDeployed, metav1.ConditionFalse, proxyconfig.ReasonNamespaceUnavailable)
		Expect(cond.Message).To(ContainSubstring("namespace proxy-stuck is terminating"))

		By("releasing the namespace: the reconciler retries by itself and recreates it")
		Expect(get(ctx, "", "proxy-stuck", stuck)).To(Succeed())
		stuck.Spec.Finalizers = nil
		Expect(k8sClient.SubResource("finalize").Update(ctx, stuck)).To(Succeed())
		expectCondition(ctx, "stuck", proxyv1alpha1.ConditionTypeProxyServerDeployed, metav1.ConditionTrue, proxyv1alpha1.ReasonSuccessfullyDeployed)
	})
})
