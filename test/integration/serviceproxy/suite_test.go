// Package serviceproxy_test runs the real `cluster-proxy service-proxy`
// binary between two real kube-apiservers — a managed cluster's and a hub's —
// with real TLS: caller certificates, target headers, and the
// authentication chain (managed TokenReview, then hub TokenReview with
// impersonation, then OIDC ID tokens of a real issuer: the hub
// kube-apiserver's service-account issuer); kubectl's streaming requests
// (exec, logs, watch, port-forward) through it, with a kubelet stand-in
// behind the managed kube-apiserver; requests for Services, whose names a
// private /etc/hosts resolves to local servers; and, after the suite, that
// no service-proxy logged a token.
package serviceproxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/servicecert"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

const (
	startTimeout = 60 * time.Second
	// teamNamespace is where the managed cluster grants view to the test
	// identities.
	teamNamespace = "team"
	// hubNamespace holds the hub's service account.
	hubNamespace = "hub-team"
)

var (
	managed, hub             *framework.APIServer
	managedClient, hubClient kubernetes.Interface
	dir                      string
	// caPool trusts the cluster-proxy CA (the service-proxy's serving
	// certificate); caPEM is that CA.
	caPool *x509.CertPool
	caPEM  []byte
	// proxyClient is a proxy-client certificate from the cluster-proxy CA;
	// agentCert a proxy-agent's; foreignCert one from another CA.
	proxyClient, agentCert, foreignCert tls.Certificate
	// proxyClientPEM and proxyClientKeyPEM are proxyClient, for client-go.
	proxyClientPEM, proxyClientKeyPEM []byte
	// managedToken and hubToken are service account tokens of each cluster.
	managedToken, hubToken string
	// serviceProxy is the running binary; address its HTTPS address.
	serviceProxy           *framework.Process
	address, healthAddress string
	// binary is the cluster-proxy binary; serviceProxies every
	// service-proxy the suite started, whose logs a failed spec shows.
	binary         string
	serviceProxies []*framework.Process
	// bearerTokens are the credentials the suite used: no service-proxy
	// may log one (checked after the suite).
	bearerTokens []string
)

// proxyVerbosity is the service-proxies' log level: above production's, so
// that the check that no token is logged covers what client-go logs of the
// TokenReviews (URL, status) and more.
const proxyVerbosity = "--v=6"

// rememberToken adds token to those no log may contain, and returns it.
func rememberToken(token string) string {
	bearerTokens = append(bearerTokens, token)
	return token
}

func TestServiceProxy(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "service-proxy")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	var err error
	binary, err = framework.BuildBinary("./cmd/cluster-proxy", "cluster-proxy")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, filepath.Dir(binary))
	dir = GinkgoT().TempDir()

	By("starting a managed and a hub kube-apiserver")
	managed, err = framework.StartAPIServer()
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(managed.Stop)
	// The hub is the OIDC specs' issuer too.
	hub, err = framework.StartAPIServerWithOptions(framework.APIServerOptions{ServiceAccountIssuerDiscovery: true})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(hub.Stop)
	managedClient = kubernetes.NewForConfigOrDie(managed.Config)
	hubClient = kubernetes.NewForConfigOrDie(hub.Config)

	By("issuing the cluster-proxy PKI")
	now := time.Now()
	ca, err := certs.NewCA(certs.CACommonName, now, certs.CAValidity)
	Expect(err).NotTo(HaveOccurred())
	caPool = x509.NewCertPool()
	caPool.AddCert(ca.Cert)
	caPEM = ca.CertPEM
	servingCert, servingKey, err := ca.Issue(servicecert.Spec, now)
	Expect(err).NotTo(HaveOccurred())
	proxyClient, proxyClientPEM, proxyClientKeyPEM = issueClientPEM(ca, "cluster-proxy-proxy-client")
	agentCert = issueClient(ca, identity.ProxyAgentUser)
	other, err := certs.NewCA("another CA", now, certs.CAValidity)
	Expect(err).NotTo(HaveOccurred())
	foreignCert = issueClient(other, "cluster-proxy-proxy-client")

	By("giving the service-proxy its identities: impersonation and token reviews on the managed cluster, token reviews on the hub")
	managedSP, err := managed.AddUser("service-proxy")
	Expect(err).NotTo(HaveOccurred())
	bindClusterRole(ctx, managedClient, "service-proxy", rbacv1.Subject{Kind: rbacv1.UserKind, Name: "service-proxy"},
		rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"users", "groups"}, Verbs: []string{"impersonate"}},
		rbacv1.PolicyRule{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}})
	hubSP, err := hub.AddUser("addon-agent")
	Expect(err).NotTo(HaveOccurred())
	bindClusterRole(ctx, hubClient, "addon-agent", rbacv1.Subject{Kind: rbacv1.UserKind, Name: "addon-agent"},
		rbacv1.PolicyRule{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}})

	By("creating a service account on each cluster; the managed cluster lets both view namespace " + teamNamespace)
	createNamespace(ctx, managedClient, teamNamespace)
	createNamespace(ctx, hubClient, hubNamespace)
	managedToken = serviceAccountToken(ctx, managedClient, teamNamespace, "reader")
	hubToken = serviceAccountToken(ctx, hubClient, hubNamespace, "hub-reader")
	// A Role of its own: the aggregated "view" ClusterRole gets its rules
	// from kube-controller-manager, which this control plane does not run.
	_, err = managedClient.RbacV1().Roles(teamNamespace).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = managedClient.RbacV1().RoleBindings(teamNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "viewers"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.ServiceAccountKind, Name: "reader", Namespace: teamNamespace},
			{Kind: rbacv1.UserKind, Name: "cluster:hub:system:serviceaccount:" + hubNamespace + ":hub-reader"},
		},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())

	By("starting cluster-proxy service-proxy")
	files := map[string][]byte{"tls.crt": servingCert, "tls.key": servingKey, "ca.crt": ca.CertPEM}
	files["managed.kubeconfig"], err = framework.KubeconfigFor(managedSP)
	Expect(err).NotTo(HaveOccurred())
	files["hub.kubeconfig"], err = framework.KubeconfigFor(hubSP)
	Expect(err).NotTo(HaveOccurred())
	for name, data := range files {
		Expect(os.WriteFile(filepath.Join(dir, name), data, 0o600)).To(Succeed())
	}
	serviceProxy, address, healthAddress = startServiceProxy(ctx, "service-proxy", []string{"--min-drain-duration=2s"}, nil)
})

// startServiceProxy starts a service-proxy named name (its log is
// <dir>/<name>.log) with the suite's certificates and kubeconfigs plus args
// and env, waits until it is ready, and returns it with its HTTPS and
// health addresses. It is stopped after the suite (or the container that
// started it).
func startServiceProxy(ctx context.Context, name string, args, env []string) (p *framework.Process, address, healthAddress string) {
	GinkgoHelper()
	return startServiceProxyWithNames(ctx, name, args, env, nil)
}

// startServiceProxyWithNames is startServiceProxy; with names, the
// service-proxy resolves host names from names only
// (framework.StartProcessWithPrivateNames), so Service names
// (<service>.<namespace>.svc) can lead to local servers.
func startServiceProxyWithNames(ctx context.Context, name string, args, env []string, names map[string]string) (p *framework.Process, address, healthAddress string) {
	GinkgoHelper()
	port, err := framework.FreeLoopbackPort()
	Expect(err).NotTo(HaveOccurred())
	healthPort, err := framework.FreeLoopbackPort()
	Expect(err).NotTo(HaveOccurred())
	address, healthAddress = fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", healthPort)
	args = append([]string{
		"service-proxy",
		"--cert=" + filepath.Join(dir, "tls.crt"), "--key=" + filepath.Join(dir, "tls.key"),
		"--client-ca=" + filepath.Join(dir, "ca.crt"),
		"--kubeconfig=" + filepath.Join(dir, "managed.kubeconfig"),
		"--hub-kubeconfig=" + filepath.Join(dir, "hub.kubeconfig"),
		"--bind-address=" + address, "--health-bind-address=" + healthAddress,
		// Metrics only where a spec asks for them (args come after): the
		// default port is one for the whole host.
		"--metrics-bind-address=0",
		proxyVerbosity,
	}, args...)
	if names == nil {
		p, err = framework.StartProcess(name, binary, args, env, dir)
	} else {
		p, err = framework.StartProcessWithPrivateNames(name, binary, args, env, dir, names)
	}
	Expect(err).NotTo(HaveOccurred())
	serviceProxies = append(serviceProxies, p)
	DeferCleanup(p.Stop)
	waitCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	Expect(framework.WaitHTTPOK(waitCtx, "http://"+healthAddress+"/readyz", false, p)).To(Succeed(),
		"log:\n%s", p.LogTail(40))
	return p, address, healthAddress
}

// When a spec fails, show what the service-proxies logged.
var _ = AfterEach(func() {
	if !CurrentSpecReport().Failed() {
		return
	}
	for _, p := range serviceProxies {
		_, _ = fmt.Fprintf(GinkgoWriter, "\n----- %s log -----\n%s\n", p.Name, p.LogTail(60))
	}
})

func issueClient(ca *certs.CA, commonName string) tls.Certificate {
	GinkgoHelper()
	pair, _, _ := issueClientPEM(ca, commonName)
	return pair
}

// issueClientPEM issues a client certificate for commonName: the pair, and
// its certificate and key in PEM.
func issueClientPEM(ca *certs.CA, commonName string) (pair tls.Certificate, certPEM, keyPEM []byte) {
	GinkgoHelper()
	certPEM, keyPEM, err := ca.Issue(certs.LeafSpec{CommonName: commonName, Usage: certs.UsageClient}, time.Now())
	Expect(err).NotTo(HaveOccurred())
	pair, err = tls.X509KeyPair(certPEM, keyPEM)
	Expect(err).NotTo(HaveOccurred())
	return pair, certPEM, keyPEM
}

func bindClusterRole(ctx context.Context, c kubernetes.Interface, name string, subject rbacv1.Subject, rules ...rbacv1.PolicyRule) {
	GinkgoHelper()
	_, err := c.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{subject},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
}

func createNamespace(ctx context.Context, c kubernetes.Interface, name string) {
	GinkgoHelper()
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
}

// serviceAccountToken creates service account name and returns a token of
// it from the TokenRequest API, remembered as one no log may contain.
func serviceAccountToken(ctx context.Context, c kubernetes.Interface, namespace, name string) string {
	GinkgoHelper()
	_, err := c.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	tr, err := c.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return rememberToken(tr.Status.Token)
}
