package identity

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

func TestClusterFromCertificate(t *testing.T) {
	tests := []struct {
		name    string
		ous     []string
		want    string
		wantErr string
	}{
		{name: "signer and cluster", ous: []string{"signer-0123", ClusterOU("cluster1")}, want: "cluster1"},
		{name: "cluster only", ous: []string{ClusterOU("c")}, want: "c"},
		{name: "no cluster", ous: []string{"signer-0123"}, wantErr: "names no cluster"},
		{name: "empty cluster", ous: []string{"cluster:"}, wantErr: `cluster name "" is not a DNS-1123 label`},
		{name: "two clusters", ous: []string{ClusterOU("a"), ClusterOU("b")}, wantErr: "more than one cluster: a, b"},
		{name: "dotted cluster", ous: []string{ClusterOU("a.b")}, wantErr: `cluster name "a.b" is not a DNS-1123 label`},
		{name: "upper case", ous: []string{ClusterOU("Cluster1")}, wantErr: "not a DNS-1123 label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			cert := &x509.Certificate{Subject: pkix.Name{CommonName: ProxyAgentUser, OrganizationalUnit: tt.ous}}
			got, err := ClusterFromCertificate(cert)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
		})
	}
}

func TestSignerOU(t *testing.T) {
	g := NewWithT(t)
	a, b := SignerOU(&x509.Certificate{Raw: []byte("ca one")}), SignerOU(&x509.Certificate{Raw: []byte("ca two")})
	g.Expect(a).To(HavePrefix("signer-"))
	g.Expect(a).NotTo(Equal(b), "a new CA gives a new organizational unit")
	g.Expect(len(a)).To(BeNumerically("<=", 64), "X.509 limits an organizational unit to 64 characters")
}

func TestAgentIdentifiersBelongToTheirCluster(t *testing.T) {
	g := NewWithT(t)
	ids := AgentIdentifiers("cluster1", "open-cluster-management-cluster-proxy", true)
	g.Expect(ids).To(Equal([]string{
		"host=cluster1",
		"host=cluster1.open-cluster-management-cluster-proxy",
		"host=" + proxyv1alpha1.ServiceProxyHost("cluster1"),
	}))
	g.Expect(CheckIdentifiers("cluster1", strings.Join(ids, "&"))).To(Succeed())
	g.Expect(AgentIdentifiers("cluster1", "ns", false)).To(Equal([]string{"host=" + proxyv1alpha1.ServiceProxyHost("cluster1")}))
}

func TestCheckIdentifiers(t *testing.T) {
	tests := []struct {
		name        string
		cluster     string
		identifiers string
		// refused is the identifier a *RefusedIdentifierError names; empty
		// when the list is accepted or refused for another reason.
		refused string
		wantErr string
	}{
		{name: "own cluster", cluster: "a", identifiers: "host=a"},
		{name: "own cluster and namespace", cluster: "a", identifiers: "host=a&host=a.b"},
		{name: "own service-proxy host", cluster: "a", identifiers: "host=" + proxyv1alpha1.ServiceProxyHost("a")},
		{name: "host names compare case-insensitively", cluster: "a", identifiers: "host=A.B"},
		{name: "URL-escaped", cluster: "a", identifiers: "host=a%2Eb"},
		{name: "another cluster", cluster: "a", identifiers: "host=a&host=b", refused: "host=b"},
		// host=a.b is cluster a in namespace b, never a cluster named a.b.
		{name: "another cluster's namespace form", cluster: "a", identifiers: "host=b.a", refused: "host=b.a"},
		{name: "a longer cluster name with our prefix", cluster: "a", identifiers: "host=ab", refused: "host=ab"},
		{name: "two labels after the cluster", cluster: "a", identifiers: "host=a.b.c", refused: "host=a.b.c"},
		{name: "empty namespace", cluster: "a", identifiers: "host=a.", refused: "host=a."},
		{name: "another cluster's service-proxy host", cluster: "a", identifiers: "host=" + proxyv1alpha1.ServiceProxyHost("b"), refused: "host=" + proxyv1alpha1.ServiceProxyHost("b")},
		{name: "default route", cluster: "a", identifiers: "host=a&default-route=true", refused: "default-route=true"},
		{name: "cidr", cluster: "a", identifiers: "cidr=198.18.0.0/15", refused: "cidr=198.18.0.0/15"},
		{name: "ipv4", cluster: "a", identifiers: "ipv4=198.18.0.1", refused: "ipv4=198.18.0.1"},
		{name: "the first refusal in list order is named", cluster: "a", identifiers: "host=x&host=y", refused: "host=x"},
		{name: "empty list", cluster: "a", identifiers: "", wantErr: "registers no identifiers"},
		{name: "bad escape", cluster: "a", identifiers: "host=%zz", wantErr: `failed to parse agent identifier "host=%zz"`},
		{name: "dotted certificate cluster", cluster: "a.b", identifiers: "host=a.b", wantErr: "not a DNS-1123 label"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			err := CheckIdentifiers(tt.cluster, tt.identifiers)
			switch {
			case tt.refused != "":
				var refused *RefusedIdentifierError
				g.Expect(err).To(BeAssignableToTypeOf(refused))
				g.Expect(err).To(MatchError(&RefusedIdentifierError{Cluster: tt.cluster, Identifier: tt.refused}))
				g.Expect(err.Error()).To(ContainSubstring("an agent of cluster " + tt.cluster + " may not register identifier " + tt.refused))
			case tt.wantErr != "":
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
			default:
				g.Expect(err).NotTo(HaveOccurred())
			}
		})
	}
}
