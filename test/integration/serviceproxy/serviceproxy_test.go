package serviceproxy_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// response is what the service-proxy answered.
type response struct {
	code int
	body string
}

// status decodes a Kubernetes Status body.
func (r response) status() metav1.Status {
	GinkgoHelper()
	var s metav1.Status
	Expect(json.Unmarshal([]byte(r.body), &s)).To(Succeed(), "body %s", r.body)
	return s
}

// kubeHeaders are the target headers of the kube-apiserver.
func kubeHeaders() http.Header {
	h := http.Header{}
	h.Set(proxyv1alpha1.HeaderProto, "https")
	h.Set(proxyv1alpha1.HeaderNamespace, "default")
	h.Set(proxyv1alpha1.HeaderService, "kubernetes")
	h.Set(proxyv1alpha1.HeaderPort, "443")
	return h
}

// call sends method path with headers and body to the suite's
// service-proxy, presenting cert when it is not nil.
func call(ctx context.Context, cert *tls.Certificate, method, path string, headers http.Header, body []byte) (response, error) {
	return callAt(ctx, address, cert, method, path, headers, body)
}

// callAt is call for the service-proxy at address.
func callAt(ctx context.Context, address string, cert *tls.Certificate, method, path string, headers http.Header, body []byte) (response, error) {
	tlsConfig := &tls.Config{RootCAs: caPool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		tlsConfig.Certificates = []tls.Certificate{*cert}
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, method, "https://"+address+path, bytes.NewReader(body))
	if err != nil {
		return response{}, err
	}
	req.Header = headers.Clone()
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, body: string(data)}, err
}

// asUser sends a request for the kube-apiserver with token, as the
// user-server does (proxy-client certificate, target headers).
func asUser(ctx context.Context, token, method, path string, body []byte, extra ...string) response {
	GinkgoHelper()
	return asUserAt(ctx, address, token, method, path, body, extra...)
}

// asUserAt is asUser for the service-proxy at address.
func asUserAt(ctx context.Context, address, token, method, path string, body []byte, extra ...string) response {
	GinkgoHelper()
	h := kubeHeaders()
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		h.Add(extra[i], extra[i+1])
	}
	r, err := callAt(ctx, address, &proxyClient, method, path, h, body)
	Expect(err).NotTo(HaveOccurred())
	return r
}

// whoAmI asks the managed kube-apiserver who the request arrived as.
func whoAmI(ctx context.Context, token string, extra ...string) authenticationv1.UserInfo {
	GinkgoHelper()
	return whoAmIAt(ctx, address, token, extra...)
}

// selfSubjectReview is a SelfSubjectReview request's body.
var selfSubjectReview = []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)

// selfSubjectReviewPath is where SelfSubjectReviews are created.
const selfSubjectReviewPath = "/apis/authentication.k8s.io/v1/selfsubjectreviews"

// whoAmIAt is whoAmI through the service-proxy at address.
func whoAmIAt(ctx context.Context, address, token string, extra ...string) authenticationv1.UserInfo {
	GinkgoHelper()
	r := asUserAt(ctx, address, token, http.MethodPost, selfSubjectReviewPath, selfSubjectReview, extra...)
	Expect(r.code).To(Equal(http.StatusCreated), "body %s", r.body)
	var review authenticationv1.SelfSubjectReview
	Expect(json.Unmarshal([]byte(r.body), &review)).To(Succeed())
	return review.Status.UserInfo
}

var _ = Describe("Who may call the service-proxy", Label("serviceproxy"), func() {
	It("refuses a caller without a client certificate, naming what it needs", func(ctx SpecContext) {
		r, err := call(ctx, nil, http.MethodGet, "/api", kubeHeaders(), nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.code).To(Equal(http.StatusForbidden))
		Expect(r.status().Message).To(And(ContainSubstring("client certificate issued by the cluster-proxy CA"), HaveSuffix("this request presented none")))
	})

	It("refuses a proxy-agent's certificate", func(ctx SpecContext) {
		r, err := call(ctx, &agentCert, http.MethodGet, "/api", kubeHeaders(), nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.code).To(Equal(http.StatusForbidden))
		Expect(r.status().Message).To(ContainSubstring("a proxy-agent certificate is not one"))
	})

	It("refuses a certificate from another CA (the client does not even offer it: the server asks for the cluster-proxy CA's)", func(ctx SpecContext) {
		r, err := call(ctx, &foreignCert, http.MethodGet, "/api", kubeHeaders(), nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.code).To(Equal(http.StatusForbidden))
		Expect(r.status().Message).To(HaveSuffix("this request presented none"))
	})

	It("answers 400 naming a missing or invalid target header", func(ctx SpecContext) {
		h := kubeHeaders()
		h.Del(proxyv1alpha1.HeaderPort)
		r, err := call(ctx, &proxyClient, http.MethodGet, "/api", h, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.code).To(Equal(http.StatusBadRequest))
		Expect(r.status().Message).To(Equal("header Cluster-Proxy-Port: missing"))

		h = kubeHeaders()
		h.Set(proxyv1alpha1.HeaderService, "evil.example.com")
		r, err = call(ctx, &proxyClient, http.MethodGet, "/api", h, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.code).To(Equal(http.StatusBadRequest))
		Expect(r.status().Message).To(ContainSubstring(`header Cluster-Proxy-Service: "evil.example.com" is not a Service name`))
	})
})

var _ = Describe("Authenticating requests for the kube-apiserver", Label("serviceproxy", "authn"), func() {
	It("forwards a managed cluster's token unchanged: its own identity and RBAC apply", func(ctx SpecContext) {
		Expect(whoAmI(ctx, managedToken).Username).To(Equal("system:serviceaccount:" + teamNamespace + ":reader"))
		r := asUser(ctx, managedToken, http.MethodGet, "/api/v1/namespaces/"+teamNamespace+"/pods", nil)
		Expect(r.code).To(Equal(http.StatusOK), r.body)
		denied := asUser(ctx, managedToken, http.MethodGet, "/api/v1/namespaces/default/secrets", nil)
		Expect(denied.code).To(Equal(http.StatusForbidden))
		Expect(denied.status().Message).To(ContainSubstring("system:serviceaccount:" + teamNamespace + ":reader"))
	})

	It("forwards a hub token impersonating the hub service account as cluster:hub:<name>, with its hub groups", func(ctx SpecContext) {
		who := whoAmI(ctx, hubToken)
		Expect(who.Username).To(Equal("cluster:hub:system:serviceaccount:" + hubNamespace + ":hub-reader"))
		Expect(who.Groups).To(ContainElements("system:serviceaccounts", "system:serviceaccounts:"+hubNamespace, "system:authenticated"))
		r := asUser(ctx, hubToken, http.MethodGet, "/api/v1/namespaces/"+teamNamespace+"/pods", nil)
		Expect(r.code).To(Equal(http.StatusOK), r.body)
		denied := asUser(ctx, hubToken, http.MethodGet, "/api/v1/namespaces/default/secrets", nil)
		Expect(denied.code).To(Equal(http.StatusForbidden))
		Expect(denied.status().Message).To(ContainSubstring("cluster:hub:system:serviceaccount:" + hubNamespace + ":hub-reader"))
	})

	It("strips Impersonate-* headers a hub user sends, so they cannot escalate", func(ctx SpecContext) {
		who := whoAmI(ctx, hubToken, "Impersonate-Group", "system:masters", "Impersonate-User", "admin")
		Expect(who.Username).To(Equal("cluster:hub:system:serviceaccount:" + hubNamespace + ":hub-reader"))
		Expect(who.Groups).NotTo(ContainElement("system:masters"))
		r := asUser(ctx, hubToken, http.MethodGet, "/api/v1/namespaces/default/secrets", nil, "Impersonate-Group", "system:masters")
		Expect(r.code).To(Equal(http.StatusForbidden))
	})

	It("answers 401 for a token no cluster knows, and for no token, naming what was tried", func(ctx SpecContext) {
		r := asUser(ctx, garbageToken, http.MethodGet, "/api", nil)
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.status().Message).To(ContainSubstring("rejected by every authenticator tried: managed, hub"))
		r = asUser(ctx, "", http.MethodGet, "/api", nil)
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(r.status().Message).To(ContainSubstring("carries no bearer token"))
	})

	It("never writes a token to its log", func() {
		Expect(loggedToken(serviceProxy, managedToken, hubToken, garbageToken)).To(BeEmpty())
	})
})

// garbageToken is a bearer token no cluster knows.
const garbageToken = "not-a-real-token"

// Stopping is checked after every spec has run (top-level containers run
// in random order): SIGTERM makes it report not ready while it drains, then
// exit cleanly. Then no service-proxy may have logged a token the suite
// used.
var _ = AfterSuite(func() {
	if serviceProxy == nil {
		return
	}
	DeferCleanup(expectNoTokenLogged)
	Expect(syscall.Kill(serviceProxy.PID, syscall.SIGTERM)).To(Succeed())
	Eventually(func() int {
		resp, err := http.Get("http://" + healthAddress + "/readyz")
		if err != nil {
			return 0
		}
		defer func() { _ = resp.Body.Close() }()
		return resp.StatusCode
	}).WithTimeout(5 * time.Second).Should(Equal(http.StatusServiceUnavailable))
	Eventually(serviceProxy.Done()).WithTimeout(30 * time.Second).Should(BeClosed())
	Expect(serviceProxy.ExitError()).NotTo(HaveOccurred())
	Expect(strings.Contains(serviceProxy.LogTail(20), "draining")).To(BeTrue())
})

// expectNoTokenLogged checks the whole log (standard output and error) of
// every service-proxy the suite started for every bearer token the suite
// used. The kube-apiservers' logs are not ours, and not captured.
func expectNoTokenLogged() {
	tokens := append([]string{garbageToken}, bearerTokens...)
	if oidcIssuer.ready {
		tokens = append(tokens, oidcTokens()...)
	}
	Expect(serviceProxies).NotTo(BeEmpty())
	for _, p := range serviceProxies {
		Expect(loggedToken(p, tokens...)).To(BeEmpty())
	}
	// The check has teeth: at this verbosity the main service-proxy logged
	// the TokenReviews it made for the suite's tokens.
	data, err := os.ReadFile(serviceProxy.LogPath)
	Expect(err).NotTo(HaveOccurred())
	Expect(string(data)).To(MatchRegexp(`"Response" verb="POST" url="[^"]+/apis/authentication.k8s.io/v1/tokenreviews" status="201 Created"`))
}

// loggedToken returns "" when the log of service-proxy p holds none of
// tokens, nor the signature of one that is a JWT (what makes it usable,
// say in a truncated token). Otherwise it describes the first line holding
// one, with the token replaced by <TOKEN>: a failure message must not
// spread it either.
func loggedToken(p *framework.Process, tokens ...string) string {
	GinkgoHelper()
	data, err := os.ReadFile(p.LogPath)
	Expect(err).NotTo(HaveOccurred())
	log := string(data)
	Expect(log).To(ContainSubstring("service-proxy options"), "%s's log is a service-proxy's", p.Name)
	needles := make([]string, 0, 2*len(tokens))
	for _, token := range tokens {
		Expect(token).NotTo(BeEmpty())
		needles = append(needles, token)
		if parts := strings.Split(token, "."); len(parts) == 3 && len(parts[2]) >= 16 {
			needles = append(needles, parts[2])
		}
	}
	for _, needle := range needles {
		i := strings.Index(log, needle)
		if i < 0 {
			continue
		}
		line := log[strings.LastIndex(log[:i], "\n")+1:]
		if end := strings.IndexByte(line, '\n'); end >= 0 {
			line = line[:end]
		}
		return fmt.Sprintf("%s (%s) logged a bearer token: %s", p.Name, p.LogPath, strings.ReplaceAll(line, needle, "<TOKEN>"))
	}
	return ""
}
