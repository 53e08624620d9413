// Package identity is the one home of the cluster-proxy agents' identities:
// the hub users and group they act as, the signer and organizational units
// of the proxy-agent certificate, and which konnectivity agent identifiers
// the agent of a cluster may register.
//
// The registration (CSR approval and signing) writes these identities; the
// proxy-server checks them. It imports nothing but the standard library,
// Kubernetes validation and our API names, so the tunnel can enforce it
// without controller or addon-framework code.
//
// # Which identifiers belong to a cluster
//
// The proxy-agent of cluster C, installed in namespace N, registers
// --agent-identifiers=host=C&host=C.N&host=<ServiceProxyHost(C)>: C and C.N
// route kube-apiserver dials, the service-proxy host routes to the
// service-proxy. An identifier belongs to C when it is a host identifier
// whose value is C, C.<label>, or ServiceProxyHost(C). No other kind of
// identifier (cidr, ipv4, ipv6, default-route) belongs to any cluster.
//
// Names with dots are unambiguous because a managed cluster's name is a
// DNS-1123 label: OCM gives every cluster a hub namespace of the same name,
// so a cluster named "a.b" cannot join. host=a.b therefore always means
// cluster "a" in namespace "b", the first dot separates the cluster from the
// namespace, and a certificate naming a cluster that is not a DNS-1123 label
// is not an agent certificate (ClusterFromCertificate refuses it).
package identity

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// The hub identities of the agents.
const (
	// SignerName is the custom signer of proxy-agent certificates.
	SignerName = "open-cluster-management.io/proxy-agent-signer"
	// AddonAgentUser is the hub user of the addon-agent (kube-client
	// registration, signed by the hub's kube-apiserver-client signer).
	AddonAgentUser = "open-cluster-management:cluster-proxy:addon-agent"
	// ProxyAgentUser is the common name of proxy-agent certificates.
	ProxyAgentUser = "open-cluster-management:cluster-proxy:proxy-agent"
	// AgentGroup is the group (certificate organization) of every
	// cluster-proxy agent identity on the hub.
	AgentGroup = "open-cluster-management:cluster-proxy"

	clusterOUPrefix = "cluster:"
	// hostKey is the konnectivity identifier type that routes by host name.
	hostKey = "host"
)

// SignerOUPrefix starts every SignerOU.
const SignerOUPrefix = "signer-"

// SignerOU is the organizational unit that names the CA in proxy-agent
// certificates: signer-<first 32 hex digits of sha256(CA certificate)>, so a
// new CA makes agents request new certificates.
func SignerOU(ca *x509.Certificate) string {
	sum := sha256.Sum256(ca.Raw)
	return SignerOUPrefix + hex.EncodeToString(sum[:16])
}

// ClusterOU is the organizational unit that names the managed cluster in its
// proxy-agent certificate: cluster:<name>.
func ClusterOU(cluster string) string { return clusterOUPrefix + cluster }

// ClusterFromCertificate returns the managed cluster a proxy-agent
// certificate was issued to, from its ClusterOU. It fails when the
// certificate names no cluster, names more than one, or names one that is not
// a DNS-1123 label.
func ClusterFromCertificate(cert *x509.Certificate) (string, error) {
	var clusters []string
	for _, ou := range cert.Subject.OrganizationalUnit {
		if c, ok := strings.CutPrefix(ou, clusterOUPrefix); ok {
			clusters = append(clusters, c)
		}
	}
	switch {
	case len(clusters) == 0:
		return "", fmt.Errorf("certificate %q names no cluster (no organizational unit %s<cluster>)", cert.Subject.CommonName, clusterOUPrefix)
	case len(clusters) > 1:
		return "", fmt.Errorf("certificate %q names more than one cluster: %s", cert.Subject.CommonName, strings.Join(clusters, ", "))
	}
	if err := ValidateClusterName(clusters[0]); err != nil {
		return "", fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, err)
	}
	return clusters[0], nil
}

// ValidateClusterName fails unless cluster is a DNS-1123 label, as every
// managed cluster's name is.
func ValidateClusterName(cluster string) error {
	if msgs := validation.IsDNS1123Label(cluster); len(msgs) > 0 {
		return fmt.Errorf("cluster name %q is not a DNS-1123 label: %s", cluster, strings.Join(msgs, "; "))
	}
	return nil
}

// AgentIdentifiers returns the identifiers the proxy-agent of cluster,
// installed in namespace, registers, in the konnectivity --agent-identifiers
// order: host=<cluster>&host=<cluster>.<namespace> when kubeAPIProxy routes
// to the cluster's kube-apiserver, then host=<ServiceProxyHost(cluster)>.
func AgentIdentifiers(cluster, namespace string, kubeAPIProxy bool) []string {
	var ids []string
	if kubeAPIProxy {
		ids = append(ids, hostKey+"="+cluster, hostKey+"="+cluster+"."+namespace)
	}
	return append(ids, hostKey+"="+proxyv1alpha1.ServiceProxyHost(cluster))
}

// HostBelongsTo reports whether an agent of cluster may route host: host is
// the cluster's name, <cluster>.<namespace label>, or the cluster's
// service-proxy host. Host names compare case-insensitively.
func HostBelongsTo(cluster, host string) bool {
	host = strings.ToLower(host)
	if host == cluster || host == proxyv1alpha1.ServiceProxyHost(cluster) {
		return true
	}
	namespace, ok := strings.CutPrefix(host, cluster+".")
	return ok && len(validation.IsDNS1123Label(namespace)) == 0
}

// RefusedIdentifierError says which identifier an agent of a cluster may not
// register.
type RefusedIdentifierError struct {
	// Cluster is the cluster named by the agent's certificate.
	Cluster string
	// Identifier is the refused identifier, as key=value.
	Identifier string
}

// Error names the certificate's cluster and the refused identifier.
func (e *RefusedIdentifierError) Error() string {
	return fmt.Sprintf("an agent of cluster %s may not register identifier %s: only host=%s, host=%s.<namespace> and host=%s belong to it",
		e.Cluster, e.Identifier, e.Cluster, e.Cluster, proxyv1alpha1.ServiceProxyHost(e.Cluster))
}

// CheckIdentifiers verifies that every identifier in identifiers (the
// URL-query form of --agent-identifiers, host=a&host=b) belongs to cluster.
// The error is a *RefusedIdentifierError for the first identifier that does
// not; an unparsable list, or an empty one, is refused too.
func CheckIdentifiers(cluster, identifiers string) error {
	if err := ValidateClusterName(cluster); err != nil {
		return err
	}
	if identifiers == "" {
		return errors.New("the agent registers no identifiers")
	}
	// The order of the list, not of a parsed map, decides which refusal is
	// reported, so the same list always gets the same error.
	for _, pair := range strings.Split(identifiers, "&") {
		key, value, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(key)
		if err != nil {
			return fmt.Errorf("failed to parse agent identifier %q: %w", pair, err)
		}
		v, err := url.QueryUnescape(value)
		if err != nil {
			return fmt.Errorf("failed to parse agent identifier %q: %w", pair, err)
		}
		if k != hostKey || !HostBelongsTo(cluster, v) {
			return &RefusedIdentifierError{Cluster: cluster, Identifier: k + "=" + v}
		}
	}
	return nil
}
