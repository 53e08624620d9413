package serviceproxy_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/servicecert"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// metricSamples scrapes url and returns the samples of metric name, each
// keyed by its labels as `a="x",b="y"` (names in order; "" without labels).
// A histogram's value is its number of observations.
func metricSamples(ctx context.Context, url, name string) map[string]float64 {
	GinkgoHelper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	Expect(err).NotTo(HaveOccurred())
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}).Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	Expect(resp.StatusCode).To(Equal(http.StatusOK))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	out := map[string]float64{}
	family, ok := families[name]
	if !ok {
		return out
	}
	for _, m := range family.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
		}
		slices.Sort(labels)
		out[strings.Join(labels, ",")] = sampleValue(family.GetType(), m)
	}
	return out
}

// sampleValue is a counter's or gauge's value, a histogram's number of
// observations.
func sampleValue(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	default:
		return m.GetGauge().GetValue()
	}
}

// freeLoopbackAddress is 127.0.0.1 with a port free a moment ago.
func freeLoopbackAddress() string {
	GinkgoHelper()
	port, err := framework.FreeLoopbackPort()
	Expect(err).NotTo(HaveOccurred())
	return "127.0.0.1:" + strconv.Itoa(port)
}

// serviceProxyIP returns a loopback address other than 127.0.0.1 on which
// the service-proxy port (7443, which the user-server always dials) is free.
func serviceProxyIP() string {
	GinkgoHelper()
	port := strconv.Itoa(int(proxyv1alpha1.ServiceProxyPort))
	for range 20 {
		n, err := rand.Int(rand.Reader, big.NewInt(100*250))
		Expect(err).NotTo(HaveOccurred())
		ip := fmt.Sprintf("127.0.%d.%d", 100+n.Int64()/250, 2+n.Int64()%250)
		if l, err := net.Listen("tcp", net.JoinHostPort(ip, port)); err == nil {
			_ = l.Close()
			return ip
		}
	}
	Fail("no loopback address has port " + port + " free")
	return ""
}

// writeFile writes data to <dir>/<name> and returns the path.
func writeFile(dir, name string, data []byte) string {
	GinkgoHelper()
	path := filepath.Join(dir, name)
	Expect(os.WriteFile(path, data, 0o600)).To(Succeed())
	return path
}

var _ = Describe("Metrics", Label("serviceproxy", "metrics"), func() {
	It("the service-proxy counts its answers by target and code and each authentication step by provider and result", func(ctx SpecContext) {
		metrics := freeLoopbackAddress()
		_, address, _ := startServiceProxy(ctx, "service-proxy-metrics", []string{"--metrics-bind-address=" + metrics}, nil)
		url := "http://" + metrics + "/metrics"
		Expect(metricSamples(ctx, url, "cluster_proxy_service_proxy_requests_total")).To(BeEmpty(), "no request yet")

		By("a scripted workload: 3 managed-token and 2 hub-token reads, a hub token refused by RBAC, 2 unknown tokens, no token, a proxy-agent caller, missing target headers")
		for range 3 {
			Expect(asUserAt(ctx, address, managedToken, http.MethodGet, "/api/v1/namespaces/"+teamNamespace+"/pods", nil).code).To(Equal(http.StatusOK))
		}
		for range 2 {
			Expect(asUserAt(ctx, address, hubToken, http.MethodGet, "/api/v1/namespaces/"+teamNamespace+"/pods", nil).code).To(Equal(http.StatusOK))
		}
		Expect(asUserAt(ctx, address, hubToken, http.MethodGet, "/api/v1/namespaces/kube-system/pods", nil).code).To(Equal(http.StatusForbidden))
		for i := range 2 {
			Expect(asUserAt(ctx, address, fmt.Sprintf("not-a-token-%d", i), http.MethodGet, "/api", nil).code).To(Equal(http.StatusUnauthorized))
		}
		Expect(asUserAt(ctx, address, "", http.MethodGet, "/api", nil).code).To(Equal(http.StatusUnauthorized))
		r, err := callAt(ctx, address, &agentCert, http.MethodGet, "/api", kubeHeaders(), nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.code).To(Equal(http.StatusForbidden))
		r, err = callAt(ctx, address, &proxyClient, http.MethodGet, "/api", http.Header{}, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.code).To(Equal(http.StatusBadRequest))

		Expect(metricSamples(ctx, url, "cluster_proxy_service_proxy_requests_total")).To(Equal(map[string]float64{
			`code="200",target="kube-apiserver"`: 5,
			`code="403",target="kube-apiserver"`: 1,
			`code="401",target="kube-apiserver"`: 3,
			`code="403",target=""`:               1,
			`code="400",target=""`:               1,
		}))
		Expect(metricSamples(ctx, url, "cluster_proxy_service_proxy_authentications_total")).To(Equal(map[string]float64{
			`provider="client-certificate",result="authenticated"`: 10,
			`provider="client-certificate",result="rejected"`:      1,
			`provider="managed",result="authenticated"`:            3,
			`provider="managed",result="rejected"`:                 5,
			`provider="managed",result="error"`:                    0,
			`provider="hub",result="authenticated"`:                3,
			`provider="hub",result="rejected"`:                     2,
			`provider="hub",result="error"`:                        0,
		}))
		Expect(metricSamples(ctx, url, "go_goroutines")).To(HaveLen(1), "Go's metrics beside ours")
	})

	Context("through the user-server, the tunnel and the service-proxy", Ordered, func() {
		const (
			cluster       = "cluster1"
			userNamespace = "cluster-proxy-users"
			// serviceProxyPath is a Service the exposed-services list
			// (absent: deny all) does not allow.
			serviceProxyPath = "/api/v1/namespaces/" + teamNamespace + "/services/web/proxy-service/"
		)
		var userServerURL, userMetrics, serviceProxyMetrics string
		var userClient *http.Client
		// tunnelProcesses are the proxy-server, the proxy-agent and the
		// user-server, whose logs a failed spec shows.
		var tunnelProcesses []*framework.Process

		AfterEach(func() {
			if !CurrentSpecReport().Failed() {
				return
			}
			for _, p := range tunnelProcesses {
				_, _ = fmt.Fprintf(GinkgoWriter, "\n----- %s log -----\n%s\n", p.Name, p.LogTail(40))
			}
		})

		BeforeAll(func(ctx SpecContext) {
			serverBinary, err := framework.BuildBinary("./cmd/proxy-server", "proxy-server")
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(os.RemoveAll, filepath.Dir(serverBinary))
			agentBinary, err := framework.BuildBinary("./cmd/proxy-agent", "proxy-agent")
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(os.RemoveAll, filepath.Dir(agentBinary))
			tunnelDir := GinkgoT().TempDir()
			pki, err := framework.NewTunnelPKI(tunnelDir, "127.0.0.1")
			Expect(err).NotTo(HaveOccurred())

			By("a proxy-server and cluster1's proxy-agent, which resolves cluster1's service-proxy host to the service-proxy's address")
			ports, err := framework.FreeProxyServerPorts()
			Expect(err).NotTo(HaveOccurred())
			server, err := framework.StartProcess("proxy-server", serverBinary, framework.ProxyServerArgs(pki, ports, "server-1", 1), nil, tunnelDir)
			Expect(err).NotTo(HaveOccurred())
			tunnelProcesses = append(tunnelProcesses, server)
			DeferCleanup(framework.StopTunnelProcess, server)
			ip := serviceProxyIP()
			agentCertFile, agentKeyFile, err := pki.AgentCert(cluster)
			Expect(err).NotTo(HaveOccurred())
			agentHealth, err := framework.FreeTunnelPort()
			Expect(err).NotTo(HaveOccurred())
			agentAdmin, err := framework.FreeTunnelPort()
			Expect(err).NotTo(HaveOccurred())
			agent, err := framework.StartProcessWithPrivateNames("proxy-agent", agentBinary,
				framework.ProxyAgentArgs(pki, "agent-1", ports.Agent, agentCertFile, agentKeyFile, framework.ProxyAgentIdentifiers(cluster, "agents"), agentHealth, agentAdmin),
				nil, tunnelDir, map[string]string{proxyv1alpha1.ServiceProxyHost(cluster): ip})
			Expect(err).NotTo(HaveOccurred())
			tunnelProcesses = append(tunnelProcesses, agent)
			DeferCleanup(framework.StopTunnelProcess, agent)
			waitCtx, cancel := context.WithTimeout(ctx, startTimeout)
			defer cancel()
			Expect(framework.WaitHTTPOK(waitCtx, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports.Health), false, server)).To(Succeed(), "the agent connects")

			By("cluster1's service-proxy at <ip>:7443, with the tunnel CA's serving certificate and trusting its proxy-client")
			spCert, spKey, err := pki.CA.Issue(servicecert.Spec, time.Now())
			Expect(err).NotTo(HaveOccurred())
			serviceProxyMetrics = freeLoopbackAddress()
			startServiceProxy(ctx, "service-proxy-tunnelled", []string{
				"--cert=" + writeFile(tunnelDir, "service-proxy.crt", spCert), "--key=" + writeFile(tunnelDir, "service-proxy.key", spKey),
				"--client-ca=" + pki.CAFile,
				"--bind-address=" + net.JoinHostPort(ip, strconv.Itoa(int(proxyv1alpha1.ServiceProxyPort))),
				"--metrics-bind-address=" + serviceProxyMetrics,
			}, nil)

			By("the user-server, reaching the proxy-server with the proxy-client certificate")
			_, err = hubClient.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: userNamespace}}, metav1.CreateOptions{})
			Expect(err).NotTo(HaveOccurred())
			hubAdmin, err := framework.KubeconfigFor(hub.Config)
			Expect(err).NotTo(HaveOccurred())
			usCert, usKey, err := pki.CA.Issue(certs.LeafSpec{CommonName: "cluster-proxy-user-server", SANs: []string{"127.0.0.1"}, Usage: certs.UsageServing}, time.Now())
			Expect(err).NotTo(HaveOccurred())
			userPort, err := framework.FreeLoopbackPort()
			Expect(err).NotTo(HaveOccurred())
			userHealth, userMetricsAddress := freeLoopbackAddress(), freeLoopbackAddress()
			userServer, err := framework.StartProcess("user-server", binary, []string{
				"user-server",
				"--host=127.0.0.1", "--port=" + strconv.Itoa(ports.Server),
				"--proxy-ca-cert=" + pki.CAFile,
				"--proxy-cert=" + writeFile(tunnelDir, "proxy-client.crt", pki.ProxyClientCert),
				"--proxy-key=" + writeFile(tunnelDir, "proxy-client.key", pki.ProxyClientKey),
				"--server-cert=" + writeFile(tunnelDir, "user-server.crt", usCert), "--server-key=" + writeFile(tunnelDir, "user-server.key", usKey),
				"--server-port=" + strconv.Itoa(userPort),
				"--service-proxy-ca-cert=" + pki.CAFile,
				"--health-bind-address=" + userHealth, "--metrics-bind-address=" + userMetricsAddress,
				"--min-drain-duration=0s",
				"--kubeconfig=" + writeFile(tunnelDir, "hub-admin.kubeconfig", hubAdmin),
			}, []string{"POD_NAMESPACE=" + userNamespace}, tunnelDir)
			Expect(err).NotTo(HaveOccurred())
			tunnelProcesses = append(tunnelProcesses, userServer)
			DeferCleanup(userServer.Stop)
			waitCtx, cancel = context.WithTimeout(ctx, startTimeout)
			defer cancel()
			Expect(framework.WaitHTTPOK(waitCtx, "http://"+userHealth+"/readyz", false, userServer)).To(Succeed(), "log:\n%s", userServer.LogTail(40))
			userServerURL = "https://127.0.0.1:" + strconv.Itoa(userPort)
			userMetrics = "http://" + userMetricsAddress + "/metrics"
			roots := x509.NewCertPool()
			roots.AddCert(pki.CA.Cert)
			userClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}, Timeout: 30 * time.Second}
			DeferCleanup(userClient.CloseIdleConnections)
		})

		// get sends GET path with token to the user-server and returns the
		// status code.
		get := func(ctx context.Context, path, token string) int {
			GinkgoHelper()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, userServerURL+path, nil)
			Expect(err).NotTo(HaveOccurred())
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := userClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			Expect(resp.Body.Close()).To(Succeed())
			return resp.StatusCode
		}

		It("the user-server counts answers and their latency per cluster, naming only the clusters it reached", func(ctx SpecContext) {
			By("a scripted workload: a refused Service before cluster1 answered, 3 reads of cluster1, 2 unknown tokens, a refused Service, 2 requests for a cluster without an agent, an invalid cluster name")
			Expect(get(ctx, "/"+cluster+serviceProxyPath, managedToken)).To(Equal(http.StatusForbidden))
			for range 3 {
				Expect(get(ctx, "/"+cluster+"/api/v1/namespaces/"+teamNamespace+"/pods", managedToken)).To(Equal(http.StatusOK))
			}
			for i := range 2 {
				Expect(get(ctx, "/"+cluster+"/api/v1/namespaces/"+teamNamespace+"/pods", fmt.Sprintf("not-a-token-%d", i))).To(Equal(http.StatusUnauthorized))
			}
			Expect(get(ctx, "/"+cluster+serviceProxyPath, managedToken)).To(Equal(http.StatusForbidden))
			for range 2 {
				Expect(get(ctx, "/cluster2/api", managedToken)).To(Equal(http.StatusServiceUnavailable))
			}
			Expect(get(ctx, "/Not_A_Cluster/api", managedToken)).To(Equal(http.StatusBadRequest))

			Expect(metricSamples(ctx, userMetrics, "cluster_proxy_user_server_requests_total")).To(Equal(map[string]float64{
				`cluster="",code="403"`:         1,
				`cluster="",code="503"`:         2,
				`cluster="",code="400"`:         1,
				`cluster="cluster1",code="200"`: 3,
				`cluster="cluster1",code="401"`: 2,
				`cluster="cluster1",code="403"`: 1,
			}))
			Expect(metricSamples(ctx, userMetrics, "cluster_proxy_user_server_request_duration_seconds")).To(Equal(map[string]float64{
				`cluster=""`:         4,
				`cluster="cluster1"`: 6,
			}))

			By("the service-proxy behind it saw the 5 requests that reached cluster1, from the user-server's proxy-client certificate")
			serviceProxyURL := "http://" + serviceProxyMetrics + "/metrics"
			Expect(metricSamples(ctx, serviceProxyURL, "cluster_proxy_service_proxy_requests_total")).To(Equal(map[string]float64{
				`code="200",target="kube-apiserver"`: 3,
				`code="401",target="kube-apiserver"`: 2,
			}))
			authentications := metricSamples(ctx, serviceProxyURL, "cluster_proxy_service_proxy_authentications_total")
			Expect(authentications).To(HaveKeyWithValue(`provider="client-certificate",result="authenticated"`, 5.0))
			Expect(authentications).To(HaveKeyWithValue(`provider="managed",result="authenticated"`, 3.0))
			Expect(authentications).To(HaveKeyWithValue(`provider="hub",result="rejected"`, 2.0))
		})
	})
})
