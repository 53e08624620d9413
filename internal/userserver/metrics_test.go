package userserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/client"
)

func TestServerMetricsNameOnlyReachedClusters(t *testing.T) {
	g := NewWithT(t)
	sp := newFakeServiceProxy(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "{}")
	})
	roots := x509.NewCertPool()
	roots.AddCert(sp.server.Certificate())
	// Only cluster1 has an agent: dials for any other cluster fail the way
	// the pooled tunnel's do.
	transport := serviceProxyTransport(func(ctx context.Context, network, address string) (net.Conn, error) {
		host, _, _ := net.SplitHostPort(address)
		if host != proxyv1alpha1.ServiceProxyHost("cluster1") {
			return nil, &client.NoAgentError{Cluster: host, Address: address}
		}
		return (&net.Dialer{}).DialContext(ctx, network, sp.server.Listener.Addr().String())
	}, &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: "example.com"})
	t.Cleanup(transport.CloseIdleConnections)
	m := NewMetrics()
	url, _ := startUserServer(t, &Server{Transport: transport, Allowlist: func() Allowlist { return Allowlist{} }, Metrics: m})
	httpClient := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	t.Cleanup(httpClient.CloseIdleConnections)
	get := func(path string) int {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url+path, nil)
		g.Expect(err).NotTo(HaveOccurred())
		resp, err := httpClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	const notExposed = "/cluster1/api/v1/namespaces/ns/services/svc/proxy-service/x"

	for range 3 {
		g.Expect(get("/cluster2/api")).To(Equal(http.StatusServiceUnavailable), "no agent of cluster2")
	}
	g.Expect(get(notExposed)).To(Equal(http.StatusForbidden), "before cluster1 was reached")
	g.Expect(get("/Not_A_Cluster/api")).To(Equal(http.StatusBadRequest))
	for range 4 {
		g.Expect(get("/cluster1/api")).To(Equal(http.StatusOK))
	}
	for range 2 {
		g.Expect(get("/cluster1/missing")).To(Equal(http.StatusNotFound))
	}
	g.Expect(get(notExposed)).To(Equal(http.StatusForbidden), "after cluster1 was reached")

	requests := map[[2]string]float64{
		{"", "503"}: 3, {"", "403"}: 1, {"", "400"}: 1,
		{"cluster1", "200"}: 4, {"cluster1", "404"}: 2, {"cluster1", "403"}: 1,
	}
	for labels, want := range requests {
		d := write(g, m.requests.WithLabelValues(labels[0], labels[1]).(prometheus.Metric))
		g.Expect(d.GetCounter().GetValue()).To(Equal(want), "requests %v", labels)
	}
	g.Expect(seriesOf(g, m.requests)).To(Equal(len(requests)), "no series for cluster2 or the invalid name")
	g.Expect(seriesOf(g, m.duration)).To(Equal(2))
	g.Expect(write(g, m.duration.WithLabelValues(UnknownCluster).(prometheus.Metric)).GetHistogram().GetSampleCount()).To(Equal(uint64(5)))
	g.Expect(write(g, m.duration.WithLabelValues("cluster1").(prometheus.Metric)).GetHistogram().GetSampleCount()).To(Equal(uint64(7)))
}

// write returns m's current sample.
func write(g *WithT, m prometheus.Metric) *dto.Metric {
	d := &dto.Metric{}
	g.Expect(m.Write(d)).To(Succeed())
	return d
}

// seriesOf counts the series c has.
func seriesOf(g *WithT, c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 100)
	c.Collect(ch)
	close(ch)
	g.Expect(len(ch)).To(BeNumerically("<", cap(ch)))
	return len(ch)
}
