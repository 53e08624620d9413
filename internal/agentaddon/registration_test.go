package agentaddon

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/identity"
)

type staticCA struct{ ca *certs.CA }

func (s staticCA) LoadOrCreate(context.Context) (*certs.CA, error) { return s.ca, nil }

func newRegistration(t *testing.T) (*Registration, *certs.CA, *clocktesting.FakePassiveClock) {
	t.Helper()
	now := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	ca, err := certs.NewCA(certs.CACommonName, now.Add(-time.Hour), certs.CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	clock := clocktesting.NewFakePassiveClock(now)
	return &Registration{CA: staticCA{ca}, Clock: clock}, ca, clock
}

func cluster(name string, accepted bool) *clusterv1.ManagedCluster {
	return &clusterv1.ManagedCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       clusterv1.ManagedClusterSpec{HubAcceptsClient: accepted},
	}
}

func addonOf(cluster string) *addonapiv1beta1.ManagedClusterAddOn {
	return &addonapiv1beta1.ManagedClusterAddOn{ObjectMeta: metav1.ObjectMeta{Name: AddonName, Namespace: cluster}}
}

// request describes a certificate signing request an agent (or an attacker)
// could send.
type request struct {
	cluster   string // label open-cluster-management.io/cluster-name
	requester string // cluster part of the requester's user name
	groups    []string
	signer    string
	subject   pkix.Name
	usages    []certificatesv1.KeyUsage
	dnsNames  []string
	key       crypto.Signer
}

func (r request) csr(t *testing.T) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	key := r.key
	if key == nil {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: r.subject, DNSNames: r.dnsNames}, key)
	if err != nil {
		t.Fatal(err)
	}
	groups := r.groups
	if groups == nil {
		groups = []string{"system:open-cluster-management:" + r.requester, "system:open-cluster-management:managed-clusters", "system:authenticated"}
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "addon-" + r.cluster + "-cluster-proxy-abcde", Labels: map[string]string{
			"open-cluster-management.io/cluster-name": r.cluster,
			"open-cluster-management.io/addon-name":   AddonName,
		}},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: r.signer,
			Usages:     r.usages,
			Username:   "system:open-cluster-management:" + r.requester + ":agent-abcde",
			Groups:     groups,
		},
	}
}

// proxyAgentRequest is the request cluster's klusterlet makes for the
// proxy-agent certificate.
func proxyAgentRequest(ca *certs.CA, cluster string) request {
	return request{
		cluster: cluster, requester: cluster, signer: identity.SignerName,
		subject: pkix.Name{
			CommonName:         identity.ProxyAgentUser,
			Organization:       []string{"open-cluster-management:cluster-proxy"},
			OrganizationalUnit: []string{identity.SignerOU(ca.Cert), identity.ClusterOU(cluster)},
		},
		usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageClientAuth},
	}
}

func TestApprove(t *testing.T) {
	reg, ca, _ := newRegistration(t)
	otherCA, err := certs.NewCA(certs.CACommonName, time.Now(), certs.CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	weakKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	valid := func(mutate func(*request)) request {
		r := proxyAgentRequest(ca, "cluster1")
		mutate(&r)
		return r
	}
	tests := []struct {
		name    string
		cluster *clusterv1.ManagedCluster
		request request
		// refusal is part of the reason Approve must give; "" means approve.
		refusal string
	}{
		{name: "the proxy-agent certificate of an accepted cluster", cluster: cluster("cluster1", true), request: valid(func(*request) {})},
		{
			name: "with the SAN OCM's registration agent adds", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.dnsNames = []string{RegistrationDNSName} }),
		},
		{
			name: "the addon-agent's hub client certificate", cluster: cluster("cluster1", true),
			request: valid(func(r *request) {
				r.signer = certificatesv1.KubeAPIServerClientSignerName
				r.subject = pkix.Name{CommonName: identity.AddonAgentUser, Organization: []string{"open-cluster-management:cluster-proxy"}}
			}),
		},
		{
			name: "a cluster the hub does not accept", cluster: cluster("cluster1", false), request: valid(func(*request) {}),
			refusal: "the hub does not accept cluster cluster1 (spec.hubAcceptsClient is false)",
		},
		{
			name: "prefix trick: cluster1x's klusterlet asks for cluster1", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.requester = "cluster1x" }),
			refusal: `requester "system:open-cluster-management:cluster1x:agent-abcde" is not the klusterlet of cluster cluster1`,
		},
		{
			name: "prefix trick: cluster1's klusterlet asks for cluster1x", cluster: cluster("cluster1x", true),
			request: func() request {
				r := proxyAgentRequest(ca, "cluster1x")
				r.requester = "cluster1"
				return r
			}(),
			refusal: `requester "system:open-cluster-management:cluster1:agent-abcde" is not the klusterlet of cluster cluster1x`,
		},
		{
			name: "the requester lacks its cluster's group", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.groups = []string{"system:open-cluster-management:managed-clusters"} }),
			refusal: "is not in group system:open-cluster-management:cluster1",
		},
		{
			name: "a requester that is not a klusterlet", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.requester = "" }),
			refusal: `requester "system:open-cluster-management::agent-abcde" is not the klusterlet of cluster cluster1`,
		},
		{
			name: "the CSR's cluster label names another cluster", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.cluster = "cluster2" }),
			refusal: `label open-cluster-management.io/cluster-name is "cluster2", not "cluster1"`,
		},
		{
			name: "a subject naming another cluster", cluster: cluster("cluster1", true),
			request: valid(func(r *request) {
				r.subject.OrganizationalUnit = []string{identity.SignerOU(ca.Cert), identity.ClusterOU("cluster2")}
			}),
			refusal: "the request's organizational units",
		},
		{
			name: "a subject for an old CA", cluster: cluster("cluster1", true),
			request: valid(func(r *request) {
				r.subject.OrganizationalUnit = []string{identity.SignerOU(otherCA.Cert), identity.ClusterOU("cluster1")}
			}),
			refusal: "the request's organizational units",
		},
		{
			name: "another common name", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.subject.CommonName = "system:admin" }),
			refusal: `the request's common name "system:admin" is not`,
		},
		{
			name: "an extra organization (group)", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.subject.Organization = append(r.subject.Organization, "system:masters") }),
			refusal: "the request's organizations",
		},
		{
			name: "an extra subject attribute", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.subject.Country = []string{"XX"} }),
			refusal: "attributes beyond common name, organizations and organizational units",
		},
		{
			name: "subject alternative names", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.dnsNames = []string{"kubernetes.default.svc"} }),
			refusal: "subject alternative names other than " + RegistrationDNSName,
		},
		{
			name: "another SAN beside the registration agent's", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.dnsNames = []string{RegistrationDNSName, "kubernetes.default.svc"} }),
			refusal: "subject alternative names other than " + RegistrationDNSName,
		},
		{
			name: "server auth usage", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.usages = append(r.usages, certificatesv1.UsageServerAuth) }),
			refusal: `usage "server auth"`,
		},
		{
			name: "no client auth usage", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature} }),
			refusal: "does not ask for client auth",
		},
		{
			name: "a weak RSA key", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.key = weakKey }),
			refusal: "RSA key has 1024 bits",
		},
		{
			name: "a signer the addon does not register with", cluster: cluster("cluster1", true),
			request: valid(func(r *request) { r.signer = "example.com/other-signer" }),
			refusal: `signer "example.com/other-signer" is not one the cluster-proxy addon registers with`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			csr := tt.request.csr(t)
			refusal := reg.Approve(t.Context(), tt.cluster, addonOf(tt.cluster.Name), csr)
			if tt.refusal == "" {
				g.Expect(refusal).To(BeEmpty(), "the request should be approved")
				return
			}
			g.Expect(refusal).To(ContainSubstring(tt.refusal))
		})
	}
}

func TestSign(t *testing.T) {
	reg, ca, clock := newRegistration(t)

	t.Run("a valid proxy-agent request gets a 180-day client certificate naming its cluster", func(t *testing.T) {
		g := NewWithT(t)
		req := proxyAgentRequest(ca, "cluster1")
		certPEM, err := reg.Sign(t.Context(), cluster("cluster1", true), addonOf("cluster1"), req.csr(t))
		g.Expect(err).NotTo(HaveOccurred())
		cert, err := certs.ParseCertificate(certPEM)
		g.Expect(err).NotTo(HaveOccurred())

		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: clock.Now()})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(cert.ExtKeyUsage).To(Equal([]x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}))
		g.Expect(cert.Subject.CommonName).To(Equal(identity.ProxyAgentUser))
		// DER encodes each attribute set sorted, so compare as sets.
		g.Expect(cert.Subject.Organization).To(ConsistOf(req.subject.Organization))
		g.Expect(cert.Subject.OrganizationalUnit).To(ConsistOf(req.subject.OrganizationalUnit))
		g.Expect(cert.DNSNames).To(BeEmpty())
		g.Expect(cert.NotAfter.Sub(clock.Now())).To(Equal(AgentCertificateValidity))
		got, err := identity.ClusterFromCertificate(cert)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).To(Equal("cluster1"))
	})

	t.Run("the kube-client request is left to the hub's signer", func(t *testing.T) {
		g := NewWithT(t)
		req := proxyAgentRequest(ca, "cluster1")
		req.signer = certificatesv1.KubeAPIServerClientSignerName
		_, err := reg.Sign(t.Context(), cluster("cluster1", true), addonOf("cluster1"), req.csr(t))
		g.Expect(err).To(MatchError(ContainSubstring("is not " + identity.SignerName)))
	})

	t.Run("an approved but invalid request stays unsigned with the reason", func(t *testing.T) {
		g := NewWithT(t)
		req := proxyAgentRequest(ca, "cluster1")
		req.requester = "cluster1x"
		_, err := reg.Sign(t.Context(), cluster("cluster1", true), addonOf("cluster1"), req.csr(t))
		g.Expect(err).To(MatchError(ContainSubstring(`requester "system:open-cluster-management:cluster1x:agent-abcde" is not the klusterlet of cluster cluster1`)))
	})
}

func TestConfigurations(t *testing.T) {
	g := NewWithT(t)
	reg, ca, _ := newRegistration(t)
	configs, err := reg.Configurations(t.Context(), cluster("cluster1", true), addonOf("cluster1"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(configs).To(HaveLen(2))

	kube := configs[0].RegistrationAPI()
	g.Expect(kube.Type).To(Equal(addonapiv1beta1.KubeClient))
	g.Expect(kube.KubeClient.Subject.User).To(Equal("open-cluster-management:cluster-proxy:addon-agent"))
	g.Expect(kube.KubeClient.Subject.Groups).To(Equal([]string{"open-cluster-management:cluster-proxy"}))

	custom := configs[1].RegistrationAPI()
	g.Expect(custom.Type).To(Equal(addonapiv1beta1.CustomSigner))
	g.Expect(custom.CustomSigner.SignerName).To(Equal("open-cluster-management.io/proxy-agent-signer"))
	g.Expect(custom.CustomSigner.Subject.User).To(Equal("open-cluster-management:cluster-proxy:proxy-agent"))
	g.Expect(custom.CustomSigner.Subject.OrganizationUnits).To(Equal([]string{identity.SignerOU(ca.Cert), "cluster:cluster1"}))
	g.Expect(len(identity.SignerOU(ca.Cert))).To(BeNumerically("<=", 64), "X.509 limits an organizational unit to 64 characters")
}
