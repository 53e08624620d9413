package tlsprofile_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/tlsprofile"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		data    map[string]string
		want    tlsprofile.Profile
		wantErr []string
		errKeys []string
	}{
		{name: "no keys: TLS 1.2, Go's suites", data: nil, want: tlsprofile.Profile{MinVersion: tls.VersionTLS12}},
		{name: "VersionTLS13", data: map[string]string{tlsprofile.KeyMinVersion: "VersionTLS13"}, want: tlsprofile.Profile{MinVersion: tls.VersionTLS13}},
		{name: "TLSv1.1 (sdk-go's alias)", data: map[string]string{tlsprofile.KeyMinVersion: " TLSv1.1 "}, want: tlsprofile.Profile{MinVersion: tls.VersionTLS11}},
		{
			name: "suites only: default minimum, duplicates and blanks dropped",
			data: map[string]string{tlsprofile.KeyCipherSuites: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 ,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
			want: tlsprofile.Profile{MinVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}},
		},
		{name: "unknown version", data: map[string]string{tlsprofile.KeyMinVersion: "1.2"}, wantErr: []string{`invalid minTLSVersion "1.2"`}, errKeys: []string{tlsprofile.KeyMinVersion}},
		{
			name:    "unknown and insecure suites, each named",
			data:    map[string]string{tlsprofile.KeyCipherSuites: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_FOO,TLS_RSA_WITH_RC4_128_SHA"},
			wantErr: []string{`invalid cipherSuites "TLS_FOO": unknown cipher suite`, `invalid cipherSuites "TLS_RSA_WITH_RC4_128_SHA": insecure`},
			errKeys: []string{tlsprofile.KeyCipherSuites, tlsprofile.KeyCipherSuites},
		},
		{
			name:    "both keys bad: both named",
			data:    map[string]string{tlsprofile.KeyMinVersion: "SSLv3", tlsprofile.KeyCipherSuites: "nope"},
			wantErr: []string{"minTLSVersion", "cipherSuites"},
			errKeys: []string{tlsprofile.KeyMinVersion, tlsprofile.KeyCipherSuites},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := tlsprofile.Parse(tt.data)
			if len(tt.wantErr) > 0 {
				g.Expect(err).To(HaveOccurred())
				for _, s := range tt.wantErr {
					g.Expect(err.Error()).To(ContainSubstring(s))
				}
				var keys []string
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var ke *tlsprofile.KeyError
					g.Expect(errors.As(e, &ke)).To(BeTrue())
					keys = append(keys, ke.Key)
				}
				g.Expect(keys).To(Equal(tt.errKeys))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
		})
	}
}

func TestFromConfigMapNilIsDefault(t *testing.T) {
	g := NewWithT(t)
	p, err := tlsprofile.FromConfigMap(nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p).To(Equal(tlsprofile.Default()))
	g.Expect(p.Args()).To(Equal([]string{"--tls-min-version=VersionTLS12"}))
}

func TestArgs(t *testing.T) {
	g := NewWithT(t)
	p := tlsprofile.Profile{MinVersion: tls.VersionTLS13, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}
	g.Expect(p.Args()).To(Equal([]string{
		"--tls-min-version=VersionTLS13",
		"--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	}))
}

func TestApplyDropsH2WithoutItsCipher(t *testing.T) {
	tests := []struct {
		name    string
		profile tlsprofile.Profile
		want    []string
	}{
		{name: "Go's suites", profile: tlsprofile.Default(), want: []string{"h2", "http/1.1"}},
		{name: "with an HTTP/2 cipher", profile: tlsprofile.Profile{MinVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, want: []string{"h2", "http/1.1"}},
		{name: "without one", profile: tlsprofile.Profile{MinVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}, want: []string{"http/1.1"}},
		{name: "TLS 1.3 only: the list does not apply", profile: tlsprofile.Profile{MinVersion: tls.VersionTLS13, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}}, want: []string{"h2", "http/1.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			base := []string{"h2", "http/1.1"}
			c := &tls.Config{NextProtos: base}
			tt.profile.Apply(c)
			g.Expect(c.NextProtos).To(Equal(tt.want))
			g.Expect(base).To(Equal([]string{"h2", "http/1.1"}), "the caller's slice is not modified")
			g.Expect(c.MinVersion).To(Equal(tt.profile.MinVersion))
		})
	}
}

// testServer serves TLS with config on a loopback listener and returns its
// address and the trust for its certificate.
func testServer(t *testing.T, config func(serving tls.Certificate) *tls.Config) (string, *x509.CertPool) {
	t.Helper()
	g := NewWithT(t)
	ca, err := certs.NewCA("test CA", time.Now(), time.Hour)
	g.Expect(err).NotTo(HaveOccurred())
	certPEM, keyPEM, err := ca.Issue(certs.LeafSpec{CommonName: "localhost", SANs: []string{"localhost"}, Usage: certs.UsageServing}, time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	serving, err := tls.X509KeyPair(certPEM, keyPEM)
	g.Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)

	l, err := tls.Listen("tcp", "127.0.0.1:0", config(serving))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = conn.Close() }()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				_ = conn.(*tls.Conn).Handshake()
			}()
		}
	}()
	return l.Addr().String(), pool
}

// handshake connects to address with a client limited to maxVersion (and
// to suites, when given) and returns the connection state.
func handshake(t *testing.T, address string, roots *x509.CertPool, maxVersion uint16, suites []uint16, nextProtos ...string) (tls.ConnectionState, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", address, &tls.Config{
		RootCAs: roots, ServerName: "localhost", MinVersion: tls.VersionTLS10, MaxVersion: maxVersion,
		CipherSuites: suites, NextProtos: nextProtos,
	})
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer func() { _ = conn.Close() }()
	return conn.ConnectionState(), nil
}

func TestServerConfigAppliesTheCurrentProfileToEachHandshake(t *testing.T) {
	g := NewWithT(t)
	var current atomic.Pointer[tlsprofile.Profile]
	set := func(p tlsprofile.Profile) { current.Store(&p) }
	set(tlsprofile.Default())
	address, roots := testServer(t, func(serving tls.Certificate) *tls.Config {
		return tlsprofile.ServerConfig(&tls.Config{Certificates: []tls.Certificate{serving}, NextProtos: []string{"h2", "http/1.1"}},
			func() tlsprofile.Profile { return *current.Load() })
	})

	// tlsprofile.Default: TLS 1.2 works, TLS 1.1 is refused.
	state, err := handshake(t, address, roots, tls.VersionTLS12, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(state.Version).To(BeEquivalentTo(tls.VersionTLS12))
	_, err = handshake(t, address, roots, tls.VersionTLS11, nil)
	g.Expect(err).To(HaveOccurred())

	// VersionTLS13: a TLS 1.2 client is refused, TLS 1.3 works.
	set(tlsprofile.Profile{MinVersion: tls.VersionTLS13})
	_, err = handshake(t, address, roots, tls.VersionTLS12, nil)
	g.Expect(err).To(MatchError(ContainSubstring("protocol version")))
	state, err = handshake(t, address, roots, tls.VersionTLS13, nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(state.Version).To(BeEquivalentTo(tls.VersionTLS13))

	// Cipher suites restrict TLS 1.2: a client offering only another suite
	// is refused, one offering the allowed suite gets it (and HTTP/1.1:
	// the list has no suite HTTP/2 requires).
	set(tlsprofile.Profile{MinVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}})
	_, err = handshake(t, address, roots, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256})
	g.Expect(err).To(MatchError(ContainSubstring("handshake failure")))
	state, err = handshake(t, address, roots, tls.VersionTLS12,
		[]uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384}, "h2", "http/1.1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(state.CipherSuite).To(Equal(tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384))
	g.Expect(state.NegotiatedProtocol).To(Equal("http/1.1"))

	// Back to the default: Go's suites, h2 offered again.
	set(tlsprofile.Default())
	state, err = handshake(t, address, roots, tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, "h2", "http/1.1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(state.CipherSuite).To(Equal(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
	g.Expect(state.NegotiatedProtocol).To(Equal("h2"))
}

func TestServerConfigKeepsTheBase(t *testing.T) {
	g := NewWithT(t)
	base := &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS10}
	cfg := tlsprofile.ServerConfig(base, tlsprofile.Default)
	g.Expect(base.GetConfigForClient).To(BeNil(), "base is not modified")
	g.Expect(base.MinVersion).To(BeEquivalentTo(tls.VersionTLS10))
	g.Expect(cfg.MinVersion).To(BeEquivalentTo(tls.VersionTLS12))
	per, err := cfg.GetConfigForClient(&tls.ClientHelloInfo{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(per.ClientAuth).To(Equal(tls.VerifyClientCertIfGiven))
	g.Expect(per.GetConfigForClient).To(BeNil())
}

func TestKeyErrorUnwraps(t *testing.T) {
	g := NewWithT(t)
	_, err := tlsprofile.FromConfigMap(&corev1.ConfigMap{Data: map[string]string{tlsprofile.KeyMinVersion: "nope"}})
	var ke *tlsprofile.KeyError
	g.Expect(errors.As(err, &ke)).To(BeTrue())
	g.Expect(ke.Key).To(Equal(tlsprofile.KeyMinVersion))
	g.Expect(ke.Value).To(Equal("nope"))
	g.Expect(errors.Unwrap(ke)).To(MatchError(ContainSubstring("unknown TLS version")))
}
