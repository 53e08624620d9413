// Package tlsfiles forwards to internal/tlsfiles, where reloading TLS
// material now lives: the user-server and the service-proxy use it too,
// and feature packages may not import internal/tunnel (depguard), so it
// moved one floor down. The proxy-server and proxy-agent import this
// package until they import internal/tlsfiles directly; then it goes.
package tlsfiles

import "open-cluster-management.io/cluster-proxy/internal/tlsfiles"

// KeyPair is tlsfiles.KeyPair: a certificate and key read from two files.
type KeyPair = tlsfiles.KeyPair

// Pool is tlsfiles.Pool: a CA bundle read from a file.
type Pool = tlsfiles.Pool

// NewKeyPair is tlsfiles.NewKeyPair.
func NewKeyPair(certFile, keyFile string) (*KeyPair, error) {
	return tlsfiles.NewKeyPair(certFile, keyFile)
}

// NewPool is tlsfiles.NewPool.
func NewPool(file string) (*Pool, error) {
	return tlsfiles.NewPool(file)
}
