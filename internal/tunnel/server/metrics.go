package server

import (
	"crypto/x509"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"open-cluster-management.io/cluster-proxy/internal/identity"
)

// The reasons of cluster_proxy_proxy_server_dial_errors_total: a fixed
// set, so the series stay bounded by the clusters.
const (
	// reasonNoAgent: no connected agent serves the dialled address (the
	// cluster is then unknown: "").
	reasonNoAgent = "no_agent"
	// reasonAgentError: the agent answered the dial with an error (its
	// backend refused or could not be reached in time) or closed it.
	reasonAgentError = "agent_error"
	// reasonTimeout: the agent did not answer within
	// --backend-dial-timeout.
	reasonTimeout = "timeout"
	// reasonAgentGone: the agent's stream ended, or failed to take the
	// dial, before it answered.
	reasonAgentGone = "agent_gone"
	// reasonCancelled: the frontend cancelled the dial (DIAL_CLS) or went
	// away before it got the answer.
	reasonCancelled = "cancelled"
	// reasonProtocol: a frontend reused a pending dial's ID, or an agent
	// answered with a connection ID already in use.
	reasonProtocol = "protocol"
)

// dialDurationBuckets span 100 µs (an agent next to its backend) to 10 s
// (twice the agent's backend dial timeout), three per decade.
var dialDurationBuckets = []float64{0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10}

// metrics are the server's per-cluster series (docs/metrics.md).
type metrics struct {
	dials        *prometheus.CounterVec
	dialErrors   *prometheus.CounterVec
	dialDuration *prometheus.HistogramVec
	dataBytes    *prometheus.CounterVec
	refusals     *prometheus.CounterVec
	// unknown counts the dials that reach no agent (cluster "").
	unknown *clusterStats
}

func newMetrics() *metrics {
	m := &metrics{
		dials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cluster_proxy_proxy_server_dials_total",
			Help: `Dials received from frontends, by the cluster of the agent they went to ("" when none).`,
		}, []string{"cluster"}),
		dialErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cluster_proxy_proxy_server_dial_errors_total",
			Help: "Dials that did not open a connection, by cluster and reason: no_agent, agent_error, timeout, agent_gone, cancelled, protocol.",
		}, []string{"cluster", "reason"}),
		dialDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cluster_proxy_proxy_server_dial_duration_seconds",
			Help:    "Time from a frontend's DIAL_REQ to its agent's successful DIAL_RSP, by cluster.",
			Buckets: dialDurationBuckets,
		}, []string{"cluster"}),
		dataBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cluster_proxy_proxy_server_data_bytes_total",
			Help: "DATA payload bytes of the cluster's connections, by direction: to_agent (from frontends) or from_agent.",
		}, []string{"cluster", "direction"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cluster_proxy_proxy_server_agent_refusals_total",
			Help: "Agent streams refused because their certificate does not allow the identifiers they register, by the certificate's cluster.",
		}, []string{"cluster"}),
	}
	// Dials and their errors only: nothing connects to an unknown cluster.
	m.unknown = &clusterStats{metrics: m}
	m.unknown.traffic.Store(&clusterTraffic{dials: m.dials.WithLabelValues("")})
	return m
}

// clusterStats is one cluster's count of agents and connections and the
// children of its series, resolved once per cluster (not per packet), so
// the data path adds to them without a lookup.
type clusterStats struct {
	name    string
	metrics *metrics
	// agents and conns are the cluster's agent streams and open
	// connections; guarded by Server.mu. An entry of Server.clusters is
	// removed when its last agent goes (its connections went with it).
	agents, conns int
	// traffic is set at the cluster's first dial, so a cluster whose
	// agents are idle has no dial or byte series: a scrape of thousands
	// of idle agents stays small.
	traffic atomic.Pointer[clusterTraffic]
}

// clusterTraffic are the children of a cluster's dial and byte series.
type clusterTraffic struct {
	dials              prometheus.Counter
	dialDuration       prometheus.Observer
	toAgent, fromAgent prometheus.Counter
}

func (m *metrics) newClusterStats(cluster string) *clusterStats {
	return &clusterStats{name: cluster, metrics: m}
}

// dialed counts a dial sent to the cluster's agent, resolving the
// cluster's traffic series at its first.
func (c *clusterStats) dialed() {
	t := c.traffic.Load()
	if t == nil {
		t = &clusterTraffic{
			dials:        c.metrics.dials.WithLabelValues(c.name),
			dialDuration: c.metrics.dialDuration.WithLabelValues(c.name),
			toAgent:      c.metrics.dataBytes.WithLabelValues(c.name, "to_agent"),
			fromAgent:    c.metrics.dataBytes.WithLabelValues(c.name, "from_agent"),
		}
		if !c.traffic.CompareAndSwap(nil, t) {
			t = c.traffic.Load()
		}
	}
	t.dials.Inc()
}

// dialFailed counts n dials of the cluster that failed for reason.
func (c *clusterStats) dialFailed(reason string, n int) {
	if n > 0 {
		c.metrics.dialErrors.WithLabelValues(c.name, reason).Add(float64(n))
	}
}

// dialAnswered counts a dial that opened a connection after d.
func (c *clusterStats) dialAnswered(d time.Duration) {
	if t := c.traffic.Load(); t != nil {
		t.dialDuration.Observe(d.Seconds())
	}
}

// sent counts n DATA bytes a frontend sent to the cluster's agent; a
// connection's first dial set the traffic series up.
func (c *clusterStats) sent(n int) {
	if t := c.traffic.Load(); t != nil {
		t.toAgent.Add(float64(n))
	}
}

// received counts n DATA bytes the cluster's agent sent.
func (c *clusterStats) received(n int) {
	if t := c.traffic.Load(); t != nil {
		t.fromAgent.Add(float64(n))
	}
}

// clusterOf is the cluster an agent's certificate names, "" when it
// presented none or it names none.
func clusterOf(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	cluster, err := identity.ClusterFromCertificate(cert)
	if err != nil {
		return ""
	}
	return cluster
}

// clusterGauges are the per-cluster gauges, read from the server's state
// at each scrape: a cluster has series while it has an agent.
type clusterGauges struct {
	s            *Server
	agents, open *prometheus.Desc
}

// Describe sends the gauges' descriptions.
func (g *clusterGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.agents
	ch <- g.open
}

// Collect sends each cluster's agents and open connections.
func (g *clusterGauges) Collect(ch chan<- prometheus.Metric) {
	type counts struct {
		name          string
		agents, conns int
	}
	g.s.mu.Lock()
	all := make([]counts, 0, len(g.s.clusters))
	for _, c := range g.s.clusters {
		all = append(all, counts{c.name, c.agents, c.conns})
	}
	g.s.mu.Unlock()
	for _, c := range all {
		ch <- prometheus.MustNewConstMetric(g.agents, prometheus.GaugeValue, float64(c.agents), c.name)
		ch <- prometheus.MustNewConstMetric(g.open, prometheus.GaugeValue, float64(c.conns), c.name)
	}
}

// Collectors are the server's metrics (docs/metrics.md). Two keep
// apiserver-network-proxy's names, so dashboards built on its proxy-server
// keep working:
// konnectivity_network_proxy_server_ready_backend_connections (one per
// host identifier an agent registered, plus one per agent when a default
// strategy is in use) and
// konnectivity_network_proxy_server_pending_backend_dials. The others are
// ours, most of them per cluster (never per connection or dial).
func (s *Server) Collectors() []prometheus.Collector {
	defaultStrategy := false
	for _, st := range s.opts.Strategies {
		defaultStrategy = defaultStrategy || st != StrategyDestHost
	}
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "konnectivity_network_proxy", Subsystem: "server", Name: "ready_backend_connections",
			Help: "Routes to connected agents: one per host identifier an agent registered, plus one per agent under a default strategy.",
		}, func() float64 {
			s.mu.Lock()
			defer s.mu.Unlock()
			n := 0
			for _, list := range s.byHost {
				n += len(list)
			}
			if defaultStrategy {
				n += len(s.backends)
			}
			return float64(n)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "konnectivity_network_proxy", Subsystem: "server", Name: "pending_backend_dials",
			Help: "Dials sent to an agent and not yet answered.",
		}, func() float64 { return float64(s.Stats().PendingDials) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cluster_proxy_proxy_server_open_connections", ConstLabels: prometheus.Labels{"flow_control": "credit"},
			Help: "Open tunnelled connections, by flow control: credit (our agent, per-connection credit) or none (konnectivity's protocol alone).",
		}, func() float64 { return float64(s.Stats().WithCredit) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cluster_proxy_proxy_server_open_connections", ConstLabels: prometheus.Labels{"flow_control": "none"},
			Help: "Open tunnelled connections, by flow control: credit (our agent, per-connection credit) or none (konnectivity's protocol alone).",
		}, func() float64 { st := s.Stats(); return float64(st.Connections - st.WithCredit) }),
		&clusterGauges{
			s: s,
			agents: prometheus.NewDesc("cluster_proxy_proxy_server_cluster_agents",
				"Agent streams connected, by the cluster their certificate names; no series once a cluster has no agent.", []string{"cluster"}, nil),
			open: prometheus.NewDesc("cluster_proxy_proxy_server_cluster_open_connections",
				"Open tunnelled connections to the cluster's agents; no series once a cluster has no agent.", []string{"cluster"}, nil),
		},
		s.metrics.dials,
		s.metrics.dialErrors,
		s.metrics.dialDuration,
		s.metrics.dataBytes,
		s.metrics.refusals,
	}
}
