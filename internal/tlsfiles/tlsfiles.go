// Package tlsfiles reads TLS material from files and re-reads it when the
// files change (a renewed Secret mounted into a pod), so the proxy-server,
// proxy-agent, user-server and service-proxy use renewed certificates and
// CA bundles for new handshakes without a restart. A change that cannot be
// read or parsed keeps the last good material; the error is returned
// alongside it (Get), or logged once per change (Current).
package tlsfiles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"k8s.io/klog/v2"
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

// change is what one look at the files found.
type change int

const (
	// unchanged: the files are the version already read (or a failure
	// already reported).
	unchanged change = iota
	// reloaded: a new version was read.
	reloaded
	// failed: a new version could not be read; reported once per version.
	failed
)

// KeyPair is a certificate and key read from two files.
type KeyPair struct {
	certFile, keyFile string

	mu     sync.Mutex
	stamps [2]stamp
	cert   *tls.Certificate
	// failedStamps are the files' stamps at the last failed read, nil
	// after a good one.
	failedStamps *[2]stamp
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
	cert, _, err := k.get()
	return cert, err
}

// Current returns the current key pair, as Get, for a handshake. It logs,
// with the logger of ctx, a new version of the files it read (at
// verbosity 2) and one it could not read (an error, then the last good
// pair is returned): once per version of the files, not per handshake.
func (k *KeyPair) Current(ctx context.Context) *tls.Certificate {
	cert, ch, err := k.get()
	log := klog.FromContext(ctx)
	switch ch {
	case reloaded:
		if leaf := cert.Leaf; leaf != nil {
			log.V(2).Info("Read a changed certificate", "certFile", k.certFile, "keyFile", k.keyFile,
				"serial", leaf.SerialNumber.Text(16), "issuer", leaf.Issuer.String(), "notAfter", leaf.NotAfter)
		}
	case failed:
		log.Error(err, "Failed to read a changed certificate, keeping the last good one", "certFile", k.certFile, "keyFile", k.keyFile)
	}
	return cert
}

// get is Get, saying what changed.
func (k *KeyPair) get() (*tls.Certificate, change, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, err1 := stampOf(k.certFile)
	s, err2 := stampOf(k.keyFile)
	stamps := [2]stamp{c, s}
	if err := errors.Join(err1, err2); err != nil {
		return k.cert, k.fail(stamps), fmt.Errorf("failed to read the certificate: %w", err)
	}
	if k.cert != nil && k.stamps == stamps {
		return k.cert, unchanged, nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return k.cert, k.fail(stamps), fmt.Errorf("failed to load the certificate %s and key %s: %w", k.certFile, k.keyFile, err)
	}
	k.cert, k.stamps, k.failedStamps = &cert, stamps, nil
	return k.cert, reloaded, nil
}

// fail records a failed read of the files at stamps: failed the first
// time for them, unchanged after; k.mu is held. The next call reads the
// files again all the same (the error may have been transient).
func (k *KeyPair) fail(stamps [2]stamp) change {
	if k.failedStamps != nil && *k.failedStamps == stamps {
		return unchanged
	}
	k.failedStamps = &stamps
	return failed
}

// Pool is a CA bundle read from a file.
type Pool struct {
	file string

	mu    sync.Mutex
	stamp stamp
	pool  *x509.CertPool
	certs []*x509.Certificate
	// failedStamp is the file's stamp at the last failed read, nil after
	// a good one.
	failedStamp *stamp
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
	_, err := p.refresh()
	return p.pool, err
}

// Certificates returns the certificates of the current pool, as Get.
func (p *Pool) Certificates() ([]*x509.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := p.refresh()
	return p.certs, err
}

// Current returns the current pool, as Get, for a handshake. It logs, with
// the logger of ctx, a new version of the file it read (at verbosity 2)
// and one it could not read (an error, then the last good pool is
// returned): once per version of the file, not per handshake.
func (p *Pool) Current(ctx context.Context) *x509.CertPool {
	p.mu.Lock()
	ch, err := p.refresh()
	pool, n := p.pool, len(p.certs)
	p.mu.Unlock()
	log := klog.FromContext(ctx)
	switch ch {
	case reloaded:
		log.V(2).Info("Read a changed CA bundle", "file", p.file, "certificates", n)
	case failed:
		log.Error(err, "Failed to read a changed CA bundle, keeping the last good one", "file", p.file)
	}
	return pool
}

// refresh re-reads the file when it changed; p.mu is held.
func (p *Pool) refresh() (change, error) {
	s, err := stampOf(p.file)
	if err != nil {
		return p.fail(s), fmt.Errorf("failed to read the CA bundle: %w", err)
	}
	if p.pool != nil && p.stamp == s {
		return unchanged, nil
	}
	data, err := os.ReadFile(p.file)
	if err != nil {
		return p.fail(s), fmt.Errorf("failed to read the CA bundle: %w", err)
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
		return p.fail(s), fmt.Errorf("the CA bundle %s holds no PEM certificate", p.file)
	}
	pool := x509.NewCertPool()
	for _, c := range parsed {
		pool.AddCert(c)
	}
	p.pool, p.certs, p.stamp, p.failedStamp = pool, parsed, s, nil
	return reloaded, nil
}

// fail records a failed read of the file at s, as KeyPair.fail; p.mu is
// held.
func (p *Pool) fail(s stamp) change {
	if p.failedStamp != nil && *p.failedStamp == s {
		return unchanged
	}
	p.failedStamp = &s
	return failed
}
