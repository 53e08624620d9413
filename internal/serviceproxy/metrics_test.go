package serviceproxy

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apiserver/pkg/authentication/user"

	"open-cluster-management.io/cluster-proxy/internal/serviceproxy/authn"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

func TestServerMetrics(t *testing.T) {
	g := NewWithT(t)
	kube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(kube.Close)
	kubeURL, err := url.Parse(kube.URL)
	g.Expect(err).NotTo(HaveOccurred())
	m := NewMetrics([]string{"managed", "hub"})
	s := &Server{
		KubeAPIServer: kubeURL, Anonymous: http.DefaultTransport, Own: http.DefaultTransport,
		Services: roundTripperFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("connection refused") }),
		Authn: authn.Chain{
			{Name: "managed", Token: tokenUsers(map[string]user.Info{"managed-token": &user.DefaultInfo{Name: "sa"}})},
			{Name: "hub", Token: tokenUsers(map[string]user.Info{"hub-token": &user.DefaultInfo{Name: "hub-sa"}}), Impersonate: true},
		},
		Metrics: m,
	}
	kubeHeaders := map[string]string{
		proxyv1alpha1.HeaderProto: "https", proxyv1alpha1.HeaderNamespace: "default",
		proxyv1alpha1.HeaderService: "kubernetes", proxyv1alpha1.HeaderPort: "443",
	}
	serve := func(path string, withCert bool, headers map[string]string, token string) int {
		r := httptest.NewRequest(http.MethodGet, "https://service-proxy"+path, nil)
		if withCert {
			r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: "proxy-client"}}}}}
		}
		for k, v := range headers {
			r.Header.Set(k, v)
		}
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		return w.Code
	}

	g.Expect(serve("/api", false, kubeHeaders, "managed-token")).To(Equal(http.StatusForbidden))
	g.Expect(serve("/api", true, nil, "managed-token")).To(Equal(http.StatusBadRequest))
	for range 3 {
		g.Expect(serve("/api", true, kubeHeaders, "managed-token")).To(Equal(http.StatusOK))
	}
	g.Expect(serve("/missing", true, kubeHeaders, "hub-token")).To(Equal(http.StatusNotFound))
	g.Expect(serve("/api", true, kubeHeaders, "bad-token")).To(Equal(http.StatusUnauthorized))
	g.Expect(serve("/api", true, kubeHeaders, "")).To(Equal(http.StatusUnauthorized))
	g.Expect(serve("/", true, map[string]string{
		proxyv1alpha1.HeaderProto: "http", proxyv1alpha1.HeaderNamespace: "ns",
		proxyv1alpha1.HeaderService: "svc", proxyv1alpha1.HeaderPort: "1",
	}, "")).To(Equal(http.StatusBadGateway))

	g.Expect(samples(g, m.requests)).To(Equal(map[string]float64{
		"403,": 1, "400,": 1,
		"200,kube-apiserver": 3, "404,kube-apiserver": 1, "401,kube-apiserver": 2,
		"502,service": 1,
	}), "one series per code and target")
	g.Expect(samples(g, m.authentications)).To(Equal(map[string]float64{
		ProviderClientCertificate + ",authenticated": 8, ProviderClientCertificate + ",rejected": 1,
		"managed,authenticated": 3, "managed,rejected": 2, "managed,error": 0,
		"hub,authenticated": 1, "hub,rejected": 1, "hub,error": 0,
	}), "every provider's outcomes, zero ones included")
}

// samples gathers c's series: each counter's value by its label values
// joined with ",", in label-name order.
func samples(g *WithT, c prometheus.Collector) map[string]float64 {
	registry := prometheus.NewRegistry()
	g.Expect(registry.Register(c)).To(Succeed())
	families, err := registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var values []string
			for _, l := range m.GetLabel() {
				values = append(values, l.GetValue())
			}
			out[strings.Join(values, ",")] = m.GetCounter().GetValue()
		}
	}
	return out
}

// roundTripperFunc is a function as an http.RoundTripper.
type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestServerWithoutMetrics(t *testing.T) {
	g := NewWithT(t)
	s := &Server{}
	r := httptest.NewRequest(http.MethodGet, "https://service-proxy/", nil)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	g.Expect(w.Code).To(Equal(http.StatusForbidden), "a Server without Metrics serves as before")
}
