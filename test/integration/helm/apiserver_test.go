package helm_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"open-cluster-management.io/addon-framework/pkg/utils"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	workv1 "open-cluster-management.io/api/work/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"open-cluster-management.io/cluster-proxy/internal/addonmanager"
	"open-cluster-management.io/cluster-proxy/internal/agentaddon"
	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	timeout  = 60 * time.Second
	interval = 200 * time.Millisecond
	// fieldOwner applies the rendered objects, as helm would own them.
	fieldOwner = "cluster-proxy-chart-test"
	// clusterName is the managed cluster the addon-manager serves.
	clusterName = "cluster1"
)

// managerUser is the addon-manager's ServiceAccount as the API server
// authenticates it.
var managerUser = struct {
	name   string
	groups []string
}{
	name:   "system:serviceaccount:" + releaseNamespace + ":cluster-proxy-addon-manager",
	groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + releaseNamespace, "system:authenticated"},
}

// hubEnv is a hub kube-apiserver with the chart's and OCM's hub CRDs.
type hubEnv struct {
	server *framework.APIServer
	cfg    *rest.Config
	client client.Client
	scheme *runtime.Scheme
}

// startHub starts a hub kube-apiserver (framework.StartAPIServer runs the
// OwnerReferencesPermissionEnforcement admission plugin, as production hubs
// do, so the addon-manager's RBAC must grant finalizer updates) with the
// OCM hub CRDs.
func startHub() *hubEnv {
	ocmCRDs, err := framework.OCMHubCRDs(GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
	server, err := framework.StartAPIServer(ocmCRDs)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(server.Stop)
	cfg := server.Config

	scheme, err := addonmanager.NewScheme()
	Expect(err).NotTo(HaveOccurred())
	Expect(workv1.Install(scheme)).To(Succeed())
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return &hubEnv{server: server, cfg: cfg, client: c, scheme: scheme}
}

// apply server-side applies every object, as the admin, with no dry-run.
func (h *hubEnv) apply(ctx context.Context, objs rendered) {
	for _, u := range objs {
		Expect(h.client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u.DeepCopy()),
			client.FieldOwner(fieldOwner), client.ForceOwnership)).To(Succeed(), "server-side apply of %s", key(u))
	}
}

// can asks the API server whether the addon-manager's ServiceAccount may do
// verb on the resource ("resource" or "resource/subresource") of group,
// named name, in namespace ("" for cluster-scoped or all namespaces).
func (h *hubEnv) can(ctx context.Context, namespace, verb, group, resource, name string) bool {
	res, sub, _ := strings.Cut(resource, "/")
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   managerUser.name,
		Groups: managerUser.groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Verb: verb, Group: group, Resource: res, Subresource: sub, Name: name,
		},
	}}
	Expect(h.client.Create(ctx, review)).To(Succeed())
	return review.Status.Allowed
}

// asManager is a client configuration that acts as the addon-manager's
// ServiceAccount (the admin impersonating it).
func (h *hubEnv) asManager() *rest.Config {
	cfg := rest.CopyConfig(h.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: managerUser.name, Groups: managerUser.groups}
	return cfg
}

// allVerbs are what a "*" verb stands for in the checks.
var allVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

var _ = Describe("The default render on a hub kube-apiserver", Ordered, Label("helm", "apiserver"), func() {
	var hub *hubEnv
	var objs rendered

	BeforeAll(func(ctx SpecContext) {
		hub = startHub()
		Expect(hub.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace}})).To(Succeed())
		objs = mustRender(ctx)
	})

	It("is accepted by the API server: server-side apply of every object", func(ctx SpecContext) {
		hub.apply(ctx, objs)
		for _, u := range objs {
			got := u.DeepCopy()
			Expect(hub.client.Get(ctx, client.ObjectKeyFromObject(u), got)).To(Succeed(), key(u))
		}
		By("applying it again, unchanged")
		hub.apply(ctx, objs)
	})

	It("lets the manager's ServiceAccount do everything the generated role lists but the ClusterProfile rules, and no more", func(ctx SpecContext) {
		cluster, namespaced := generatedRBAC()
		check := func(namespace string, gs []grant) {
			for _, g := range gs {
				verbs := []string{g.verb}
				if g.verb == "*" {
					verbs = allVerbs
				}
				for _, verb := range verbs {
					Expect(hub.can(ctx, namespace, verb, g.group, g.resource, g.name)).To(BeTrue(),
						"%s %s.%s %s in namespace %q", verb, g.resource, g.group, g.name, namespace)
				}
			}
		}
		// The default render leaves the ClusterProfile gate off, and with it
		// the ClusterProfile rules.
		check("", gatedGrants(cluster, false))
		check(releaseNamespace, grants(namespaced))
		By("an unrelated namespace gets only the cluster-wide rules")
		check("cluster1", gatedGrants(cluster, false))

		for _, denied := range []struct{ namespace, verb, group, resource, name string }{
			// ConfigMaps: read anywhere (health reports live in each
			// configuration's proxy-server namespace), written by server-side
			// apply only (granted on to the proxy-servers), never removed.
			{"kube-system", "delete", "", "configmaps", ""},
			{"", "update", "", "configmaps", ""},
			{"", "deletecollection", "", "configmaps", ""},
			{"", "get", "", "nodes", ""},
			{"", "delete", "", "namespaces", ""},
			{"", "update", "", "secrets", ""},
			{"", "update", proxyv1alpha1.GroupName, "managedproxyconfigurations", ""},
			{"", "delete", "cluster.open-cluster-management.io", "managedclusters", ""},
			{"", "escalate", "rbac.authorization.k8s.io", "clusterroles", ""},
			{"", "bind", "rbac.authorization.k8s.io", "clusterroles", ""},
			{"", "sign", "certificates.k8s.io", "signers", certificatesv1.KubeAPIServerClientSignerName},
			{"", "approve", "certificates.k8s.io", "signers", "kubernetes.io/kubelet-serving"},
			{"", "create", "", "pods/exec", ""},
			{"", "list", clusterProfileGroup, "clusterprofiles", ""},
			{"", "patch", clusterProfileGroup, "clusterprofiles/status", ""},
		} {
			Expect(hub.can(ctx, denied.namespace, denied.verb, denied.group, denied.resource, denied.name)).To(BeFalse(),
				"%s %s.%s %s in namespace %q must be denied", denied.verb, denied.resource, denied.group, denied.name, denied.namespace)
		}
	})

	It("runs the addon-manager, with the chart's flags, under the chart's RBAC", func(ctx SpecContext) {
		By("parsing the manager container's arguments with the manager's own flags")
		opts := addonmanager.NewOptions()
		fs := pflag.NewFlagSet("manager", pflag.ContinueOnError)
		opts.AddFlags(fs)
		args := append(objs.managerArgs(), "--metrics-bind-address=0", "--health-probe-bind-address=0")
		Expect(fs.Parse(args)).To(Succeed())
		opts.PodNamespace = releaseNamespace
		Expect(opts.Validate()).To(Succeed())
		Expect(opts.LeaderElect).To(BeTrue())

		// The manager outlives the spec body: it stops in DeferCleanup.
		mgrCtx, cancel := context.WithCancel(logf.IntoContext(context.WithoutCancel(ctx), logf.Log.WithName("addon-manager")))
		mgr, err := addonmanager.NewManager(mgrCtx, hub.asManager(), opts)
		Expect(err).NotTo(HaveOccurred())
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			Expect(mgr.Start(mgrCtx)).To(Succeed())
		}()
		DeferCleanup(func() {
			cancel()
			Eventually(done).WithTimeout(timeout).Should(BeClosed())
		})
		c := hub.client
		get := func(namespace, name string, obj client.Object) func() error {
			return func() error { return c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, obj) }
		}

		By("electing itself leader in the release namespace")
		lease := &coordinationv1.Lease{}
		Eventually(get(releaseNamespace, addonmanager.LeaderElectionID, lease)).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
		Expect(lease.Spec.HolderIdentity).To(HaveValue(Not(BeEmpty())))

		By("deploying the proxy-servers of the default configuration")
		Eventually(func(g Gomega) {
			mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
			g.Expect(c.Get(ctx, types.NamespacedName{Name: proxyv1alpha1.DefaultName}, mpc)).To(Succeed())
			cond := meta.FindStatusCondition(mpc.Status.Conditions, proxyv1alpha1.ConditionTypeProxyServerDeployed)
			g.Expect(cond).NotTo(BeNil())
			g.Expect(cond.Status).To(Equal(metav1.ConditionTrue), cond.Message)
			for _, t := range []string{proxyv1alpha1.ConditionTypeProxyServerSecretSigned, proxyv1alpha1.ConditionTypeAgentServerSecretSigned, proxyv1alpha1.ConditionTypeProxyClientSecretSigned} {
				g.Expect(meta.IsStatusConditionTrue(mpc.Status.Conditions, t)).To(BeTrue(), t)
			}
			g.Expect(mpc.Status.LastObservedGeneration).To(Equal(mpc.Generation))
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
		Expect(get(releaseNamespace, "cluster-proxy", &appsv1.Deployment{})()).To(Succeed())
		Expect(get(releaseNamespace, "cluster-proxy-signer", &corev1.Secret{})()).To(Succeed(), "the CA in the signer namespace")
		By("granting the agents port-forwarding, which RBAC allows only with the manager holding it")
		Expect(get(releaseNamespace, "cluster-proxy-addon-agent:portforward", &rbacv1.Role{})()).To(Succeed())
		Expect(get(releaseNamespace, "cluster-proxy-addon-agent:portforward", &rbacv1.RoleBinding{})()).To(Succeed())
		By("recording Events on the configuration")
		Eventually(func(g Gomega) {
			events := &eventsv1.EventList{}
			g.Expect(c.List(ctx, events, client.InNamespace(metav1.NamespaceDefault))).To(Succeed())
			g.Expect(events.Items).To(ContainElement(And(
				HaveField("Regarding.Name", proxyv1alpha1.DefaultName),
				HaveField("Reason", "CertificateIssued"),
			)))
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())

		By("rendering the agent of a managed cluster, with its hub RBAC")
		Expect(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: clusterName}})).To(Succeed())
		Expect(c.Create(ctx, &clusterv1.ManagedCluster{
			ObjectMeta: metav1.ObjectMeta{Name: clusterName},
			Spec:       clusterv1.ManagedClusterSpec{HubAcceptsClient: true},
		})).To(Succeed())
		createAddon(ctx, c, clusterName)
		configureAddon(ctx, c, clusterName)
		Eventually(get(clusterName, "addon-cluster-proxy-deploy-0", &workv1.ManifestWork{})).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
		Eventually(get(clusterName, agentaddon.AgentRoleName, &rbacv1.Role{})).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
		Eventually(get(clusterName, agentaddon.AgentRoleName, &rbacv1.RoleBinding{})).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
		Eventually(get("", agentaddon.AgentTokenReviewClusterRoleName, &rbacv1.ClusterRole{})).WithContext(ctx).WithTimeout(timeout).Should(Succeed())
		Eventually(get("", agentaddon.AgentTokenReviewClusterRoleName, &rbacv1.ClusterRoleBinding{})).WithContext(ctx).WithTimeout(timeout).Should(Succeed())

		By("approving and signing the agents' certificate requests")
		klusterlet := klusterletClient(ctx, hub, clusterName)
		secret := &corev1.Secret{}
		Expect(get(releaseNamespace, "cluster-proxy-signer", secret)()).To(Succeed())
		ca, err := certs.ParseCA(secret.Data[signer.CertKey], secret.Data[signer.KeyKey])
		Expect(err).NotTo(HaveOccurred())
		Expect(klusterlet.Create(ctx, csrRequest("proxy-agent", clusterName, identity.SignerName, pkix.Name{
			CommonName:         identity.ProxyAgentUser,
			Organization:       []string{identity.AgentGroup},
			OrganizationalUnit: []string{identity.SignerOU(ca.Cert), identity.ClusterOU(clusterName)},
		}))).To(Succeed())
		Expect(klusterlet.Create(ctx, csrRequest("kube-client", clusterName, certificatesv1.KubeAPIServerClientSignerName, pkix.Name{
			CommonName: identity.AddonAgentUser, Organization: []string{identity.AgentGroup},
		}))).To(Succeed())
		Eventually(func(g Gomega) {
			csr := &certificatesv1.CertificateSigningRequest{}
			g.Expect(c.Get(ctx, types.NamespacedName{Name: "addon-proxy-agent"}, csr)).To(Succeed())
			g.Expect(approved(csr)).To(BeTrue())
			g.Expect(csr.Status.Certificate).NotTo(BeEmpty())
			g.Expect(c.Get(ctx, types.NamespacedName{Name: "addon-kube-client"}, csr)).To(Succeed())
			g.Expect(approved(csr)).To(BeTrue(), "the hub's own signer signs it (no kube-controller-manager here)")
		}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
	})

	It("accepts the renders of the other profiles", func(ctx SpecContext) {
		for _, profile := range acceptedProfiles[1:] {
			By(strings.Join(profile, " "))
			hub.apply(ctx, mustRender(ctx, profile...))
		}
	})
})

// createAddon creates the ManagedClusterAddOn of cluster, owned by the
// ClusterManagementAddOn, as OCM's hub addon-manager makes it for the
// clusters the Placement selects.
func createAddon(ctx context.Context, c client.Client, cluster string) {
	cma := &addonapiv1beta1.ClusterManagementAddOn{}
	Expect(c.Get(ctx, types.NamespacedName{Name: agentaddon.AddonName}, cma)).To(Succeed())
	Expect(c.Create(ctx, &addonapiv1beta1.ManagedClusterAddOn{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: cluster, Name: agentaddon.AddonName,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cma, schema.GroupVersionKind{
				Group: addonapiv1beta1.GroupName, Version: "v1beta1", Kind: "ClusterManagementAddOn",
			})},
		},
	})).To(Succeed())
}

// configureAddon does what OCM's hub addon-manager does with the
// ClusterManagementAddOn's default configuration: it records the
// ManagedProxyConfiguration with its spec hash in the addon's status.
func configureAddon(ctx context.Context, c client.Client, cluster string) {
	mpc := &unstructured.Unstructured{}
	mpc.SetGroupVersionKind(proxyv1alpha1.SchemeGroupVersion.WithKind("ManagedProxyConfiguration"))
	Expect(c.Get(ctx, types.NamespacedName{Name: proxyv1alpha1.DefaultName}, mpc)).To(Succeed())
	hash, err := utils.GetSpecHash(mpc)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func(g Gomega) {
		addon := &addonapiv1beta1.ManagedClusterAddOn{}
		g.Expect(c.Get(ctx, types.NamespacedName{Namespace: cluster, Name: agentaddon.AddonName}, addon)).To(Succeed())
		before := addon.DeepCopy()
		addon.Status.ConfigReferences = []addonapiv1beta1.ConfigReference{{
			ConfigGroupResource: addonapiv1beta1.ConfigGroupResource{Group: proxyv1alpha1.GroupName, Resource: "managedproxyconfigurations"},
			DesiredConfig: &addonapiv1beta1.ConfigSpecHash{
				ConfigReferent: addonapiv1beta1.ConfigReferent{Name: proxyv1alpha1.DefaultName}, SpecHash: hash,
			},
		}}
		meta.SetStatusCondition(&addon.Status.Conditions, metav1.Condition{
			Type: addonapiv1beta1.ManagedClusterAddOnConditionConfigured, Status: metav1.ConditionTrue,
			Reason: "ConfigurationsConfigured", Message: "Configurations configured",
		})
		g.Expect(c.Status().Patch(ctx, addon, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))).To(Succeed())
	}).WithContext(ctx).WithTimeout(timeout).WithPolling(interval).Should(Succeed())
}

// klusterletClient acts as the hub identity of cluster's klusterlet, which
// may create certificate requests.
func klusterletClient(ctx context.Context, hub *hubEnv, cluster string) client.Client {
	group := "system:open-cluster-management:" + cluster
	Expect(hub.client.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "test-klusterlet-csrs"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"create", "get"},
		}},
	})).To(Succeed())
	Expect(hub.client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-klusterlet-csrs"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "test-klusterlet-csrs"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: group}},
	})).To(Succeed())
	userConfig, err := hub.server.AddUser(group+":agent1", group)
	Expect(err).NotTo(HaveOccurred())
	c, err := client.New(userConfig, client.Options{Scheme: hub.scheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

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
			clusterv1.ClusterNameLabelKey: cluster,
			addonapiv1beta1.AddonLabelKey: agentaddon.AddonName,
		}},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: signerName,
			Usages:     []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth},
		},
	}
}

func approved(csr *certificatesv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certificatesv1.CertificateApproved && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}
