package serviceproxy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"open-cluster-management.io/cluster-proxy/test/framework"
)

// The OIDC issuer is real: the hub kube-apiserver's service-account issuer,
// whose discovery document and keys it serves to anyone
// (framework.APIServerOptions.ServiceAccountIssuerDiscovery).
// Tokens from its TokenRequest API with the audience oidcClientID are
// genuine ID tokens; the managed and the hub TokenReview both reject them
// (another issuer's key, another audience), so they reach the OIDC
// provider.
const (
	oidcClientID = "cluster-proxy-oidc"
	// oidcNamespace holds the hub service accounts whose tokens are the ID
	// tokens.
	oidcNamespace = "oidc-users"
	// agentNamespace is the service-proxy's namespace on the managed
	// cluster ($POD_NAMESPACE), where the CA ConfigMap lives.
	agentNamespace  = "cluster-proxy-agent"
	oidcCAConfigMap = "oidc-issuer-ca"
	// oidcSigningAlgs: envtest signs service-account tokens with an ECDSA
	// key.
	oidcSigningAlgs = "--oidc-signing-algs=ES256"
	// driveTimeout bounds waiting for the issuer's discovery or a
	// ConfigMap change to take effect.
	driveTimeout = 30 * time.Second
)

// oidcIssuer is what the OIDC specs share, set up once by setUpOIDCIssuer.
var oidcIssuer struct {
	ready bool
	// url is the issuer; caFile holds its CA.
	url, caFile string
	// alice's prefixed user name may read pods in teamNamespace; bob's is
	// bound to nothing. strangerToken is alice's, for another audience.
	aliceToken, bobToken, strangerToken string
}

// oidcUser is the managed cluster's name of service account name of
// oidcNamespace, with the default prefix "<issuer>#".
func oidcUser(name string) string {
	return oidcIssuer.url + "#system:serviceaccount:" + oidcNamespace + ":" + name
}

// oidcTokens are the OIDC specs' tokens, which no log may contain.
func oidcTokens() []string {
	return []string{oidcIssuer.aliceToken, oidcIssuer.bobToken, oidcIssuer.strangerToken}
}

// setUpOIDCIssuer issues the ID tokens and lets alice's OIDC user read pods on the managed
// cluster. It runs once.
func setUpOIDCIssuer(ctx context.Context) {
	GinkgoHelper()
	if oidcIssuer.ready {
		return
	}
	oidcIssuer.url = hub.ServiceAccountIssuer()
	oidcIssuer.caFile = filepath.Join(dir, "oidc-issuer-ca.crt")
	Expect(os.WriteFile(oidcIssuer.caFile, hub.CAPEM(), 0o600)).To(Succeed())
	createNamespace(ctx, hubClient, oidcNamespace)
	oidcIssuer.aliceToken = idToken(ctx, hubClient, "oidc-alice", oidcClientID)
	oidcIssuer.bobToken = idToken(ctx, hubClient, "oidc-bob", oidcClientID)
	oidcIssuer.strangerToken = requestToken(ctx, hubClient, "oidc-alice", "someone-else")

	_, err := managedClient.RbacV1().RoleBindings(teamNamespace).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "oidc-viewers"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: oidcUser("oidc-alice")}},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	oidcIssuer.ready = true
}

// idToken creates service account name in oidcNamespace and returns an ID
// token of it for audience.
func idToken(ctx context.Context, c kubernetes.Interface, name, audience string) string {
	GinkgoHelper()
	_, err := c.CoreV1().ServiceAccounts(oidcNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return requestToken(ctx, c, name, audience)
}

// requestToken returns a token of service account name in oidcNamespace
// for audience.
func requestToken(ctx context.Context, c kubernetes.Interface, name, audience string) string {
	GinkgoHelper()
	tr, err := c.CoreV1().ServiceAccounts(oidcNamespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return tr.Status.Token
}

// reviewAt creates a SelfSubjectReview through the service-proxy at
// address with token: the response, and who the managed cluster saw when it
// answered 201.
func reviewAt(ctx context.Context, address, token string, extra ...string) (response, authenticationv1.UserInfo) {
	GinkgoHelper()
	r := asUserAt(ctx, address, token, http.MethodPost, selfSubjectReviewPath, selfSubjectReview, extra...)
	var review authenticationv1.SelfSubjectReview
	if r.code == http.StatusCreated {
		Expect(json.Unmarshal([]byte(r.body), &review)).To(Succeed())
	}
	return r, review.Status.UserInfo
}

// eventuallyReviewed waits until a SelfSubjectReview with token through
// the service-proxy at address succeeds (the issuer's discovery, or a CA
// change, takes effect in the background) and returns who the managed
// cluster saw.
func eventuallyReviewed(ctx context.Context, address, token string) authenticationv1.UserInfo {
	GinkgoHelper()
	var who authenticationv1.UserInfo
	Eventually(func(g Gomega) {
		var r response
		r, who = reviewAt(ctx, address, token)
		g.Expect(r.code).To(Equal(http.StatusCreated), "body %s", r.body)
	}).WithTimeout(driveTimeout).Should(Succeed())
	return who
}

// expectNoTokenIn checks that p's log holds none of tokens.
func expectNoTokenIn(p *framework.Process, tokens ...string) {
	GinkgoHelper()
	log, err := os.ReadFile(p.LogPath)
	Expect(err).NotTo(HaveOccurred())
	Expect(string(log)).To(ContainSubstring("service-proxy options"), "the log is the service-proxy's")
	for _, token := range tokens {
		Expect(token).NotTo(BeEmpty())
		Expect(string(log)).NotTo(ContainSubstring(token))
	}
}

var _ = Describe("OIDC ID tokens", Label("serviceproxy", "authn", "oidc"), Ordered, func() {
	var (
		p    *framework.Process
		addr string
	)
	BeforeAll(func(ctx SpecContext) {
		setUpOIDCIssuer(ctx)
		// No --oidc-ca-configmap: the host's roots, which SSL_CERT_FILE
		// makes the issuer's CA.
		p, addr, _ = startServiceProxy(ctx, "service-proxy-oidc", []string{
			"--oidc-issuer-url=" + oidcIssuer.url, "--oidc-client-id=" + oidcClientID, oidcSigningAlgs, "--min-drain-duration=0s",
		}, []string{"SSL_CERT_FILE=" + oidcIssuer.caFile})
	})

	It("forwards a request impersonating the OIDC user, with the issuer as the prefix, in system:authenticated; RBAC bound to that name applies", func(ctx SpecContext) {
		// Discovery runs in the background after start.
		who := eventuallyReviewed(ctx, addr, oidcIssuer.aliceToken)
		Expect(who.Username).To(Equal(oidcUser("oidc-alice")))
		Expect(who.Groups).To(ConsistOf("system:authenticated"))

		r := asUserAt(ctx, addr, oidcIssuer.aliceToken, http.MethodGet, "/api/v1/namespaces/"+teamNamespace+"/pods", nil)
		Expect(r.code).To(Equal(http.StatusOK), r.body)
	})

	It("strips Impersonate-* headers an OIDC user sends", func(ctx SpecContext) {
		r, who := reviewAt(ctx, addr, oidcIssuer.aliceToken, "Impersonate-Group", "system:masters", "Impersonate-User", "admin")
		Expect(r.code).To(Equal(http.StatusCreated), r.body)
		Expect(who.Username).To(Equal(oidcUser("oidc-alice")))
		Expect(who.Groups).NotTo(ContainElement("system:masters"))
	})

	It("leaves authorisation to the managed cluster: an OIDC user bound to nothing is forbidden, by name", func(ctx SpecContext) {
		r := asUserAt(ctx, addr, oidcIssuer.bobToken, http.MethodGet, "/api/v1/namespaces/"+teamNamespace+"/pods", nil)
		Expect(r.code).To(Equal(http.StatusForbidden), r.body)
		Expect(r.status().Message).To(ContainSubstring(`User "` + oidcUser("oidc-bob") + `" cannot list resource "pods"`))
	})

	It("answers 401 for a token of the issuer for another audience, saying so", func(ctx SpecContext) {
		r := asUserAt(ctx, addr, oidcIssuer.strangerToken, http.MethodGet, "/api", nil)
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.status().Message).To(And(
			ContainSubstring("rejected by every authenticator tried: managed, hub, oidc"),
			ContainSubstring(`expected audience "`+oidcClientID+`"`)))
	})

	It("answers 401 for a garbage token, naming the three authenticators", func(ctx SpecContext) {
		r := asUserAt(ctx, addr, "not-a-real-token", http.MethodGet, "/api", nil)
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.status().Message).To(HaveSuffix("rejected by every authenticator tried: managed, hub, oidc"))
	})

	It("still authenticates hub and managed tokens first", func(ctx SpecContext) {
		Expect(whoAmIAt(ctx, addr, hubToken).Username).To(Equal("cluster:hub:system:serviceaccount:" + hubNamespace + ":hub-reader"))
		Expect(whoAmIAt(ctx, addr, managedToken).Username).To(Equal("system:serviceaccount:" + teamNamespace + ":reader"))
	})

	It("never writes a token to its log", func() {
		expectNoTokenIn(p, append(oidcTokens(), hubToken, managedToken, "not-a-real-token")...)
	})
})

var _ = Describe("OIDC reserved names", Label("serviceproxy", "authn", "oidc"), Ordered, func() {
	var (
		p    *framework.Process
		addr string
	)
	BeforeAll(func(ctx SpecContext) {
		setUpOIDCIssuer(ctx)
		// Without a prefix, the user name is the service account's own,
		// system:serviceaccount:..., in the reserved system: (the default).
		p, addr, _ = startServiceProxy(ctx, "service-proxy-oidc-unprefixed", []string{
			"--oidc-issuer-url=" + oidcIssuer.url, "--oidc-client-id=" + oidcClientID, oidcSigningAlgs, "--oidc-username-prefix=-", "--min-drain-duration=0s",
		}, []string{"SSL_CERT_FILE=" + oidcIssuer.caFile})
	})

	It("answers 401 for a user name in a reserved prefix, naming the prefix", func(ctx SpecContext) {
		Eventually(func() string {
			return asUserAt(ctx, addr, oidcIssuer.aliceToken, http.MethodGet, "/api", nil).body
		}).WithContext(ctx).WithTimeout(driveTimeout).Should(ContainSubstring(`the user name must not start with the reserved prefix \"system:\"`))
		r := asUserAt(ctx, addr, oidcIssuer.aliceToken, http.MethodGet, "/api", nil)
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.status().Message).To(ContainSubstring("rejected by every authenticator tried: managed, hub, oidc"))
	})

	It("never writes a token to its log", func() {
		expectNoTokenIn(p, oidcTokens()...)
	})
})

var _ = Describe("The OIDC issuer's CA from a ConfigMap", Label("serviceproxy", "authn", "oidc"), Ordered, func() {
	var (
		p    *framework.Process
		addr string
	)
	configMaps := func() *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: oidcCAConfigMap, Namespace: agentNamespace}}
	}
	// refusal is the 401 message an OIDC token gets.
	refusal := func(ctx context.Context) string {
		r := asUserAt(ctx, addr, oidcIssuer.aliceToken, http.MethodGet, "/api", nil)
		if r.code != http.StatusUnauthorized {
			return r.body
		}
		return r.status().Message
	}

	BeforeAll(func(ctx SpecContext) {
		setUpOIDCIssuer(ctx)
		createNamespace(ctx, managedClient, agentNamespace)
		_, err := managedClient.RbacV1().Roles(agentNamespace).Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "service-proxy"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		_, err = managedClient.RbacV1().RoleBindings(agentNamespace).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "service-proxy"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "service-proxy"},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "service-proxy"}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		// No SSL_CERT_FILE: only the ConfigMap can make the issuer trusted.
		p, addr, _ = startServiceProxy(ctx, "service-proxy-oidc-ca", []string{
			"--oidc-issuer-url=" + oidcIssuer.url, "--oidc-client-id=" + oidcClientID, oidcSigningAlgs,
			"--oidc-ca-configmap=" + oidcCAConfigMap, "--min-drain-duration=0s",
		}, []string{"POD_NAMESPACE=" + agentNamespace})
	})

	It("refuses OIDC tokens while the ConfigMap is missing, saying why in the answer and the log", func(ctx SpecContext) {
		want := "the CA ConfigMap " + agentNamespace + "/" + oidcCAConfigMap + " does not exist"
		Eventually(refusal).WithContext(ctx).WithTimeout(driveTimeout).Should(And(
			HavePrefix("Unauthorized: authentication could not be completed: the oidc authenticator failed"),
			HaveSuffix(want)))
		Expect(p.LogTail(200)).To(ContainSubstring(want))
		// Tokens of the other authenticators are unaffected.
		Expect(whoAmIAt(ctx, addr, hubToken).Username).To(HavePrefix("cluster:hub:"))
	})

	It("accepts them once the ConfigMap holds the CA, without a restart", func(ctx SpecContext) {
		cm := configMaps()
		cm.Data = map[string]string{"ca.crt": string(hub.CAPEM())}
		_, err := managedClient.CoreV1().ConfigMaps(agentNamespace).Create(ctx, cm, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		who := eventuallyReviewed(ctx, addr, oidcIssuer.aliceToken)
		Expect(who.Username).To(Equal(oidcUser("oidc-alice")))
		Expect(p.Done()).NotTo(BeClosed(), "the same process")
	})

	It("refuses them again when the CA is replaced by something that is no certificate, and accepts them when it is back (binaryData)", func(ctx SpecContext) {
		cm := configMaps()
		cm.Data = map[string]string{"ca.crt": "garbage"}
		_, err := managedClient.CoreV1().ConfigMaps(agentNamespace).Update(ctx, cm, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(refusal).WithContext(ctx).WithTimeout(driveTimeout).Should(HaveSuffix(
			"key ca.crt of the CA ConfigMap " + agentNamespace + "/" + oidcCAConfigMap + ": holds no PEM certificate"))

		cm = configMaps()
		cm.BinaryData = map[string][]byte{"ca.crt": hub.CAPEM()}
		_, err = managedClient.CoreV1().ConfigMaps(agentNamespace).Update(ctx, cm, metav1.UpdateOptions{})
		Expect(err).NotTo(HaveOccurred())
		eventuallyReviewed(ctx, addr, oidcIssuer.aliceToken)
	})

	It("refuses them when the ConfigMap is deleted", func(ctx SpecContext) {
		Expect(managedClient.CoreV1().ConfigMaps(agentNamespace).Delete(ctx, oidcCAConfigMap, metav1.DeleteOptions{})).To(Succeed())
		Eventually(refusal).WithContext(ctx).WithTimeout(driveTimeout).Should(HaveSuffix("does not exist"))
		Expect(p.Done()).NotTo(BeClosed(), "the same process")
	})

	It("never writes a token to its log", func() {
		expectNoTokenIn(p, append(oidcTokens(), hubToken)...)
	})
})
