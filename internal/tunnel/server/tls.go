package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"

	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/tlsfiles"
)

// ReloadingTLS is a server TLS configuration whose serving certificate and
// client CA bundle are read from files and re-read when the files change
// (a renewed Secret mounted into the pod): new handshakes use the new
// material, established connections are untouched. A file that cannot be
// read or parsed keeps the last good material.
type ReloadingTLS struct {
	base       *tls.Config
	cert       *tlsfiles.KeyPair
	clientCAs  *tlsfiles.Pool
	verifyPeer func(*x509.Certificate) error
}

// NewReloadingTLS reads certFile and keyFile (and caFile, when not empty:
// then client certificates are required and verified against it) and
// returns the configuration. base supplies the minimum version and cipher
// suites. verifyPeer, when set, is called with every verified client
// certificate and may refuse it.
func NewReloadingTLS(certFile, keyFile, caFile string, base *tls.Config, verifyPeer func(*x509.Certificate) error) (*ReloadingTLS, error) {
	r := &ReloadingTLS{base: base.Clone(), verifyPeer: verifyPeer}
	var err error
	if r.cert, err = tlsfiles.NewKeyPair(certFile, keyFile); err != nil {
		return nil, err
	}
	if caFile != "" {
		if r.clientCAs, err = tlsfiles.NewPool(caFile); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Config returns the tls.Config to serve with.
func (r *ReloadingTLS) Config() *tls.Config {
	cfg := r.base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		// A broken update keeps the last good material.
		cert, _ := r.cert.Get()
		c := r.base.Clone()
		c.Certificates = []tls.Certificate{*cert}
		if r.clientCAs == nil {
			return c, nil
		}
		pool, _ := r.clientCAs.Get()
		c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, pool
		if r.verifyPeer != nil {
			c.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
				if len(chains) == 0 || len(chains[0]) == 0 {
					return errors.New("no verified client certificate")
				}
				return r.verifyPeer(chains[0][0])
			}
		}
		return c, nil
	}
	return cfg
}

// Signers returns the signer organizational units (identity.SignerOU) of
// the client CA bundle's certificates, as last loaded, and of the bundle's
// CA that issued the serving certificate ("" when none of them did, or
// without a bundle).
func (r *ReloadingTLS) Signers() (trusted []string, serving string) {
	cert, _ := r.cert.Get()
	if r.clientCAs == nil {
		return nil, ""
	}
	cas, _ := r.clientCAs.Certificates()
	for _, ca := range cas {
		ou := identity.SignerOU(ca)
		trusted = append(trusted, ou)
		if serving == "" && cert != nil && cert.Leaf != nil && cert.Leaf.CheckSignatureFrom(ca) == nil {
			serving = ou
		}
	}
	return trusted, serving
}
