package server

import (
	"crypto/x509"
	"slices"
	"strings"
	"time"

	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	"open-cluster-management.io/cluster-proxy/internal/identity"
)

// ClusterState is what the server knows of one cluster's agents: how many
// are connected and what the certificate that expires first says, so a
// health check can tell an agent whose renewal did not reach it, or one
// signed by another CA, from a healthy one.
type ClusterState struct {
	// Cluster is the cluster the agents' certificates name in their
	// cluster:<name> organizational unit (identity.ClusterFromCertificate);
	// "" gathers agents whose certificate names none (only possible
	// without the command's identity checks).
	Cluster string
	// Agents is the number of agent streams connected that take new dials
	// (draining ones are left out: they are going away).
	Agents int
	// Connections is the number of open tunnelled connections to them.
	Connections int
	// Certificate describes the certificate that expires first among the
	// agents counted in Agents; zero when none presented one.
	Certificate CertificateState
}

// CertificateState describes an agent's client certificate.
type CertificateState struct {
	// NotBefore and NotAfter bound the certificate's validity.
	NotBefore, NotAfter time.Time
	// Serial is the serial number in hexadecimal, as the proxy-server logs
	// it when the agent connects.
	Serial string
	// IssuerCommonName is the common name of the CA that signed it.
	IssuerCommonName string
	// SignerOU is its signer-<hash> organizational unit (identity.SignerOU),
	// which names that CA by its certificate's hash; "" when it has none.
	// (Its cluster:<name> unit is ClusterState.Cluster's source.)
	SignerOU string
}

// certificateState describes cert.
func certificateState(cert *x509.Certificate) CertificateState {
	st := CertificateState{NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Serial: cert.SerialNumber.Text(16),
		IssuerCommonName: cert.Issuer.CommonName}
	for _, ou := range cert.Subject.OrganizationalUnit {
		if strings.HasPrefix(ou, identity.SignerOUPrefix) {
			st.SignerOU = ou
			break
		}
	}
	return st
}

// Clusters returns the state of every cluster with a connected agent,
// ordered by cluster name.
func (s *Server) Clusters() []ClusterState {
	s.mu.Lock()
	defer s.mu.Unlock()
	byName := make(map[string]*ClusterState, len(s.clusters))
	earliest := map[string]*x509.Certificate{}
	for b := range s.backends {
		st := byName[b.stats.name]
		if st == nil {
			st = &ClusterState{Cluster: b.stats.name, Connections: b.stats.conns}
			byName[b.stats.name] = st
		}
		if b.draining.Load() {
			// Going away (shutting down, or replaced by a connection with a
			// renewed certificate): it takes no new dials.
			continue
		}
		st.Agents++
		if e := earliest[b.stats.name]; b.cert != nil && (e == nil || b.cert.NotAfter.Before(e.NotAfter)) {
			earliest[b.stats.name] = b.cert
		}
	}
	out := make([]ClusterState, 0, len(byName))
	for name, st := range byName {
		if cert := earliest[name]; cert != nil {
			st.Certificate = certificateState(cert)
		}
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b ClusterState) int { return strings.Compare(a.Cluster, b.Cluster) })
	return out
}

// Report is the server's health report (internal/healthreport): its ID,
// its server count and the clusters with an agent connected. Agents whose
// certificate names no cluster are left out: no addon is theirs. The
// Writer dates the report.
func (s *Server) Report() healthreport.Report {
	states := s.Clusters()
	r := healthreport.Report{ServerID: s.opts.ServerID, ServerCount: s.opts.ServerCount,
		Clusters: make([]healthreport.Cluster, 0, len(states))}
	for _, st := range states {
		if st.Cluster == "" {
			continue
		}
		c := healthreport.Cluster{Name: st.Cluster, Agents: st.Agents}
		if cert := st.Certificate; !cert.NotAfter.IsZero() {
			c.Certificate = &healthreport.Certificate{NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
				Serial: cert.Serial, Issuer: cert.IssuerCommonName, Signer: cert.SignerOU}
		}
		r.Clusters = append(r.Clusters, c)
	}
	return r
}
