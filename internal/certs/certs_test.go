package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// testNow is the fixed clock of the tests. It has no sub-second part, as
// certificate times do not.
var testNow = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

// servingSpec is a typical serving certificate spec.
var servingSpec = LeafSpec{
	CommonName: "proxy-server",
	SANs:       []string{"127.0.0.1", "localhost", "proxy-entrypoint.open-cluster-management-addon", "proxy-entrypoint.open-cluster-management-addon.svc"},
	Usage:      UsageServing,
}

// clientSpec is a typical client certificate spec.
var clientSpec = LeafSpec{
	CommonName:    "proxy-client",
	Organizations: []string{"open-cluster-management:cluster-proxy"},
	Usage:         UsageClient,
}

func TestNewCA(t *testing.T) {
	g := NewWithT(t)

	ca, err := NewCA(CACommonName, testNow, CAValidity)
	g.Expect(err).NotTo(HaveOccurred())

	cert := ca.Cert
	g.Expect(cert.Subject.CommonName).To(Equal(CACommonName))
	g.Expect(cert.Issuer.CommonName).To(Equal(CACommonName))
	g.Expect(cert.IsCA).To(BeTrue())
	g.Expect(cert.BasicConstraintsValid).To(BeTrue())
	g.Expect(cert.KeyUsage).To(Equal(x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature))
	g.Expect(cert.NotBefore).To(BeTemporally("==", testNow.Add(-time.Minute)))
	g.Expect(cert.NotAfter).To(BeTemporally("==", testNow.Add(CAValidity)))
	g.Expect(cert.SubjectKeyId).NotTo(BeEmpty())
	g.Expect(cert.SerialNumber.Sign()).To(Equal(1))
	g.Expect(cert.SerialNumber.BitLen()).To(BeNumerically("<=", 128))
	g.Expect(cert.CheckSignatureFrom(cert)).To(Succeed())

	key, ok := ca.Key.(*ecdsa.PrivateKey)
	g.Expect(ok).To(BeTrue(), "CA key is %T, not ECDSA", ca.Key)
	g.Expect(key.Curve).To(Equal(elliptic.P256()))
	g.Expect(key.PublicKey.Equal(cert.PublicKey)).To(BeTrue())

	g.Expect(pemTypes(ca.CertPEM)).To(Equal([]string{"CERTIFICATE"}))
	g.Expect(pemTypes(ca.KeyPEM)).To(Equal([]string{"PRIVATE KEY"}))
	parsed, err := ParseCertificate(ca.CertPEM)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(parsed.Equal(cert)).To(BeTrue())
}

func TestNewCAInvalid(t *testing.T) {
	tests := []struct {
		name       string
		commonName string
		validity   time.Duration
		wantErr    string
	}{
		{name: "empty common name", commonName: "", validity: CAValidity, wantErr: "CA common name must not be empty"},
		{name: "zero validity", commonName: CACommonName, validity: 0, wantErr: "CA validity must be positive"},
		{name: "negative validity", commonName: CACommonName, validity: -time.Hour, wantErr: "CA validity must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			_, err := NewCA(tt.commonName, testNow, tt.validity)
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
}

func TestParseCA(t *testing.T) {
	ecCA := mustNewCA(t, testNow, CAValidity)
	otherCA := mustNewCA(t, testNow, CAValidity)
	ecKey, ok := ecCA.Key.(*ecdsa.PrivateKey)
	NewWithT(t).Expect(ok).To(BeTrue())
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})

	rsaCertPEM, rsaKey := newRSACA(t, testNow)
	rsaPKCS8, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())

	leafCertPEM, leafKeyPEM := mustIssue(t, ecCA, servingSpec, testNow)

	tests := []struct {
		name    string
		certPEM []byte
		keyPEM  []byte
		// wantCert is the PEM of the certificate ParseCA must return.
		wantCert []byte
		wantErr  string
	}{
		{
			name:     "round trip of NewCA",
			certPEM:  ecCA.CertPEM,
			keyPEM:   ecCA.KeyPEM,
			wantCert: ecCA.CertPEM,
		},
		{
			name:     "EC key in SEC1 form",
			certPEM:  ecCA.CertPEM,
			keyPEM:   encodePEM("EC PRIVATE KEY", sec1),
			wantCert: ecCA.CertPEM,
		},
		{
			name:     "EC key in SEC1 form after EC PARAMETERS",
			certPEM:  ecCA.CertPEM,
			keyPEM:   append(ecParams, encodePEM("EC PRIVATE KEY", sec1)...),
			wantCert: ecCA.CertPEM,
		},
		{
			name:     "RSA-2048 CA with a PKCS#8 key",
			certPEM:  rsaCertPEM,
			keyPEM:   encodePEM("PRIVATE KEY", rsaPKCS8),
			wantCert: rsaCertPEM,
		},
		{
			name:     "RSA-2048 CA with a PKCS#1 key",
			certPEM:  rsaCertPEM,
			keyPEM:   encodePEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)),
			wantCert: rsaCertPEM,
		},
		{
			name:     "bundle: the first certificate is the CA",
			certPEM:  append(append([]byte{}, ecCA.CertPEM...), otherCA.CertPEM...),
			keyPEM:   ecCA.KeyPEM,
			wantCert: ecCA.CertPEM,
		},
		{
			name:    "key of another CA",
			certPEM: ecCA.CertPEM,
			keyPEM:  otherCA.KeyPEM,
			wantErr: `CA key does not match the public key of certificate "open-cluster-management:cluster-proxy"`,
		},
		{
			name:    "RSA certificate with an EC key",
			certPEM: rsaCertPEM,
			keyPEM:  ecCA.KeyPEM,
			wantErr: "CA key does not match the public key",
		},
		{
			name:    "not a CA",
			certPEM: leafCertPEM,
			keyPEM:  leafKeyPEM,
			wantErr: `certificate "proxy-server" is not a CA`,
		},
		{
			name:    "garbage certificate",
			certPEM: []byte("not a certificate"),
			keyPEM:  ecCA.KeyPEM,
			wantErr: "failed to parse CA certificate: no CERTIFICATE block found in PEM data",
		},
		{
			name:    "empty certificate",
			keyPEM:  ecCA.KeyPEM,
			wantErr: "failed to parse CA certificate: no CERTIFICATE block found in PEM data",
		},
		{
			name:    "certificate block with garbage inside",
			certPEM: encodePEM("CERTIFICATE", []byte("garbage")),
			keyPEM:  ecCA.KeyPEM,
			wantErr: "failed to parse CA certificate: failed to parse certificate: x509:",
		},
		{
			name:    "garbage key",
			certPEM: ecCA.CertPEM,
			keyPEM:  []byte("not a key"),
			wantErr: "failed to parse CA key: no PRIVATE KEY block found in PEM data",
		},
		{
			name:    "key block with garbage inside",
			certPEM: ecCA.CertPEM,
			keyPEM:  encodePEM("RSA PRIVATE KEY", []byte("garbage")),
			wantErr: "failed to parse CA key: failed to parse rsa private key: ",
		},
		{
			name:    "certificate where the key should be",
			certPEM: ecCA.CertPEM,
			keyPEM:  ecCA.CertPEM,
			wantErr: "failed to parse CA key: no PRIVATE KEY block found in PEM data",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			ca, err := ParseCA(tt.certPEM, tt.keyPEM)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				g.Expect(ca).To(BeNil())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ca.CertPEM).To(Equal(tt.wantCert))
			g.Expect(ca.Cert.IsCA).To(BeTrue())
			g.Expect(publicKeysEqual(ca.Key.Public(), ca.Cert.PublicKey)).To(BeTrue())

			// The key is re-encoded as PKCS#8 and parses back to the same key.
			g.Expect(pemTypes(ca.KeyPEM)).To(Equal([]string{"PRIVATE KEY"}))
			reparsed, err := ParseCA(ca.CertPEM, ca.KeyPEM)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(reparsed.KeyPEM).To(Equal(ca.KeyPEM))

			// The CA can issue certificates that chain to it.
			certPEM, keyPEM, err := ca.Issue(servingSpec, testNow)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(CheckLeaf(ca, servingSpec, certPEM, keyPEM, testNow)).To(BeEmpty())
		})
	}
}

func TestParseCAWrapsErrors(t *testing.T) {
	g := NewWithT(t)
	ca := mustNewCA(t, testNow, CAValidity)

	_, err := ParseCA(encodePEM("CERTIFICATE", []byte("garbage")), ca.KeyPEM)
	g.Expect(err).To(HaveOccurred())
	// ParseCA -> ParseCertificate -> crypto/x509.
	g.Expect(unwrapDepth(err)).To(BeNumerically(">=", 2))

	_, err = ParseCA(ca.CertPEM, encodePEM("PRIVATE KEY", []byte("garbage")))
	g.Expect(err).To(HaveOccurred())
	g.Expect(unwrapDepth(err)).To(BeNumerically(">=", 2))
}

func TestIssue(t *testing.T) {
	ca := mustNewCA(t, testNow, CAValidity)
	shortCA := mustNewCA(t, testNow, 30*24*time.Hour)

	tests := []struct {
		name         string
		ca           *CA
		spec         LeafSpec
		wantUsage    []x509.ExtKeyUsage
		wantKeyUsage x509.KeyUsage
		wantDNS      []string
		wantIPs      []net.IP
		wantNotAfter time.Time
	}{
		{
			name: "serving certificate with DNS and IP SANs",
			ca:   ca,
			spec: LeafSpec{
				CommonName: "proxy-server",
				SANs:       []string{"localhost", "127.0.0.1", "proxy.example.com", "::1", "*", "*.example.com"},
				Usage:      UsageServing,
			},
			wantUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			wantKeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			wantDNS:      []string{"localhost", "proxy.example.com", "*", "*.example.com"},
			wantIPs:      []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
			wantNotAfter: testNow.Add(LeafValidity),
		},
		{
			name: "serving certificate with duplicate SANs",
			ca:   ca,
			spec: LeafSpec{
				CommonName: "agent-server",
				SANs:       []string{"localhost", "LocalHost", "10.0.0.1", "::ffff:10.0.0.1", "localhost"},
				Usage:      UsageServing,
			},
			wantUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			wantKeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			wantDNS:      []string{"localhost"},
			wantIPs:      []net.IP{net.ParseIP("10.0.0.1")},
			wantNotAfter: testNow.Add(LeafValidity),
		},
		{
			name:         "client certificate",
			ca:           ca,
			spec:         clientSpec,
			wantUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			wantKeyUsage: x509.KeyUsageDigitalSignature,
			wantNotAfter: testNow.Add(LeafValidity),
		},
		{
			name:         "custom validity",
			ca:           ca,
			spec:         LeafSpec{CommonName: "user-server", SANs: []string{"localhost"}, Validity: time.Hour},
			wantUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			wantKeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			wantDNS:      []string{"localhost"},
			wantNotAfter: testNow.Add(time.Hour),
		},
		{
			name:         "clamped to the CA's NotAfter",
			ca:           shortCA,
			spec:         clientSpec,
			wantUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			wantKeyUsage: x509.KeyUsageDigitalSignature,
			wantNotAfter: shortCA.Cert.NotAfter,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			certPEM, keyPEM, err := tt.ca.Issue(tt.spec, testNow)
			g.Expect(err).NotTo(HaveOccurred())

			g.Expect(pemTypes(certPEM)).To(Equal([]string{"CERTIFICATE"}))
			g.Expect(pemTypes(keyPEM)).To(Equal([]string{"PRIVATE KEY"}))
			cert, err := ParseCertificate(certPEM)
			g.Expect(err).NotTo(HaveOccurred())
			key, err := parsePrivateKey(keyPEM)
			g.Expect(err).NotTo(HaveOccurred())
			ecKey, ok := key.(*ecdsa.PrivateKey)
			g.Expect(ok).To(BeTrue(), "leaf key is %T, not ECDSA", key)
			g.Expect(ecKey.Curve).To(Equal(elliptic.P256()))
			g.Expect(ecKey.PublicKey.Equal(cert.PublicKey)).To(BeTrue())

			// The certificate chains to the CA for its usage.
			roots := x509.NewCertPool()
			roots.AddCert(tt.ca.Cert)
			_, err = cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: tt.wantUsage, CurrentTime: testNow})
			g.Expect(err).NotTo(HaveOccurred())

			g.Expect(cert.IsCA).To(BeFalse())
			g.Expect(cert.Subject.CommonName).To(Equal(tt.spec.CommonName))
			g.Expect(cert.Subject.Organization).To(Equal(tt.spec.Organizations))
			g.Expect(cert.ExtKeyUsage).To(Equal(tt.wantUsage))
			g.Expect(cert.KeyUsage).To(Equal(tt.wantKeyUsage))
			g.Expect(cert.DNSNames).To(Equal(tt.wantDNS))
			g.Expect(ipStrings(cert.IPAddresses)).To(Equal(ipStrings(tt.wantIPs)))
			g.Expect(cert.NotBefore).To(BeTemporally("==", testNow.Add(-time.Minute)))
			g.Expect(cert.NotAfter).To(BeTemporally("==", tt.wantNotAfter))
			g.Expect(cert.AuthorityKeyId).To(Equal(tt.ca.Cert.SubjectKeyId))
			g.Expect(cert.SerialNumber.Sign()).To(Equal(1))
			g.Expect(cert.SerialNumber.BitLen()).To(BeNumerically("<=", 128))

			g.Expect(CheckLeaf(tt.ca, tt.spec, certPEM, keyPEM, testNow)).To(BeEmpty())
		})
	}
}

func TestIssueUniqueSerialsAndKeys(t *testing.T) {
	g := NewWithT(t)
	ca := mustNewCA(t, testNow, CAValidity)

	cert1PEM, key1PEM := mustIssue(t, ca, servingSpec, testNow)
	cert2PEM, key2PEM := mustIssue(t, ca, servingSpec, testNow)
	cert1, err := ParseCertificate(cert1PEM)
	g.Expect(err).NotTo(HaveOccurred())
	cert2, err := ParseCertificate(cert2PEM)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cert1.SerialNumber).NotTo(Equal(cert2.SerialNumber))
	g.Expect(key1PEM).NotTo(Equal(key2PEM))
}

func TestIssueErrors(t *testing.T) {
	ca := mustNewCA(t, testNow, 30*24*time.Hour)

	tests := []struct {
		name    string
		ca      *CA
		spec    LeafSpec
		now     time.Time
		wantErr string
	}{
		{
			name:    "CA expired",
			ca:      ca,
			spec:    servingSpec,
			now:     ca.Cert.NotAfter,
			wantErr: `CA "open-cluster-management:cluster-proxy" expired at 2026-03-31T12:00:00Z`,
		},
		{
			name:    "negative validity",
			ca:      ca,
			spec:    LeafSpec{CommonName: "x", Validity: -time.Hour},
			now:     testNow,
			wantErr: "certificate validity must not be negative",
		},
		{
			name:    "unknown usage",
			ca:      ca,
			spec:    LeafSpec{CommonName: "x", Usage: Usage(7)},
			now:     testNow,
			wantErr: "unknown certificate usage 7",
		},
		{
			name:    "nil CA",
			spec:    servingSpec,
			now:     testNow,
			wantErr: "CA certificate and key are required",
		},
		{
			name:    "CA without a key",
			ca:      &CA{Cert: ca.Cert},
			spec:    servingSpec,
			now:     testNow,
			wantErr: "CA certificate and key are required",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			certPEM, keyPEM, err := tt.ca.Issue(tt.spec, tt.now)
			g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
			g.Expect(certPEM).To(BeNil())
			g.Expect(keyPEM).To(BeNil())
		})
	}
}

func TestCheckLeaf(t *testing.T) {
	ca := mustNewCA(t, testNow, CAValidity)
	otherCA := mustNewCA(t, testNow, CAValidity)

	servingPEM, servingKey := mustIssue(t, ca, servingSpec, testNow)
	clientPEM, clientKey := mustIssue(t, ca, clientSpec, testNow)
	_, otherKey := mustIssue(t, ca, servingSpec, testNow)
	foreignPEM, foreignKey := mustIssue(t, otherCA, servingSpec, testNow)

	serving, err := ParseCertificate(servingPEM)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	lifetime := serving.NotAfter.Sub(serving.NotBefore)
	renewAt := serving.NotBefore.Add(lifetime * 8 / 10)

	withSANs := func(sans ...string) LeafSpec {
		spec := servingSpec
		spec.SANs = sans
		return spec
	}

	tests := []struct {
		name    string
		spec    LeafSpec
		certPEM []byte
		keyPEM  []byte
		now     time.Time
		want    string
		// wantPrefix makes want a prefix of the reason rather than all of it.
		wantPrefix bool
	}{
		{name: "fresh serving certificate", spec: servingSpec, certPEM: servingPEM, keyPEM: servingKey, now: testNow, want: ""},
		{name: "fresh client certificate", spec: clientSpec, certPEM: clientPEM, keyPEM: clientKey, now: testNow, want: ""},
		{name: "certificate missing", spec: servingSpec, keyPEM: servingKey, now: testNow, want: "certificate missing"},
		{name: "key missing", spec: servingSpec, certPEM: servingPEM, keyPEM: []byte{}, now: testNow, want: "certificate missing"},
		{
			name: "certificate unparseable", spec: servingSpec, certPEM: []byte("garbage"), keyPEM: servingKey, now: testNow,
			want: "certificate unparseable: no CERTIFICATE block found in PEM data",
		},
		{
			name: "certificate block unparseable", spec: servingSpec, certPEM: encodePEM("CERTIFICATE", []byte("garbage")), keyPEM: servingKey, now: testNow,
			want: "certificate unparseable: failed to parse certificate: x509: ", wantPrefix: true,
		},
		{
			name: "key unparseable", spec: servingSpec, certPEM: servingPEM, keyPEM: encodePEM("PRIVATE KEY", []byte("garbage")), now: testNow,
			want: "certificate unparseable: failed to parse private key: ", wantPrefix: true,
		},
		{name: "key of another certificate", spec: servingSpec, certPEM: servingPEM, keyPEM: otherKey, now: testNow, want: "private key does not match the certificate"},
		{name: "issued by another CA", spec: servingSpec, certPEM: foreignPEM, keyPEM: foreignKey, now: testNow, want: "issued by another CA"},
		{
			name: "issued by another CA and expired", spec: servingSpec, certPEM: foreignPEM, keyPEM: foreignKey, now: serving.NotAfter.Add(time.Second),
			want: "issued by another CA",
		},
		{name: "expired", spec: servingSpec, certPEM: servingPEM, keyPEM: servingKey, now: serving.NotAfter.Add(time.Second), want: "expired"},
		{name: "not yet valid", spec: servingSpec, certPEM: servingPEM, keyPEM: servingKey, now: serving.NotBefore.Add(-time.Second), want: "not yet valid"},
		{
			name: "past 80% of its lifetime", spec: servingSpec, certPEM: servingPEM, keyPEM: servingKey,
			now:  serving.NotBefore.Add(lifetime * 81 / 100),
			want: fmt.Sprintf("past 80%% of its lifetime (renew at %s)", renewAt.Format(time.RFC3339)),
		},
		{
			name: "at 80% of its lifetime", spec: servingSpec, certPEM: servingPEM, keyPEM: servingKey, now: renewAt,
			want: fmt.Sprintf("past 80%% of its lifetime (renew at %s)", renewAt.Format(time.RFC3339)),
		},
		{name: "just before 80% of its lifetime", spec: servingSpec, certPEM: servingPEM, keyPEM: servingKey, now: renewAt.Add(-time.Second), want: ""},
		{
			name: "SAN added", spec: withSANs(append(servingSpec.SANs, "proxy.example.com")...), certPEM: servingPEM, keyPEM: servingKey, now: testNow,
			want: "subject alternative names changed",
		},
		{
			name: "IP SAN added", spec: withSANs(append(servingSpec.SANs, "10.0.0.1")...), certPEM: servingPEM, keyPEM: servingKey, now: testNow,
			want: "subject alternative names changed",
		},
		{
			name: "SAN removed", spec: withSANs(servingSpec.SANs[1:]...), certPEM: servingPEM, keyPEM: servingKey, now: testNow,
			want: "subject alternative names changed",
		},
		{
			name: "IP SAN changed", spec: withSANs("127.0.0.2", "localhost", "proxy-entrypoint.open-cluster-management-addon", "proxy-entrypoint.open-cluster-management-addon.svc"),
			certPEM: servingPEM, keyPEM: servingKey, now: testNow,
			want: "subject alternative names changed",
		},
		{
			name: "same SANs in another order, with duplicates, other case and IPv4 in IPv6 form",
			spec: withSANs(
				"proxy-entrypoint.open-cluster-management-addon.svc", "LOCALHOST", "::ffff:127.0.0.1",
				"proxy-entrypoint.open-cluster-management-addon", "localhost", "127.0.0.1",
			),
			certPEM: servingPEM, keyPEM: servingKey, now: testNow, want: "",
		},
		{
			name: "common name changed", spec: LeafSpec{CommonName: "agent-server", SANs: servingSpec.SANs, Usage: UsageServing},
			certPEM: servingPEM, keyPEM: servingKey, now: testNow, want: "subject changed",
		},
		{
			name: "organization added", spec: LeafSpec{CommonName: servingSpec.CommonName, Organizations: []string{"system:masters"}, SANs: servingSpec.SANs, Usage: UsageServing},
			certPEM: servingPEM, keyPEM: servingKey, now: testNow, want: "subject changed",
		},
		{
			name: "organization changed", spec: LeafSpec{CommonName: clientSpec.CommonName, Organizations: []string{"other"}, Usage: UsageClient},
			certPEM: clientPEM, keyPEM: clientKey, now: testNow, want: "subject changed",
		},
		{
			name: "serving certificate wanted as client", spec: LeafSpec{CommonName: servingSpec.CommonName, SANs: servingSpec.SANs, Usage: UsageClient},
			certPEM: servingPEM, keyPEM: servingKey, now: testNow, want: "key usage changed",
		},
		{
			name: "client certificate wanted as serving", spec: LeafSpec{CommonName: clientSpec.CommonName, Organizations: clientSpec.Organizations, Usage: UsageServing},
			certPEM: clientPEM, keyPEM: clientKey, now: testNow, want: "key usage changed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got := CheckLeaf(ca, tt.spec, tt.certPEM, tt.keyPEM, tt.now)
			if tt.wantPrefix {
				g.Expect(got).To(HavePrefix(tt.want))
				return
			}
			g.Expect(got).To(Equal(tt.want))
		})
	}
}

func TestCheckLeafHandwrittenCertificates(t *testing.T) {
	ca := mustNewCA(t, testNow, 30*24*time.Hour)

	tests := []struct {
		name     string
		template *x509.Certificate
		now      time.Time
		want     string
	}{
		{
			name: "serving certificate that is also a client certificate",
			template: &x509.Certificate{
				Subject:     pkix.Name{CommonName: servingSpec.CommonName},
				DNSNames:    []string{"localhost"},
				KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
				NotBefore:   testNow,
				NotAfter:    testNow.Add(time.Hour),
			},
			now:  testNow,
			want: "key usage changed",
		},
		{
			name: "serving certificate without the digital signature key usage",
			template: &x509.Certificate{
				Subject:     pkix.Name{CommonName: servingSpec.CommonName},
				DNSNames:    []string{"localhost"},
				KeyUsage:    x509.KeyUsageKeyEncipherment,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				NotBefore:   testNow,
				NotAfter:    testNow.Add(time.Hour),
			},
			now:  testNow,
			want: "key usage changed",
		},
		{
			name: "valid certificate of an expired CA",
			template: &x509.Certificate{
				Subject:     pkix.Name{CommonName: servingSpec.CommonName},
				DNSNames:    []string{"localhost"},
				KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				NotBefore:   ca.Cert.NotAfter.Add(-time.Hour),
				NotAfter:    ca.Cert.NotAfter.Add(1000 * time.Hour),
			},
			now:  ca.Cert.NotAfter.Add(time.Hour),
			want: "expired",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			g.Expect(err).NotTo(HaveOccurred())
			tt.template.SerialNumber = big.NewInt(42)
			der, err := x509.CreateCertificate(rand.Reader, tt.template, ca.Cert, key.Public(), ca.Key)
			g.Expect(err).NotTo(HaveOccurred())
			keyDER, err := x509.MarshalPKCS8PrivateKey(key)
			g.Expect(err).NotTo(HaveOccurred())
			spec := LeafSpec{CommonName: servingSpec.CommonName, SANs: []string{"localhost"}, Usage: UsageServing}

			g.Expect(CheckLeaf(ca, spec, encodePEM("CERTIFICATE", der), encodePEM("PRIVATE KEY", keyDER), tt.now)).To(Equal(tt.want))
		})
	}
}

func TestRenewAt(t *testing.T) {
	NewWithT(t).Expect(RenewFraction).To(Equal(0.8))
	ca := mustNewCA(t, testNow, CAValidity)
	certPEM, _ := mustIssue(t, ca, servingSpec, testNow)
	issued, err := ParseCertificate(certPEM)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())

	tests := []struct {
		name      string
		notBefore time.Time
		notAfter  time.Time
		want      time.Time
	}{
		{
			name:      "issued leaf: 80% of 180 days and one minute",
			notBefore: issued.NotBefore,
			notAfter:  issued.NotAfter,
			want:      testNow.Add(-time.Minute).Add(144*24*time.Hour + 48*time.Second),
		},
		{name: "100 seconds", notBefore: testNow, notAfter: testNow.Add(100 * time.Second), want: testNow.Add(80 * time.Second)},
		{name: "rounded down to the nanosecond", notBefore: testNow, notAfter: testNow.Add(7), want: testNow.Add(5)},
		{name: "ten-year CA", notBefore: testNow, notAfter: testNow.Add(CAValidity), want: testNow.Add(8 * 365 * 24 * time.Hour)},
		{name: "empty lifetime", notBefore: testNow, notAfter: testNow, want: testNow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got := RenewAt(&x509.Certificate{NotBefore: tt.notBefore, NotAfter: tt.notAfter})
			g.Expect(got).To(BeTemporally("==", tt.want))
		})
	}
}

func TestParseCertificate(t *testing.T) {
	ca := mustNewCA(t, testNow, CAValidity)
	otherCA := mustNewCA(t, testNow, CAValidity)

	tests := []struct {
		name    string
		pem     []byte
		want    *x509.Certificate
		wantErr string
	}{
		{name: "single certificate", pem: ca.CertPEM, want: ca.Cert},
		{name: "first of a bundle", pem: append(append([]byte{}, ca.CertPEM...), otherCA.CertPEM...), want: ca.Cert},
		{name: "after a key block", pem: append(append([]byte{}, ca.KeyPEM...), ca.CertPEM...), want: ca.Cert},
		{name: "empty", wantErr: "no CERTIFICATE block found in PEM data"},
		{name: "only a key", pem: ca.KeyPEM, wantErr: "no CERTIFICATE block found in PEM data"},
		{name: "garbage inside the block", pem: encodePEM("CERTIFICATE", []byte{0x30, 0x00}), wantErr: "failed to parse certificate: x509: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ParseCertificate(tt.pem)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got.Equal(tt.want)).To(BeTrue())
		})
	}
}

// mustNewCA returns a new ECDSA CA valid from now for validity.
func mustNewCA(t *testing.T, now time.Time, validity time.Duration) *CA {
	t.Helper()
	ca, err := NewCA(CACommonName, now, validity)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	return ca
}

// mustIssue issues a certificate for spec from ca at now.
func mustIssue(t *testing.T, ca *CA, spec LeafSpec, now time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(spec, now)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	return certPEM, keyPEM
}

// newRSACA returns a self-signed RSA-2048 CA like the one the previous addon
// created, and its key.
func newRSACA(t *testing.T, now time.Time) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	g := NewWithT(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	g.Expect(err).NotTo(HaveOccurred())
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: CACommonName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	g.Expect(err).NotTo(HaveOccurred())
	return encodePEM("CERTIFICATE", der), key
}

// encodePEM returns one PEM block.
func encodePEM(blockType string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
}

// pemTypes returns the types of the PEM blocks in data, failing on trailing
// non-PEM data.
func pemTypes(data []byte) []string {
	var types []string
	for {
		block, rest := pem.Decode(data)
		if block == nil {
			if len(rest) > 0 {
				types = append(types, "trailing data")
			}
			return types
		}
		types = append(types, block.Type)
		data = rest
	}
}

// ipStrings returns the text form of ips.
func ipStrings(ips []net.IP) []string {
	out := make([]string, 0, len(ips))
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// unwrapDepth returns how many errors are wrapped in err.
func unwrapDepth(err error) int {
	depth := 0
	for err = errors.Unwrap(err); err != nil; err = errors.Unwrap(err) {
		depth++
	}
	return depth
}
