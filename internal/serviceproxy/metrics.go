package serviceproxy

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"open-cluster-management.io/cluster-proxy/internal/serviceproxy/authn"
)

// ProviderClientCertificate names the check of the caller's client
// certificate in the authentication metric: every request passes it first.
const ProviderClientCertificate = "client-certificate"

// Values of the requests metric's target label.
const (
	// targetKubeAPIServer: the cluster's kube-apiserver.
	targetKubeAPIServer = "kube-apiserver"
	// targetService: a Service of the cluster.
	targetService = "service"
	// targetNone: the request was refused before its target was known (a
	// caller without the right certificate, missing target headers).
	targetNone = ""
)

// Metrics are the service-proxy's Prometheus metrics (docs/metrics.md):
// answers by target and status code, and authentication outcomes by
// provider. Every label has a small fixed set of values: nothing is per
// caller, user or connection.
type Metrics struct {
	requests        *prometheus.CounterVec
	authentications *prometheus.CounterVec
}

// NewMetrics returns the metrics, with a zero series for the outcomes of
// the client certificate check and of each of providers, so that rates start
// from zero.
func NewMetrics(providers []string) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cluster_proxy_service_proxy_requests_total",
			Help: "Requests the service-proxy answered, by target (kube-apiserver, service, or empty when refused before the target was known) and HTTP status code.",
		}, []string{"target", "code"}),
		authentications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cluster_proxy_service_proxy_authentications_total",
			Help: "Outcomes (authenticated, rejected, error) of the service-proxy's authentication steps, by provider: client-certificate (the caller), then managed, hub and oidc (bearer tokens for the kube-apiserver).",
		}, []string{"provider", "result"}),
	}
	for _, outcome := range []authn.Outcome{authn.Authenticated, authn.Rejected} {
		m.authentications.WithLabelValues(ProviderClientCertificate, string(outcome))
	}
	for _, p := range providers {
		for _, outcome := range []authn.Outcome{authn.Authenticated, authn.Rejected, authn.Failed} {
			m.authentications.WithLabelValues(p, string(outcome))
		}
	}
	return m
}

// Collectors are the metrics to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.authentications}
}

// answered counts an answer; m may be nil (no metrics).
func (m *Metrics) answered(target string, code int) {
	if m != nil {
		m.requests.WithLabelValues(target, strconv.Itoa(code)).Inc()
	}
}

// authenticated counts a provider's outcome; m may be nil (no metrics).
func (m *Metrics) authenticated(provider string, outcome authn.Outcome) {
	if m != nil {
		m.authentications.WithLabelValues(provider, string(outcome)).Inc()
	}
}
