package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/tunnel/server"
	"open-cluster-management.io/cluster-proxy/test/framework"
)

// metricValues gathers s's metrics: every series under its name and
// labels, as name{k="v",...} in label-name order; a histogram's value is
// its sample count.
func metricValues(t *testing.T, s *server.Server) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+`"`+l.GetValue()+`"`)
			}
			slices.Sort(labels)
			value := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			out[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = value
		}
	}
	return out
}

// withPrefix keeps the series whose key starts with prefix.
func withPrefix(values map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range values {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

func TestPerClusterMetrics(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	ts, echo, stopAgent := startEchoTunnel(t)
	ctx := t.Context()
	g.Expect(withPrefix(metricValues(t, ts.Server), "cluster_proxy_proxy_server_d")).To(Equal(map[string]float64{
		`cluster_proxy_proxy_server_dials_total{cluster=""}`: 0,
	}), "a cluster not dialled yet has no dial or byte series")

	// 3 connections move 10 KiB each way, one more stays open, a dial
	// finds the backend closed and one finds no agent.
	const size = 10 << 10
	g.Expect(framework.EchoConcurrently(ctx, ts.Dial, echo, 3, size)).To(Succeed())
	held, err := ts.Dial(ctx, echo)
	g.Expect(err).NotTo(HaveOccurred())
	closedPort, err := framework.FreeLoopbackPort()
	g.Expect(err).NotTo(HaveOccurred())
	_, err = ts.Dial(ctx, "127.0.0.1:"+strconv.Itoa(closedPort))
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).NotTo(ContainSubstring(server.ErrNoAgent))
	_, err = ts.Dial(ctx, "cluster9:443")
	g.Expect(err).To(MatchError(ContainSubstring(server.ErrNoAgent)))

	// The three echoes' connections close in the background.
	g.Eventually(func() float64 {
		return metricValues(t, ts.Server)[`cluster_proxy_proxy_server_cluster_open_connections{cluster="cluster1"}`]
	}).WithTimeout(5 * time.Second).Should(Equal(1.0))
	values := metricValues(t, ts.Server)
	g.Expect(withPrefix(values, "cluster_proxy_proxy_server_cluster_")).To(Equal(map[string]float64{
		`cluster_proxy_proxy_server_cluster_agents{cluster="cluster1"}`:           1,
		`cluster_proxy_proxy_server_cluster_open_connections{cluster="cluster1"}`: 1,
	}))
	g.Expect(withPrefix(values, "cluster_proxy_proxy_server_dial")).To(Equal(map[string]float64{
		`cluster_proxy_proxy_server_dials_total{cluster="cluster1"}`:                            5,
		`cluster_proxy_proxy_server_dials_total{cluster=""}`:                                    1,
		`cluster_proxy_proxy_server_dial_duration_seconds{cluster="cluster1"}`:                  4,
		`cluster_proxy_proxy_server_dial_errors_total{cluster="cluster1",reason="agent_error"}`: 1,
		`cluster_proxy_proxy_server_dial_errors_total{cluster="",reason="no_agent"}`:            1,
	}))
	g.Expect(withPrefix(values, "cluster_proxy_proxy_server_data_bytes_total")).To(Equal(map[string]float64{
		`cluster_proxy_proxy_server_data_bytes_total{cluster="cluster1",direction="to_agent"}`:   3 * size,
		`cluster_proxy_proxy_server_data_bytes_total{cluster="cluster1",direction="from_agent"}`: 3 * size,
	}))

	// A cluster whose last agent went has no gauges any more; its counters
	// stay, and the held connection counts no bytes after its agent.
	stopAgent()
	eventuallyAgents(g, ts, 0)
	values = metricValues(t, ts.Server)
	g.Expect(withPrefix(values, "cluster_proxy_proxy_server_cluster_")).To(BeEmpty())
	g.Expect(values).To(HaveKeyWithValue(`cluster_proxy_proxy_server_dials_total{cluster="cluster1"}`, 5.0))
	g.Expect(ts.Clusters()).To(BeEmpty())
	_ = held.Close()
}

func TestPendingDialsFailWithTheirAgent(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	ts, agent := startRawTunnel(t)
	// The raw agent never answers: the dial is pending until its stream
	// ends.
	dialErr := make(chan error, 1)
	go func() {
		_, err := ts.Dial(t.Context(), "cluster1:80")
		dialErr <- err
	}()
	g.Eventually(func() int { return ts.Stats().PendingDials }).WithTimeout(5 * time.Second).Should(Equal(1))
	g.Expect(agent.stream.CloseSend()).To(Succeed())
	g.Eventually(dialErr).WithTimeout(5 * time.Second).Should(Receive(MatchError(ContainSubstring("disconnected before answering"))))
	g.Expect(metricValues(t, ts.Server)).To(And(
		HaveKeyWithValue(`cluster_proxy_proxy_server_dials_total{cluster="cluster1"}`, 1.0),
		HaveKeyWithValue(`cluster_proxy_proxy_server_dial_errors_total{cluster="cluster1",reason="agent_gone"}`, 1.0),
		HaveKeyWithValue(`cluster_proxy_proxy_server_dial_duration_seconds{cluster="cluster1"}`, 0.0),
	))
}

// writeAgentCert signs an agent certificate of cluster with pki's CA,
// valid for validity from now, and writes it and its key into dir.
func writeAgentCert(t *testing.T, pki *framework.TunnelPKI, dir, cluster string, validity time.Duration, now time.Time) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	g := NewWithT(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	g.Expect(err).NotTo(HaveOccurred())
	certPEM, err := pki.CA.Sign(pkix.Name{
		CommonName:         identity.ProxyAgentUser,
		Organization:       []string{identity.AgentGroup},
		OrganizationalUnit: []string{identity.SignerOU(pki.CA.Cert), identity.ClusterOU(cluster)},
	}, key.Public(), certs.UsageClient, validity, now)
	g.Expect(err).NotTo(HaveOccurred())
	der, err := x509.MarshalPKCS8PrivateKey(key)
	g.Expect(err).NotTo(HaveOccurred())
	certFile, keyFile = filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	g.Expect(os.WriteFile(certFile, certPEM, 0o600)).To(Succeed())
	g.Expect(os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)).To(Succeed())
	cert, err = certs.ParseCertificate(certPEM)
	g.Expect(err).NotTo(HaveOccurred())
	return certFile, keyFile, cert
}

func TestClustersReportAgentsAndTheirEarliestCertificate(t *testing.T) {
	verifyNoLeaks(t)
	g := NewWithT(t)
	ts := startServer(t, destHost())
	g.Expect(ts.Clusters()).To(BeEmpty())

	// cluster1 has two agents; the second's certificate, issued an hour
	// ago for two hours, expires first.
	ts.startAgent(t, "agent-1a", "cluster1", "host=cluster1")
	short, shortKey, shortCert := writeAgentCert(t, ts.PKI, t.TempDir(), "cluster1", 2*time.Hour, time.Now().Add(-time.Hour))
	pair, err := tls.LoadX509KeyPair(short, shortKey)
	g.Expect(err).NotTo(HaveOccurred())
	ts.startAgentWithCert(t, "agent-1b", pair, "host=cluster1")
	ts.startAgent(t, "agent-2", "cluster2", "host=cluster2")
	eventuallyAgents(g, ts, 3)

	got := ts.Clusters()
	g.Expect(got).To(HaveLen(2))
	g.Expect(got[0]).To(Equal(server.ClusterState{Cluster: "cluster1", Agents: 2, Certificate: server.CertificateState{
		NotBefore: shortCert.NotBefore, NotAfter: shortCert.NotAfter, Serial: shortCert.SerialNumber.Text(16),
		IssuerCommonName: certs.CACommonName, SignerOU: identity.SignerOU(ts.PKI.CA.Cert),
	}}))
	g.Expect(got[1].Cluster).To(Equal("cluster2"))
	g.Expect(got[1].Agents).To(Equal(1))
	g.Expect(got[1].Certificate.NotAfter).To(BeTemporally(">", shortCert.NotAfter.Add(24*time.Hour)), "cluster2's own certificate")

	// Connections count per cluster.
	echo, err := framework.StartEchoServer()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(echo.Close)
	ts.startAgent(t, "agent-3", "cluster3", "ipv4=127.0.0.1")
	eventuallyAgents(g, ts, 4)
	conn, err := ts.Dial(t.Context(), echo.Addr())
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = conn.Close() }()
	got = ts.Clusters()
	g.Expect(got).To(HaveLen(3))
	g.Expect(got[2].Cluster).To(Equal("cluster3"))
	g.Expect(got[2].Connections).To(Equal(1))
	g.Expect(got[0].Connections).To(BeZero())
}
