package addonmanager

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"open-cluster-management.io/cluster-proxy/internal/agentaddon"
	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/proxyconfig"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// Values of the certificate label beyond proxyconfig's Certificate*.
const (
	// certificateCA is the cluster-proxy CA (the signer Secret).
	certificateCA = "ca"
	// certificateServiceProxy is the service-proxy serving certificate
	// (`cluster-proxy controllers` issues it, the addon-manager copies it to
	// every managed cluster).
	certificateServiceProxy = "service-proxy-server"
)

var (
	certificateExpiryDesc = prometheus.NewDesc("cluster_proxy_manager_certificate_expiry_timestamp_seconds",
		"When a hub certificate of cluster-proxy expires (its NotAfter, Unix seconds), by which certificate it is and the Secret holding it.",
		[]string{"certificate", "namespace", "name"}, nil)
	agentCertificateExpiryDesc = prometheus.NewDesc("cluster_proxy_manager_agent_certificate_expiry_timestamp_seconds",
		"When the newest proxy-agent certificate the addon-manager signed for a cluster expires (NotAfter, Unix seconds).",
		[]string{"cluster"}, nil)
)

// certificateMetrics reports, at each scrape, when the certificates the
// addon-manager issues or hands out expire (docs/metrics.md): the CA as the
// manager last loaded it, the certificate Secrets of every
// ManagedProxyConfiguration and the service-proxy certificate, as the
// manager's watches hold them, and per cluster the newest proxy-agent
// certificate it has seen signed. It runs on the leader, where all of these
// are kept.
type certificateMetrics struct {
	// reader is the manager's cache (ManagedProxyConfigurations, their
	// Secrets, the addon's CSRs, ManagedClusters).
	reader client.Reader
	// ca is the CA Secret's store.
	ca *signer.Store
	// serviceProxy watches the service-proxy certificate; nil when the
	// service-proxy is off.
	serviceProxy *certificateTrigger

	// ctx bounds the cache reads of a scrape; set by Start before the
	// metrics are registered.
	ctx context.Context

	mu sync.Mutex
	// agents are the latest expiry of each cluster's proxy-agent
	// certificate. They outlive the CSRs (the hub deletes issued CSRs after
	// an hour) until the cluster is deleted.
	agents map[string]time.Time
}

var _ prometheus.Collector = &certificateMetrics{}

// Start registers the metrics with controller-runtime's registry, which the
// manager's metrics endpoint serves, until ctx is done. A failure to
// register (another manager of the same process has them) costs the
// metrics, not the manager.
func (m *certificateMetrics) Start(ctx context.Context) error {
	m.ctx = ctx
	m.agents = map[string]time.Time{}
	if err := ctrlmetrics.Registry.Register(m); err != nil {
		klog.FromContext(ctx).Error(err, "The certificate expiry metrics are not served")
		return nil
	}
	<-ctx.Done()
	ctrlmetrics.Registry.Unregister(m)
	return nil
}

// Describe sends the metrics' descriptions.
func (m *certificateMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- certificateExpiryDesc
	ch <- agentCertificateExpiryDesc
}

// Collect sends the expiry of every certificate it can read now.
func (m *certificateMetrics) Collect(ch chan<- prometheus.Metric) {
	ctx := m.ctx
	log := klog.FromContext(ctx)
	expiry := func(cert *x509.Certificate, labels ...string) {
		ch <- prometheus.MustNewConstMetric(certificateExpiryDesc, prometheus.GaugeValue, float64(cert.NotAfter.Unix()), labels...)
	}
	if ca := m.ca.Certificate(); ca != nil {
		expiry(ca, certificateCA, m.ca.Namespace, m.ca.Name)
	}
	for _, s := range m.secretCertificates(ctx) {
		cert, err := certs.ParseCertificate(s.secret.Data[corev1.TLSCertKey])
		if err != nil {
			log.V(4).Info("no certificate expiry for a Secret", "secret", klog.KObj(s.secret), "reason", err.Error())
			continue
		}
		expiry(cert, s.certificate, s.secret.Namespace, s.secret.Name)
	}
	agents, err := m.agentCertificates(ctx)
	if err != nil {
		log.Error(err, "Failed to read the proxy-agent certificates for metrics")
		return
	}
	for cluster, notAfter := range agents {
		ch <- prometheus.MustNewConstMetric(agentCertificateExpiryDesc, prometheus.GaugeValue, float64(notAfter.Unix()), cluster)
	}
}

// heldCertificate is a Secret holding a certificate, and which one.
type heldCertificate struct {
	certificate string
	secret      *corev1.Secret
}

// secretCertificates returns the certificate Secrets of every
// ManagedProxyConfiguration and the service-proxy certificate Secret, those
// that exist.
func (m *certificateMetrics) secretCertificates(ctx context.Context) []heldCertificate {
	var out []heldCertificate
	if s := m.serviceProxy.secret(); s != nil {
		out = append(out, heldCertificate{certificate: certificateServiceProxy, secret: s})
	}
	mpcs := &proxyv1alpha1.ManagedProxyConfigurationList{}
	if err := m.reader.List(ctx, mpcs); err != nil {
		klog.FromContext(ctx).Error(err, "Failed to list the ManagedProxyConfigurations for metrics")
		return out
	}
	for i := range mpcs.Items {
		for _, c := range proxyconfig.CertificateSecrets(&mpcs.Items[i]) {
			secret := &corev1.Secret{}
			if err := m.reader.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: c.Name}, secret); err != nil {
				continue // not issued yet, or being reissued
			}
			out = append(out, heldCertificate{certificate: c.Certificate, secret: secret})
		}
	}
	return out
}

// agentCertificates records the proxy-agent certificates of the addon's
// CSRs still on the hub, forgets the clusters that are gone, and returns the
// latest expiry per cluster.
func (m *certificateMetrics) agentCertificates(ctx context.Context) (map[string]time.Time, error) {
	csrs := &certificatesv1.CertificateSigningRequestList{}
	if err := m.reader.List(ctx, csrs, client.MatchingLabels{addonapiv1beta1.AddonLabelKey: agentaddon.AddonName}); err != nil {
		return nil, fmt.Errorf("failed to list the certificate requests: %w", err)
	}
	clusters := &clusterv1.ManagedClusterList{}
	if err := m.reader.List(ctx, clusters); err != nil {
		return nil, fmt.Errorf("failed to list the managed clusters: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range csrs.Items {
		csr := &csrs.Items[i]
		if csr.Spec.SignerName != identity.SignerName || len(csr.Status.Certificate) == 0 {
			continue
		}
		cert, err := certs.ParseCertificate(csr.Status.Certificate)
		if err != nil {
			continue
		}
		// The cluster the certificate names, which is what the
		// proxy-server holds the agent to.
		cluster, err := identity.ClusterFromCertificate(cert)
		if err != nil {
			continue
		}
		if cert.NotAfter.After(m.agents[cluster]) {
			m.agents[cluster] = cert.NotAfter
		}
	}
	exists := make(map[string]bool, len(clusters.Items))
	for _, c := range clusters.Items {
		exists[c.Name] = true
	}
	out := make(map[string]time.Time, len(m.agents))
	for cluster, notAfter := range m.agents {
		if !exists[cluster] {
			delete(m.agents, cluster)
			continue
		}
		out[cluster] = notAfter
	}
	return out, nil
}
