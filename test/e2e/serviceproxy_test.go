package e2e_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/client"
	"open-cluster-management.io/cluster-proxy/test/localenv"
)

// hubViewer is the hub ServiceAccount whose token the service-proxy
// authenticates through the hub's TokenReview; it acts on managed clusters
// as viewerUser.
const (
	hubViewerNamespace = "default"
	hubViewer          = "cluster-proxy-e2e-viewer"
	viewerUser         = "cluster:hub:system:serviceaccount:" + hubViewerNamespace + ":" + hubViewer
)

// serviceProxyConfig is a client of cluster's kube-apiserver through the
// tunnel and the cluster's service-proxy, as the user-server reaches it:
// dial cluster-<hash>.open-cluster-management.proxy:7443, present the hub's
// proxy-client certificate, name the target in the Cluster-Proxy-* headers,
// and carry the caller's bearer token.
func serviceProxyConfig(ctx context.Context, d *client.Dialer, cluster, token string, withClientCert bool) *rest.Config {
	GinkgoHelper()
	ns := proxyServerNamespace(ctx)
	ca, err := hubKube.CoreV1().Secrets(ns).Get(ctx, proxyv1alpha1.CASecretName, metav1.GetOptions{})
	Expect(err).NotTo(HaveOccurred())
	base := &rest.Config{BearerToken: token, TLSClientConfig: rest.TLSClientConfig{
		CAData: ca.Data[proxyv1alpha1.CASecretKey], ServerName: proxyv1alpha1.ServiceProxyHost(cluster),
	}}
	if withClientCert {
		pc, err := hubKube.CoreV1().Secrets(ns).Get(ctx, proxyv1alpha1.DefaultProxyClientSecretName, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		base.CertData, base.KeyData = pc.Data[corev1.TLSCertKey], pc.Data[corev1.TLSPrivateKeyKey]
	}
	base.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return targetHeaders{next: rt, headers: map[string]string{
			proxyv1alpha1.HeaderProto: "https", proxyv1alpha1.HeaderNamespace: "default",
			proxyv1alpha1.HeaderService: "kubernetes", proxyv1alpha1.HeaderPort: "443",
		}}
	})
	cfg, err := client.RESTConfigForCluster(d, base, cluster, client.ClusterOptions{
		Address: net.JoinHostPort(proxyv1alpha1.ServiceProxyHost(cluster), strconv.Itoa(int(proxyv1alpha1.ServiceProxyPort))),
	})
	Expect(err).NotTo(HaveOccurred())
	return cfg
}

// targetHeaders sets the service-proxy's target headers on every request.
type targetHeaders struct {
	next    http.RoundTripper
	headers map[string]string
}

func (t targetHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range t.headers {
		req.Header.Set(k, v)
	}
	return t.next.RoundTrip(req)
}

var _ = Describe("The service-proxy on the local environment", Ordered, Label("service-proxy"), func() {
	const cluster = "cluster1"
	var token string

	BeforeAll(func(ctx SpecContext) {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: hubViewer, Namespace: hubViewerNamespace}}
		_, err := hubKube.CoreV1().ServiceAccounts(hubViewerNamespace).Create(ctx, sa, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) {
			Expect(hubKube.CoreV1().ServiceAccounts(hubViewerNamespace).Delete(ctx, hubViewer, metav1.DeleteOptions{})).To(Succeed())
		})
		tr, err := hubKube.CoreV1().ServiceAccounts(hubViewerNamespace).CreateToken(ctx, hubViewer, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		token = tr.Status.Token

		By("running a ready service-proxy in every managed cluster's agent pod")
		for _, c := range localenv.ManagedClusters {
			Eventually(func(g Gomega) {
				pods, err := managed[c].CoreV1().Pods(agentNamespace).List(ctx, metav1.ListOptions{LabelSelector: "proxy.open-cluster-management.io/component-name=proxy-agent"})
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(pods.Items).NotTo(BeEmpty())
				for _, p := range pods.Items {
					var ready []string
					for _, s := range p.Status.ContainerStatuses {
						if s.Ready {
							ready = append(ready, s.Name)
						}
					}
					g.Expect(ready).To(ContainElement("service-proxy"), "pod %s/%s on %s", p.Namespace, p.Name, c)
				}
			}).WithContext(ctx).Should(Succeed())
		}
	})

	It("lists cluster1's pods with a hub service-account token, as cluster:hub:<sa>, once cluster1's RBAC allows it", func(ctx SpecContext) {
		d := hubDialer(ctx)
		viaProxy := kubernetes.NewForConfigOrDie(serviceProxyConfig(ctx, d, cluster, token, true))

		By("forbidding the hub service account until the managed cluster grants it something")
		_, err := viaProxy.CoreV1().Pods(agentNamespace).List(ctx, metav1.ListOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring(`User "` + viewerUser + `"`))

		By("granting the impersonated user pod reads in the agent namespace on cluster1")
		role := &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: hubViewer, Namespace: agentNamespace},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
		}
		binding := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: hubViewer, Namespace: agentNamespace},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: hubViewer},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: viewerUser}},
		}
		_, err = managed[cluster].RbacV1().Roles(agentNamespace).Create(ctx, role, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = managed[cluster].RbacV1().RoleBindings(agentNamespace).Create(ctx, binding, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx SpecContext) {
			Expect(managed[cluster].RbacV1().RoleBindings(agentNamespace).Delete(ctx, hubViewer, metav1.DeleteOptions{})).To(Succeed())
			Expect(managed[cluster].RbacV1().Roles(agentNamespace).Delete(ctx, hubViewer, metav1.DeleteOptions{})).To(Succeed())
		})

		direct, err := managed[cluster].CoreV1().Pods(agentNamespace).List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			pods, err := viaProxy.CoreV1().Pods(agentNamespace).List(ctx, metav1.ListOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(podNames(pods.Items)).To(ConsistOf(podNames(direct.Items)))
		}).WithContext(ctx).WithTimeout(time.Minute).Should(Succeed())

		By("still forbidding what the Role does not grant")
		_, err = viaProxy.CoreV1().Secrets(agentNamespace).List(ctx, metav1.ListOptions{})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
	})

	It("refuses a garbage token with 401 and a caller without the hub's client certificate with 403", func(ctx SpecContext) {
		d := hubDialer(ctx)
		_, err := kubernetes.NewForConfigOrDie(serviceProxyConfig(ctx, d, cluster, "not-a-token", true)).
			CoreV1().Pods(agentNamespace).List(ctx, metav1.ListOptions{})
		Expect(apierrors.IsUnauthorized(err)).To(BeTrue(), "got %v", err)

		_, err = kubernetes.NewForConfigOrDie(serviceProxyConfig(ctx, d, cluster, token, false)).
			CoreV1().Pods(agentNamespace).List(ctx, metav1.ListOptions{})
		Expect(err).To(HaveOccurred())
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("client certificate"))
	})

	It("serves the same hub identity on every managed cluster by its own host name", func(ctx SpecContext) {
		d := hubDialer(ctx)
		for _, c := range localenv.ManagedClusters {
			review, err := kubernetes.NewForConfigOrDie(serviceProxyConfig(ctx, d, c, token, true)).
				AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred(), "through %s's service-proxy", c)
			Expect(review.Status.UserInfo.Username).To(Equal(viewerUser), fmt.Sprintf("on %s", c))
		}
	})
})
