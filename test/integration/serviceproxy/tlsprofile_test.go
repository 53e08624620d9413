package serviceproxy_test

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"open-cluster-management.io/cluster-proxy/internal/tlsprofile"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// tlsProfileTimeout bounds how long a ConfigMap change may take to reach new
// handshakes.
const tlsProfileTimeout = 30 * time.Second

// tlsRequest connects to the service-proxy at address with a client that
// speaks at most maxVersion, presenting the proxy-client certificate, and
// sends one request; it returns the TLS version of the connection and the
// HTTP status (400: the request carries no target headers, which shows it
// was served).
func tlsRequest(ctx context.Context, address string, maxVersion uint16) (uint16, int, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSClientConfig: &tls.Config{
			RootCAs: caPool, ServerName: "localhost", Certificates: []tls.Certificate{proxyClient},
			MinVersion: tls.VersionTLS12, MaxVersion: maxVersion,
		},
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+address+"/", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	return resp.TLS.Version, resp.StatusCode, nil
}

var _ = Describe("The service-proxy's TLS profile from the ocm-tls-profile ConfigMap", Label("serviceproxy", "tls-profile"), Ordered, func() {
	// profileNamespace plays the agent's namespace (POD_NAMESPACE).
	const profileNamespace = "tls-profile-agent"
	var (
		p    *framework.Process
		addr string
	)
	configMaps := func() *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: profileNamespace, Name: tlsprofile.ConfigMapName}}
	}
	// version is the TLS version a client speaking at most maxVersion
	// gets served with.
	version := func(maxVersion uint16) func(context.Context) (uint16, error) {
		return func(ctx context.Context) (uint16, error) {
			v, code, err := tlsRequest(ctx, addr, maxVersion)
			if err == nil && code != http.StatusBadRequest {
				return 0, unexpectedStatus(code)
			}
			return v, err
		}
	}
	// tls12Error is what a TLS 1.2 client gets: nil when it is served.
	tls12Error := func(ctx context.Context) error {
		_, err := version(tls.VersionTLS12)(ctx)
		return err
	}

	BeforeAll(func(ctx SpecContext) {
		createNamespace(ctx, managedClient, profileNamespace)
		// The rule the agent chart gives the service-proxy: get, list and
		// watch of this one ConfigMap (a single-object watch names it in a
		// field selector, which resourceNames authorises).
		_, err := managedClient.RbacV1().Roles(profileNamespace).Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "service-proxy-tls-profile"},
			Rules: []rbacv1.PolicyRule{{
				APIGroups: []string{""}, Resources: []string{"configmaps"},
				ResourceNames: []string{tlsprofile.ConfigMapName}, Verbs: []string{"get", "list", "watch"},
			}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = managedClient.RbacV1().RoleBindings(profileNamespace).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "service-proxy-tls-profile"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "service-proxy-tls-profile"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "service-proxy"}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		p, addr, _ = startServiceProxy(ctx, "service-proxy-tls-profile", []string{"--min-drain-duration=0s"},
			[]string{"POD_NAMESPACE=" + profileNamespace})
	})

	It("serves TLS 1.2 while the ConfigMap is absent", func(ctx SpecContext) {
		Expect(version(tls.VersionTLS12)(ctx)).To(BeEquivalentTo(tls.VersionTLS12))
		Expect(version(tls.VersionTLS13)(ctx)).To(BeEquivalentTo(tls.VersionTLS13))
	})

	It("refuses TLS 1.2 once the ConfigMap asks for VersionTLS13, and serves TLS 1.3, without a restart", func(ctx SpecContext) {
		cm := configMaps()
		cm.Data = map[string]string{tlsprofile.KeyMinVersion: "VersionTLS13"}
		_, err := managedClient.CoreV1().ConfigMaps(profileNamespace).Create(ctx, cm, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(tls12Error).WithContext(ctx).WithTimeout(tlsProfileTimeout).
			Should(MatchError(ContainSubstring("protocol version")))
		Expect(version(tls.VersionTLS13)(ctx)).To(BeEquivalentTo(tls.VersionTLS13))
		Expect(p.Done()).NotTo(BeClosed(), "the same process")
	})

	It("keeps the last good profile when a value is invalid, logging the key", func(ctx SpecContext) {
		cm := configMaps()
		cm.Data = map[string]string{tlsprofile.KeyMinVersion: "TLS9000"}
		_, err := managedClient.CoreV1().ConfigMaps(profileNamespace).Update(ctx, cm, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(p.LogTail).WithArguments(200).WithTimeout(tlsProfileTimeout).
			Should(ContainSubstring(`invalid minTLSVersion \"TLS9000\"`))
		Consistently(tls12Error).WithContext(ctx).WithTimeout(2*time.Second).
			Should(MatchError(ContainSubstring("protocol version")), "never weaker than the last good profile")
	})

	It("serves TLS 1.2 again once the ConfigMap is deleted, without a restart", func(ctx SpecContext) {
		Expect(managedClient.CoreV1().ConfigMaps(profileNamespace).Delete(ctx, tlsprofile.ConfigMapName, metav1.DeleteOptions{})).To(Succeed())
		Eventually(version(tls.VersionTLS12)).WithContext(ctx).WithTimeout(tlsProfileTimeout).Should(BeEquivalentTo(tls.VersionTLS12))
		Expect(p.Done()).NotTo(BeClosed(), "the same process")
	})
})

// unexpectedStatus is an HTTP status other than the one expected.
type unexpectedStatus int

func (e unexpectedStatus) Error() string { return "answered " + http.StatusText(int(e)) }
