package userserver

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// UnknownCluster is the cluster label of a request whose cluster the
// user-server has never reached: a path that names no valid cluster, or a
// name no agent serves. Clients cannot create series at will: a cluster
// gets series of its own only once its service-proxy answered through the
// tunnel, which only an agent with that cluster's certificate can make
// happen. No cluster is named "" (names are DNS labels).
const UnknownCluster = ""

// durationBuckets are the bounds, in seconds, of the time to an answer's
// headers: from a kube GET served at once (about a millisecond) to a slow
// list.
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Metrics are the user-server's Prometheus metrics (docs/metrics.md):
// answers by cluster and status code, and the time to an answer's headers
// by cluster. Series are per cluster, never per user or connection, and a
// cluster has series only once it was reached (see UnknownCluster).
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	mu sync.RWMutex
	// reached are the clusters whose service-proxy answered at least once.
	reached map[string]bool
}

// NewMetrics returns the user-server's metrics, with no cluster reached.
func NewMetrics() *Metrics {
	return &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cluster_proxy_user_server_requests_total",
			Help: `Requests the user-server answered, by cluster (empty until the cluster's service-proxy has answered once) and HTTP status code.`,
		}, []string{"cluster", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cluster_proxy_user_server_request_duration_seconds",
			Help:    `Time from a request's arrival to its answer's headers, by cluster (empty until the cluster's service-proxy has answered once); a watch, exec or followed log counts until it is set up.`,
			Buckets: durationBuckets,
		}, []string{"cluster"}),
		reached: map[string]bool{},
	}
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.duration}
}

// answered counts an answer with code to a request for cluster that
// arrived at start. fromCluster says that the cluster's service-proxy gave
// the answer, which makes the cluster known. m may be nil (no metrics).
func (m *Metrics) answered(cluster string, fromCluster bool, code int, start time.Time) {
	if m == nil {
		return
	}
	label := m.clusterLabel(cluster, fromCluster)
	m.requests.WithLabelValues(label, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(label).Observe(time.Since(start).Seconds())
}

// clusterLabel is cluster once its service-proxy has answered (now, when
// reached, or before), UnknownCluster otherwise.
func (m *Metrics) clusterLabel(cluster string, reached bool) string {
	if cluster == UnknownCluster {
		return UnknownCluster
	}
	if reached {
		m.mu.Lock()
		m.reached[cluster] = true
		m.mu.Unlock()
		return cluster
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.reached[cluster] {
		return cluster
	}
	return UnknownCluster
}
