// Package tlsfiles reads TLS material from files and re-reads it when the
// files change (a renewed Secret mounted into a pod), so the proxy-server
// and proxy-agent use renewed certificates for new handshakes without a
// restart. A change that cannot be read or parsed keeps the last good
// material; the error is returned alongside it.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// stamp identifies a version of a file on disk.
type stamp struct {
	modTime time.Time
	size    int64
}

func stampOf(path string) (stamp, error) {
	info, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{info.ModTime(), info.Size()}, nil
}

// KeyPair is a certificate and key read from two files.
type KeyPair struct {
	certFile, keyFile string

	mu     sync.Mutex
	stamps [2]stamp
	cert   *tls.Certificate
}

// NewKeyPair reads the files once; it fails when they are not a usable
// key pair.
func NewKeyPair(certFile, keyFile string) (*KeyPair, error) {
	k := &KeyPair{certFile: certFile, keyFile: keyFile}
	if _, err := k.Get(); err != nil {
		return nil, err
	}
	return k, nil
}

// Get returns the current key pair, re-reading the files when they
// changed. After a failed re-read it returns the last good pair and the
// error.
func (k *KeyPair) Get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, err1 := stampOf(k.certFile)
	s, err2 := stampOf(k.keyFile)
	if err := errors.Join(err1, err2); err != nil {
		return k.cert, fmt.Errorf("failed to read the certificate: %w", err)
	}
	if k.cert != nil && k.stamps == [2]stamp{c, s} {
		return k.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return k.cert, fmt.Errorf("failed to load the certificate %s and key %s: %w", k.certFile, k.keyFile, err)
	}
	k.cert, k.stamps = &cert, [2]stamp{c, s}
	return k.cert, nil
}

// Pool is a CA bundle read from a file.
type Pool struct {
	file string

	mu    sync.Mutex
	stamp stamp
	pool  *x509.CertPool
	certs []*x509.Certificate
}

// NewPool reads the bundle once; it fails when the file holds no PEM
// certificate.
func NewPool(file string) (*Pool, error) {
	p := &Pool{file: file}
	if _, err := p.Get(); err != nil {
		return nil, err
	}
	return p, nil
}

// Get returns the current pool, re-reading the file when it changed. After
// a failed re-read it returns the last good pool and the error.
func (p *Pool) Get() (*x509.CertPool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.refresh()
	return p.pool, err
}

// Certificates returns the certificates of the current pool, as Get.
func (p *Pool) Certificates() ([]*x509.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.refresh()
	return p.certs, err
}

// refresh re-reads the file when it changed; p.mu is held.
func (p *Pool) refresh() error {
	s, err := stampOf(p.file)
	if err != nil {
		return fmt.Errorf("failed to read the CA bundle: %w", err)
	}
	if p.pool != nil && p.stamp == s {
		return nil
	}
	data, err := os.ReadFile(p.file)
	if err != nil {
		return fmt.Errorf("failed to read the CA bundle: %w", err)
	}
	var parsed []*x509.Certificate
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		// As AppendCertsFromPEM does: a block that does not parse is skipped.
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
			parsed = append(parsed, cert)
		}
	}
	if len(parsed) == 0 {
		return fmt.Errorf("the CA bundle %s holds no PEM certificate", p.file)
	}
	pool := x509.NewCertPool()
	for _, c := range parsed {
		pool.AddCert(c)
	}
	p.pool, p.certs, p.stamp = pool, parsed, s
	return nil
}
