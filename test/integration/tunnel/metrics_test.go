package tunnel_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"open-cluster-management.io/cluster-proxy/test/framework"
)

// scrapeSeries scrapes url (the Prometheus text format) and returns every
// series whose name starts with prefix, keyed by name and labels as
// name{k="v",...} in label-name order; a histogram's value is its sample
// count.
func scrapeSeries(ctx context.Context, url, prefix string) (map[string]float64, error) {
	status, body, err := httpGet(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("failed to scrape %s: %w", url, err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("failed to scrape %s: status %d", url, status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("failed to parse the metrics of %s: %w", url, err)
	}
	out := map[string]float64{}
	for name, f := range families {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := make([]string, 0, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			slices.Sort(labels)
			out[name+"{"+strings.Join(labels, ",")+"}"] = m.GetCounter().GetValue() + m.GetGauge().GetValue() +
				m.GetUntyped().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return out, nil
}

// seriesFunc is scrapeSeries for Eventually.
func seriesFunc(url, prefix string) func(context.Context) (map[string]float64, error) {
	return func(ctx context.Context) (map[string]float64, error) { return scrapeSeries(ctx, url, prefix) }
}

// logLinesWith counts the occurrences of s in p's log.
func logLinesWith(p *framework.Process, s string) int {
	GinkgoHelper()
	log, err := os.ReadFile(p.LogPath)
	Expect(err).NotTo(HaveOccurred())
	return strings.Count(string(log), s)
}

var _ = Describe("Tunnel metrics", Label("tunnel", "metrics"), func() {
	It("counts each cluster's agents, dials, dial errors, bytes and refusals on the proxy-server, and the server count on the agent", func(ctx SpecContext) {
		const (
			// cluster1 and cluster2 have agents, cluster9 none.
			cluster2 = "cluster2"
			cluster9 = "cluster9"
			// refused is a host no agent of cluster1 may register.
			refused = "cluster3"
		)
		server := startProxyServer("metrics-proxy-server", 1)
		agent1 := startProxyAgent("metrics-proxy-agent-1", cluster, server.ports.Agent, "127.0.0.1")
		agent2 := startProxyAgent("metrics-proxy-agent-2", cluster2, server.ports.Agent, "127.0.0.1")
		// cluster1's certificate registering another cluster's host.
		impostor := startProxyAgentWith("metrics-impostor", cluster, server.ports.Agent, "127.0.0.1", pki,
			"--agent-identifiers=host="+refused)
		// A proxy-server saying there are 3 of them, and an agent that can
		// reach only it: "connected to 1 of 3".
		lonely := startProxyServer("metrics-lonely-proxy-server", 3)
		agent3 := startProxyAgent("metrics-proxy-agent-3", "cluster4", lonely.ports.Agent, "127.0.0.1")

		serverMetrics := server.healthURL("/metrics")
		Eventually(seriesFunc(serverMetrics, "cluster_proxy_proxy_server_cluster_agents")).WithContext(ctx).
			WithTimeout(readyTimeout).Should(Equal(map[string]float64{
			`cluster_proxy_proxy_server_cluster_agents{cluster="cluster1"}`: 1,
			`cluster_proxy_proxy_server_cluster_agents{cluster="cluster2"}`: 1,
		}), "one agent per cluster, the impostor not among them")

		// The impostor is refused under its certificate's cluster, once per
		// attempt; stopped, its count holds still and equals the refusals
		// the proxy-server logged.
		refusals := `cluster_proxy_proxy_server_agent_refusals_total{cluster="cluster1"}`
		Eventually(seriesFunc(serverMetrics, "cluster_proxy_proxy_server_agent_refusals_total")).WithContext(ctx).
			WithTimeout(readyTimeout).Should(HaveKeyWithValue(refusals, BeNumerically(">=", 1)))
		Expect(framework.StopTunnelProcess(impostor.process)).To(Succeed())

		// The workload: 7 dials to cluster1 and 3 to cluster2, each moving
		// a payload of its own size both ways; 2 dials to cluster9, which
		// has no agent; 1 dial to a cluster1 port nothing listens on.
		dialer := newDialer(server.ports.Server)
		transferred := map[string]int{}
		for i, host := range []string{cluster, cluster, cluster, cluster, cluster, cluster, cluster, cluster2, cluster2, cluster2} {
			msg := strings.Repeat(strconv.Itoa(i), 1000*(i+1)+i)
			Expect(echoThrough(ctx, dialer, host, msg)).To(Succeed())
			transferred[host] += len(msg)
		}
		for range 2 {
			Expect(expectNoAgent(ctx, dialer, cluster9)).To(Succeed())
		}
		closedPort, err := framework.FreeTunnelPort()
		Expect(err).NotTo(HaveOccurred())
		_, err = dialer.DialContext(ctx, "tcp", net.JoinHostPort(cluster, strconv.Itoa(closedPort)))
		Expect(err).To(MatchError(ContainSubstring("refused")), "the agent's backend dial fails")

		// Connections close in the background once both ends are told.
		Eventually(seriesFunc(serverMetrics, "cluster_proxy_proxy_server_cluster_open_connections")).WithContext(ctx).
			WithTimeout(dialBound).Should(Equal(map[string]float64{
			`cluster_proxy_proxy_server_cluster_open_connections{cluster="cluster1"}`: 0,
			`cluster_proxy_proxy_server_cluster_open_connections{cluster="cluster2"}`: 0,
		}))
		got, err := scrapeSeries(ctx, serverMetrics, "cluster_proxy_proxy_server_")
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Printf("the proxy-server's series: %v\n", got)
		want := map[string]float64{
			`cluster_proxy_proxy_server_dials_total{cluster="cluster1"}`:                            8,
			`cluster_proxy_proxy_server_dials_total{cluster="cluster2"}`:                            3,
			`cluster_proxy_proxy_server_dials_total{cluster=""}`:                                    2,
			`cluster_proxy_proxy_server_dial_duration_seconds{cluster="cluster1"}`:                  7,
			`cluster_proxy_proxy_server_dial_duration_seconds{cluster="cluster2"}`:                  3,
			`cluster_proxy_proxy_server_dial_errors_total{cluster="cluster1",reason="agent_error"}`: 1,
			`cluster_proxy_proxy_server_dial_errors_total{cluster="",reason="no_agent"}`:            2,
			// The bytes are the payloads, exactly: no framing is counted.
			`cluster_proxy_proxy_server_data_bytes_total{cluster="cluster1",direction="to_agent"}`:   float64(transferred[cluster]),
			`cluster_proxy_proxy_server_data_bytes_total{cluster="cluster1",direction="from_agent"}`: float64(transferred[cluster]),
			`cluster_proxy_proxy_server_data_bytes_total{cluster="cluster2",direction="to_agent"}`:   float64(transferred[cluster2]),
			`cluster_proxy_proxy_server_data_bytes_total{cluster="cluster2",direction="from_agent"}`: float64(transferred[cluster2]),
			refusals: float64(logLinesWith(server.process, `"Refused an agent"`)),
			`cluster_proxy_proxy_server_cluster_agents{cluster="cluster1"}`:           1,
			`cluster_proxy_proxy_server_cluster_agents{cluster="cluster2"}`:           1,
			`cluster_proxy_proxy_server_cluster_open_connections{cluster="cluster1"}`: 0,
			`cluster_proxy_proxy_server_cluster_open_connections{cluster="cluster2"}`: 0,
			// The totals over every cluster, as before.
			`cluster_proxy_proxy_server_open_connections{flow_control="credit"}`: 0,
			`cluster_proxy_proxy_server_open_connections{flow_control="none"}`:   0,
		}
		Expect(got).To(Equal(want), "every series of the proxy-server, and nothing else")
		Expect(got[refusals]).To(BeNumerically(">=", 1))

		// The agents: connected to 1 of 1 and 1 of 3 proxy-servers.
		for _, c := range []struct {
			agent       *proxyAgent
			servers     float64
			serverCount float64
		}{{agent1, 1, 1}, {agent2, 1, 1}, {agent3, 1, 3}} {
			Eventually(seriesFunc(c.agent.healthURL("/metrics"), "")).WithContext(ctx).WithTimeout(readyTimeout).Should(And(
				HaveKeyWithValue("konnectivity_network_proxy_agent_open_server_connections{}", c.servers),
				HaveKeyWithValue("cluster_proxy_proxy_agent_server_count{}", c.serverCount),
			), c.agent.name)
		}
	})
})
