package certs

import (
	"crypto/x509"
	"fmt"
	"os"
)

// LoadCertPool reads a PEM CA bundle file into a certificate pool; a file
// without any PEM certificate is an error.
func LoadCertPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", path, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
