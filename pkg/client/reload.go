package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

// ReloadingTLSConfig returns a proxy-server client TLS configuration that
// follows the material load returns. load runs once now (its error is
// returned) and then every interval until ctx ends. Each handshake presents
// the client certificate of the last successful load and verifies the
// proxy-server against that load's CA bundle (RootCAs) and ServerName; a
// load that fails is logged and keeps the last good material.
//
// A program that runs through a renewal of its proxy-client certificate or
// a rotation of the cluster-proxy CA needs it: a configuration built once
// cannot verify proxy-servers serving certificates of the new CA. Tunnels
// already open are not affected either way; new ones handshake with what
// load returned last. An interval well below the rotation's settle time (2
// minutes per phase) is enough; ReloadingTLSConfigForHub uses 30 seconds.
func ReloadingTLSConfig(ctx context.Context, interval time.Duration, load func(context.Context) (*tls.Config, error)) (*tls.Config, error) {
	if interval <= 0 {
		return nil, fmt.Errorf("failed to build a reloading TLS configuration: interval %s is not positive", interval)
	}
	first, err := loadChecked(ctx, load)
	if err != nil {
		return nil, err
	}
	var current atomic.Pointer[tls.Config]
	current.Store(first)
	go func() {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			cfg, err := loadChecked(ctx, load)
			if err != nil {
				klog.FromContext(ctx).Error(err, "Failed to read the proxy-server TLS material again, keeping the last good one")
				continue
			}
			current.Store(cfg)
		}
	}()
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &current.Load().Certificates[0], nil
		},
		// VerifyConnection verifies the chain and the name against the CA
		// bundle as last read: crypto/tls's own verification has fixed roots.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyProxyServer(current.Load(), cs)
		},
	}, nil
}

// ReloadingTLSConfigForHub is ReloadingTLSConfig of TLSConfigForHub: the
// Secrets of the ManagedProxyConfiguration mpcName are read again every 30
// seconds until ctx ends.
func ReloadingTLSConfigForHub(ctx context.Context, hubConfig *rest.Config, mpcName string) (*tls.Config, error) {
	return ReloadingTLSConfig(ctx, 30*time.Second, func(ctx context.Context) (*tls.Config, error) {
		return TLSConfigForHub(ctx, hubConfig, mpcName)
	})
}

// loadChecked runs load and checks that its result has what
// ReloadingTLSConfig uses: one client certificate, a CA bundle and a
// server name.
func loadChecked(ctx context.Context, load func(context.Context) (*tls.Config, error)) (*tls.Config, error) {
	cfg, err := load(ctx)
	switch {
	case err != nil:
		return nil, err
	case cfg == nil:
		return nil, errors.New("failed to read the proxy-server TLS material: the loader returned no configuration")
	case len(cfg.Certificates) != 1:
		return nil, fmt.Errorf("failed to read the proxy-server TLS material: it has %d client certificates, want 1", len(cfg.Certificates))
	case cfg.RootCAs == nil:
		return nil, errors.New("failed to read the proxy-server TLS material: it has no CA bundle (RootCAs)")
	case cfg.ServerName == "":
		return nil, errors.New("failed to read the proxy-server TLS material: it has no server name")
	}
	return cfg, nil
}

// verifyProxyServer verifies the proxy-server's chain in cs against cfg's
// CA bundle and server name.
func verifyProxyServer(cfg *tls.Config, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("failed to verify the proxy-server: it presented no certificate")
	}
	intermediates := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: cfg.RootCAs, Intermediates: intermediates, DNSName: cfg.ServerName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("failed to verify the proxy-server's certificate for %q: %w", cfg.ServerName, err)
	}
	return nil
}
