package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// fileStamp identifies a version of a file on disk.
type fileStamp struct {
	modTime time.Time
	size    int64
}

func stamp(path string) (fileStamp, error) {
	info, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{info.ModTime(), info.Size()}, nil
}

// ReloadingTLS is a server TLS configuration whose serving certificate and
// client CA bundle are read from files and re-read when the files change
// (a renewed Secret mounted into the pod): new handshakes use the new
// material, established connections are untouched. A file that cannot be
// read or parsed keeps the last good material, and the error is reported
// on the handshake and by Check.
type ReloadingTLS struct {
	certFile, keyFile, caFile string
	base                      *tls.Config
	verifyPeer                func(*x509.Certificate) error

	mu         sync.Mutex
	certStamps [2]fileStamp
	cert       *tls.Certificate
	caStamp    fileStamp
	pool       *x509.CertPool
}

// NewReloadingTLS reads certFile and keyFile (and caFile, when not empty:
// then client certificates are required and verified against it) and
// returns the configuration. base supplies the minimum version and cipher
// suites. verifyPeer, when set, is called with every verified client
// certificate and may refuse it.
func NewReloadingTLS(certFile, keyFile, caFile string, base *tls.Config, verifyPeer func(*x509.Certificate) error) (*ReloadingTLS, error) {
	r := &ReloadingTLS{certFile: certFile, keyFile: keyFile, caFile: caFile, base: base.Clone(), verifyPeer: verifyPeer}
	if err := r.Check(); err != nil {
		return nil, err
	}
	return r, nil
}

// Check re-reads changed files and reports why the current files cannot be
// used, if they cannot.
func (r *ReloadingTLS) Check() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.reloadCertLocked(), r.reloadCALocked())
}

func (r *ReloadingTLS) reloadCertLocked() error {
	c, err1 := stamp(r.certFile)
	k, err2 := stamp(r.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("failed to read the serving certificate: %w", err)
	}
	if r.cert != nil && r.certStamps == [2]fileStamp{c, k} {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("failed to load the serving certificate %s and key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.certStamps = &cert, [2]fileStamp{c, k}
	return nil
}

func (r *ReloadingTLS) reloadCALocked() error {
	if r.caFile == "" {
		return nil
	}
	s, err := stamp(r.caFile)
	if err != nil {
		return fmt.Errorf("failed to read the client CA bundle: %w", err)
	}
	if r.pool != nil && r.caStamp == s {
		return nil
	}
	data, err := os.ReadFile(r.caFile)
	if err != nil {
		return fmt.Errorf("failed to read the client CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return fmt.Errorf("the client CA bundle %s holds no PEM certificate", r.caFile)
	}
	r.pool, r.caStamp = pool, s
	return nil
}

// Config returns the tls.Config to serve with.
func (r *ReloadingTLS) Config() *tls.Config {
	cfg := r.base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		r.mu.Lock()
		// A broken update keeps the last good material.
		_ = r.reloadCertLocked()
		_ = r.reloadCALocked()
		cert, pool := r.cert, r.pool
		r.mu.Unlock()
		c := r.base.Clone()
		c.Certificates = []tls.Certificate{*cert}
		if pool != nil {
			c.ClientAuth, c.ClientCAs = tls.RequireAndVerifyClientCert, pool
			if r.verifyPeer != nil {
				c.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
					if len(chains) == 0 || len(chains[0]) == 0 {
						return errors.New("no verified client certificate")
					}
					return r.verifyPeer(chains[0][0])
				}
			}
		}
		return c, nil
	}
	return cfg
}
