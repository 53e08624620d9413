package serviceproxy_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// The Service specs run a service-proxy whose host names resolve from a
// private /etc/hosts only (framework.StartProcessWithPrivateNames): the
// names of Services <service>.<namespace>.svc lead to local servers on
// loopback, and any other name does not resolve.
const (
	// appsNamespace holds the Services.
	appsNamespace = "apps"
	// plainService is an HTTP Service on 127.0.0.1; secureService an HTTPS
	// one on 127.0.0.2 whose certificate the additional Service CA issued;
	// untrustedService an HTTPS one on 127.0.0.3 whose certificate another
	// CA issued.
	plainService, secureService, untrustedService = "plain", "secure", "untrusted"
)

// seenRequest is what a Service's server saw of a request, which it sends
// back as JSON.
type seenRequest struct {
	Service string      `json:"service"`
	Method  string      `json:"method"`
	Host    string      `json:"host"`
	URI     string      `json:"uri"`
	Header  http.Header `json:"header"`
	Body    string      `json:"body"`
}

// serviceHost is the host name of Service name in appsNamespace.
func serviceHost(name string) string {
	return name + "." + appsNamespace + ".svc"
}

// serveService serves HTTP (HTTPS with cert) for Service name on ip at a
// random port, which it returns: every request is answered 200 with the
// seenRequest as JSON.
func serveService(name, ip string, cert *tls.Certificate) int {
	GinkgoHelper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	Expect(err).NotTo(HaveOccurred())
	if cert != nil {
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})
	}
	server := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(seenRequest{Service: name, Method: r.Method, Host: r.Host, URI: r.RequestURI, Header: r.Header, Body: string(body)})
	})}
	go func() { _ = server.Serve(l) }()
	DeferCleanup(server.Close)
	return l.Addr().(*net.TCPAddr).Port
}

// issueServing issues a serving certificate for host from ca.
func issueServing(ca *certs.CA, host string) tls.Certificate {
	GinkgoHelper()
	certPEM, keyPEM, err := ca.Issue(certs.LeafSpec{CommonName: host, SANs: []string{host}, Usage: certs.UsageServing}, time.Now())
	Expect(err).NotTo(HaveOccurred())
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	Expect(err).NotTo(HaveOccurred())
	return pair
}

// serviceHeaders are the target headers of Service service in
// appsNamespace.
func serviceHeaders(proto, service string, port int) http.Header {
	h := http.Header{}
	h.Set(proxyv1alpha1.HeaderProto, proto)
	h.Set(proxyv1alpha1.HeaderNamespace, appsNamespace)
	h.Set(proxyv1alpha1.HeaderService, service)
	h.Set(proxyv1alpha1.HeaderPort, strconv.Itoa(port))
	return h
}

// tokenReviewLogLine is what the service-proxy logs (at the suite's
// verbosity) for each TokenReview it makes.
const tokenReviewLogLine = "/apis/authentication.k8s.io/v1/tokenreviews"

var _ = Describe("Requests for a Service", Label("serviceproxy", "services"), Ordered, func() {
	var (
		p                                    *framework.Process
		addr                                 string
		plainPort, securePort, untrustedPort int
	)

	BeforeAll(func(ctx SpecContext) {
		now := time.Now()
		serviceCA, err := certs.NewCA("service CA", now, time.Hour)
		Expect(err).NotTo(HaveOccurred())
		otherCA, err := certs.NewCA("not the service CA", now, time.Hour)
		Expect(err).NotTo(HaveOccurred())
		serviceCAFile := filepath.Join(dir, "service-ca.crt")
		Expect(os.WriteFile(serviceCAFile, serviceCA.CertPEM, 0o600)).To(Succeed())

		plainPort = serveService(plainService, "127.0.0.1", nil)
		secureCert := issueServing(serviceCA, serviceHost(secureService))
		securePort = serveService(secureService, "127.0.0.2", &secureCert)
		untrustedCert := issueServing(otherCA, serviceHost(untrustedService))
		untrustedPort = serveService(untrustedService, "127.0.0.3", &untrustedCert)

		// Hub authentication is on (the suite's flags), as in production:
		// it must not apply to Services.
		p, addr, _ = startServiceProxyWithNames(ctx, "service-proxy-services",
			[]string{"--additional-service-ca=" + serviceCAFile, "--min-drain-duration=0s"}, nil,
			map[string]string{
				serviceHost(plainService):     "127.0.0.1",
				serviceHost(secureService):    "127.0.0.2",
				serviceHost(untrustedService): "127.0.0.3",
			})
	})

	// send sends a request for a Service through the service-proxy.
	send := func(ctx SpecContext, method, path string, headers http.Header, body string) response {
		GinkgoHelper()
		r, err := callAt(ctx, addr, &proxyClient, method, path, headers, []byte(body))
		Expect(err).NotTo(HaveOccurred())
		return r
	}
	seen := func(r response) seenRequest {
		GinkgoHelper()
		Expect(r.code).To(Equal(http.StatusOK), "body %s", r.body)
		var s seenRequest
		Expect(json.Unmarshal([]byte(r.body), &s)).To(Succeed(), "body %s", r.body)
		return s
	}

	It("forwards to http://<service>.<namespace>.svc:<port> with the request's method, path, query, body and headers, authenticating nothing", func(ctx SpecContext) {
		h := serviceHeaders("http", plainService, plainPort)
		h.Set("Authorization", "Bearer "+garbageToken)
		h.Set("Impersonate-User", "someone")
		s := seen(send(ctx, http.MethodPost, "/hello/world?x=1", h, "ping"))
		Expect(s.Service).To(Equal(plainService))
		Expect(s.Host).To(Equal(serviceHost(plainService) + ":" + strconv.Itoa(plainPort)))
		Expect(s).To(And(
			HaveField("Method", http.MethodPost), HaveField("URI", "/hello/world?x=1"), HaveField("Body", "ping")))
		// Not authenticated: a token no cluster knows, and an
		// Impersonate-* header, reach the Service as sent.
		Expect(s.Header.Get("Authorization")).To(Equal("Bearer " + garbageToken))
		Expect(s.Header.Get("Impersonate-User")).To(Equal("someone"))

		By("a request without any token, too")
		s = seen(send(ctx, http.MethodGet, "/", serviceHeaders("http", plainService, plainPort), ""))
		Expect(s.Service).To(Equal(plainService))
		Expect(s.Header).NotTo(HaveKey("Authorization"))

		By("no TokenReview was made for them; a request for the kube-apiserver with the same token makes one")
		Expect(p.LogTail(10000)).NotTo(ContainSubstring(tokenReviewLogLine))
		r := asUserAt(ctx, addr, garbageToken, http.MethodGet, "/api", nil)
		Expect(r.code).To(Equal(http.StatusUnauthorized))
		Expect(p.LogTail(10000)).To(ContainSubstring(tokenReviewLogLine))
	})

	It("forwards to https://<service>.<namespace>.svc:<port>, trusting the additional Service CA and refusing another", func(ctx SpecContext) {
		s := seen(send(ctx, http.MethodGet, "/secure", serviceHeaders("https", secureService, securePort), ""))
		Expect(s.Service).To(Equal(secureService))
		Expect(s.URI).To(Equal("/secure"))

		r := send(ctx, http.MethodGet, "/", serviceHeaders("https", untrustedService, untrustedPort), "")
		Expect(r.code).To(Equal(http.StatusBadGateway), r.body)
		Expect(r.status().Message).To(And(
			HavePrefix("the service-proxy failed to reach "+serviceHost(untrustedService)+":"+strconv.Itoa(untrustedPort)+": "),
			ContainSubstring("certificate signed by unknown authority")))
	})

	It("answers 404 naming the target for a Service whose name does not resolve", func(ctx SpecContext) {
		r := send(ctx, http.MethodGet, "/", serviceHeaders("http", "nowhere", 8080), "")
		Expect(r.code).To(Equal(http.StatusNotFound), r.body)
		Expect(r.status().Reason).To(Equal(metav1.StatusReasonNotFound))
		Expect(r.status().Message).To(HavePrefix("the service-proxy found no Service at " + serviceHost("nowhere") + ":8080 on this cluster (" + serviceHost("nowhere") + " does not resolve)"))
	})
})
