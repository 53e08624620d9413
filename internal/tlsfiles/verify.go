package tlsfiles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// VerifyServer returns a tls.Config VerifyConnection for a client whose
// trust follows a CA bundle file: crypto/tls verifies servers against
// RootCAs, fixed when the configuration is built, so such a client sets
// InsecureSkipVerify and verifies here instead, as crypto/tls would: the
// server's chain (the certificates after its leaf as intermediates) up to
// the bundle as read at this handshake (roots.Current), for the server
// name, with the server-auth extended key usage, at the current time.
//
// serverName is the name the certificate must be valid for (a DNS name or
// an IP address). Empty means the connection's SNI name, which is the
// host the client dialled (as an http.Transport sets it) when that is a DNS
// name; crypto/tls sends no SNI for an IP address, so with neither the
// connection is refused rather than left unchecked. ctx gives the logger
// that reports a bundle that cannot be read (see Pool.Current).
func VerifyServer(ctx context.Context, roots *Pool, serverName string) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		name := serverName
		if name == "" {
			name = cs.ServerName
		}
		if name == "" {
			return errors.New("failed to verify the server's certificate: no server name to verify it for")
		}
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("failed to verify the server's certificate for %q: the server presented none", name)
		}
		intermediates := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			intermediates.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			Roots: roots.Current(ctx), Intermediates: intermediates, DNSName: name,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			return fmt.Errorf("failed to verify the server's certificate for %q against the CA bundle %s: %w", name, roots.file, err)
		}
		return nil
	}
}
