package userserver

import (
	"context"
	"crypto/tls"
	"fmt"

	"open-cluster-management.io/cluster-proxy/internal/tlsfiles"
)

// reloadingTLS is the user-server's TLS material, each piece re-read from
// its files when they change (a renewed Secret, a CA bundle that gains or
// loses a CA during a rotation), so new handshakes use it without a
// restart; established connections keep theirs. A change that cannot be
// read keeps the last good material and is logged once.
type reloadingTLS struct {
	// serving is the user-server's serving certificate.
	serving *tlsfiles.KeyPair
	// client is the proxy-client certificate, presented to the
	// proxy-servers and to the service-proxies.
	client *tlsfiles.KeyPair
	// proxyCA verifies the proxy-servers; serviceProxyCA the
	// service-proxies.
	proxyCA, serviceProxyCA *tlsfiles.Pool
}

// loadTLS reads the files of o once; it fails when one is not usable.
func loadTLS(o *Options) (*reloadingTLS, error) {
	var t reloadingTLS
	var err error
	if t.proxyCA, err = tlsfiles.NewPool(o.ProxyCACert); err != nil {
		return nil, fmt.Errorf("failed to load --proxy-ca-cert: %w", err)
	}
	if t.serviceProxyCA, err = tlsfiles.NewPool(o.ServiceProxyCACert); err != nil {
		return nil, fmt.Errorf("failed to load --service-proxy-ca-cert: %w", err)
	}
	if t.client, err = tlsfiles.NewKeyPair(o.ProxyCert, o.ProxyKey); err != nil {
		return nil, fmt.Errorf("failed to load --proxy-cert and --proxy-key: %w", err)
	}
	if t.serving, err = tlsfiles.NewKeyPair(o.ServerCert, o.ServerKey); err != nil {
		return nil, fmt.Errorf("failed to load --server-cert and --server-key: %w", err)
	}
	return &t, nil
}

// clientCertificate presents the proxy-client certificate as last read.
// ctx gives the logger of failed re-reads.
func (t *reloadingTLS) clientCertificate(ctx context.Context) func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return t.client.Current(ctx), nil
	}
}

// proxyServerConfig is the TLS configuration of the tunnel to the
// proxy-server at host: the proxy-client certificate, and the proxy-server
// verified for host against --proxy-ca-cert as read at each handshake.
// ctx gives the logger of failed re-reads.
func (t *reloadingTLS) proxyServerConfig(ctx context.Context, host string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12, ServerName: host, GetClientCertificate: t.clientCertificate(ctx),
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection verifies the chain and host against the re-read CA bundle.
		VerifyConnection:   tlsfiles.VerifyServer(ctx, t.proxyCA, host),
	}
}

// serviceProxyConfig is the TLS configuration of the connections to the
// service-proxies: the proxy-client certificate, and the service-proxy
// verified against --service-proxy-ca-cert as read at each handshake, for
// the host dialled (the transport's SNI name: a service-proxy host is
// always a DNS name, proxyv1alpha1.ServiceProxyHost). ctx gives the logger
// of failed re-reads.
func (t *reloadingTLS) serviceProxyConfig(ctx context.Context) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12, GetClientCertificate: t.clientCertificate(ctx),
		InsecureSkipVerify: true, //nolint:gosec // VerifyConnection verifies the chain and host against the re-read CA bundle.
		VerifyConnection:   tlsfiles.VerifyServer(ctx, t.serviceProxyCA, ""),
	}
}

// servingConfig is the base of the user-server's server TLS configuration
// (the TLS profile applies on top): the serving certificate as read at
// each handshake, HTTP/1.1 only (for the upgrades). ctx gives the logger of
// failed re-reads.
func (t *reloadingTLS) servingConfig(ctx context.Context) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return t.serving.Current(ctx), nil
		},
		NextProtos: []string{"http/1.1"},
	}
}
