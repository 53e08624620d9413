package proxyconfig

import (
	"net"
	"slices"
	"strings"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// UserServerSecretName is the Secret holding the user-server's serving
// certificate, issued when spec.userServer is set.
const UserServerSecretName = proxyv1alpha1.UserServerSecretName

// UserServerServiceName is the Service of the hub user-server.
const UserServerServiceName = proxyv1alpha1.UserServerServiceName

// Which certificate a Secret holds, as CertificateSecret names it.
const (
	// CertificateProxyServer serves the proxy-servers' frontend to hub clients.
	CertificateProxyServer = "proxy-server"
	// CertificateAgentServer serves the proxy-servers' agent port.
	CertificateAgentServer = "agent-server"
	// CertificateProxyClient is the hub clients' (the user-server's) client
	// certificate.
	CertificateProxyClient = "proxy-client"
	// CertificateUserServer serves the user-server.
	CertificateUserServer = "user-server"
)

// CertificateSecret is a certificate Secret the reconciler keeps for a
// ManagedProxyConfiguration.
type CertificateSecret struct {
	// Certificate says which certificate the Secret holds:
	// CertificateProxyServer, CertificateAgentServer, CertificateProxyClient
	// or CertificateUserServer.
	Certificate string
	// Namespace and Name locate the kubernetes.io/tls Secret.
	Namespace, Name string
}

// CertificateSecrets lists the certificate Secrets mpc asks for.
func CertificateSecrets(mpc *proxyv1alpha1.ManagedProxyConfiguration) []CertificateSecret {
	desired := desiredCertificates(mpc, nil)
	out := make([]CertificateSecret, 0, len(desired))
	for _, c := range desired {
		out = append(out, CertificateSecret{Certificate: c.name, Namespace: mpc.Spec.ProxyServer.Namespace, Name: c.secretName})
	}
	return out
}

// certificate is one certificate Secret the reconciler keeps current.
type certificate struct {
	// name says which certificate it is (CertificateProxyServer, ...).
	name string
	// secretName is the kubernetes.io/tls Secret in the proxy-server namespace.
	secretName string
	// condition reports its state on the ManagedProxyConfiguration.
	condition string
	spec      certs.LeafSpec
}

// desiredCertificates lists the certificates mpc asks for. entrypointAddrs are
// the addresses agents dial (host name or load balancer addresses), which
// the certificates must name.
func desiredCertificates(mpc *proxyv1alpha1.ManagedProxyConfiguration, entrypointAddrs []string) []certificate {
	ns := mpc.Spec.ProxyServer.Namespace
	svc := mpc.Spec.ProxyServer.InClusterServiceName
	var additional []string
	if ss := mpc.Spec.Authentication.Signer.SelfSigned; ss != nil {
		additional = ss.AdditionalSANs
	}
	sans := normalizeSANs(append(append(slices.Clone(additional),
		"127.0.0.1", "localhost", svc+"."+ns, svc+"."+ns+".svc"), entrypointAddrs...))
	secrets := mpc.Spec.Authentication.Dump.Secrets

	out := []certificate{
		{
			name:       CertificateProxyServer,
			secretName: secrets.SigningProxyServerSecretName,
			condition:  proxyv1alpha1.ConditionTypeProxyServerSecretSigned,
			spec:       certs.LeafSpec{CommonName: "cluster-proxy-proxy-server", SANs: sans, Usage: certs.UsageServing},
		},
		{
			name:       CertificateAgentServer,
			secretName: secrets.SigningAgentServerSecretName,
			condition:  proxyv1alpha1.ConditionTypeAgentServerSecretSigned,
			spec:       certs.LeafSpec{CommonName: "cluster-proxy-agent-server", SANs: sans, Usage: certs.UsageServing},
		},
		{
			name:       CertificateProxyClient,
			secretName: secrets.SigningProxyClientSecretName,
			condition:  proxyv1alpha1.ConditionTypeProxyClientSecretSigned,
			spec:       certs.LeafSpec{CommonName: "cluster-proxy-proxy-client", SANs: sans, Usage: certs.UsageClient},
		},
	}
	if mpc.Spec.UserServer != nil {
		userSANs := normalizeSANs(append(slices.Clone(mpc.Spec.UserServer.AdditionalSANs),
			"127.0.0.1", "localhost", UserServerServiceName,
			UserServerServiceName+"."+ns, UserServerServiceName+"."+ns+".svc",
			UserServerServiceName+"."+ns+".svc.cluster.local"))
		out = append(out, certificate{
			name:       CertificateUserServer,
			secretName: UserServerSecretName,
			condition:  proxyv1alpha1.ConditionTypeUserServerSecretSigned,
			spec:       certs.LeafSpec{CommonName: "cluster-proxy-user-server", SANs: userSANs, Usage: certs.UsageServing},
		})
	}
	return out
}

// normalizeSANs sorts and deduplicates SANs (DNS names compared
// case-insensitively, IPs by value) so the list is stable.
func normalizeSANs(sans []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range sans {
		s = strings.TrimSpace(s)
		key := strings.ToLower(s)
		if ip := net.ParseIP(s); ip != nil {
			key = ip.String()
			s = key
		}
		if s == "" || seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}
