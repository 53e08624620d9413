// Package certs creates and checks the certificates of cluster-proxy: a
// self-signed certificate authority (CA) and the leaf certificates it issues
// (proxy-server, agent-server and user-server serving certificates, and the
// proxy-client client certificate).
//
// The package is pure: it never talks to Kubernetes and never reads the clock.
// Callers pass the current time in, so certificate rotation can be tested
// without waiting.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net"
	"strings"
	"time"
)

const (
	// CACommonName is the CN of the self-signed cluster-proxy CA.
	CACommonName = "open-cluster-management:cluster-proxy"
	// CAValidity is how long a new CA is valid: 10 years.
	CAValidity = 10 * 365 * 24 * time.Hour
	// LeafValidity is how long issued leaf certificates are valid: 180 days.
	LeafValidity = 180 * 24 * time.Hour
	// RenewFraction is the fraction of its lifetime after which a leaf
	// certificate is renewed (0.8).
	RenewFraction = renewPercent / 100.0

	// renewPercent is RenewFraction as a whole percentage, so RenewAt can
	// compute the renewal time with exact integer arithmetic.
	renewPercent = 80
	// clockSkew is how far in the past NotBefore is set, so a certificate is
	// valid right away on hosts whose clocks are slightly behind.
	clockSkew = time.Minute
	// serialBits is the size of the random serial numbers.
	serialBits = 128
)

// PEM block types.
const (
	pemTypeCertificate = "CERTIFICATE"
	pemTypePrivateKey  = "PRIVATE KEY"
)

// Reasons returned by CheckLeaf.
const (
	reasonMissing         = "certificate missing"
	reasonUnparseable     = "certificate unparseable"
	reasonKeyMismatch     = "private key does not match the certificate"
	reasonOtherCA         = "issued by another CA"
	reasonExpired         = "expired"
	reasonNotYetValid     = "not yet valid"
	reasonSANsChanged     = "subject alternative names changed"
	reasonSubjectChanged  = "subject changed"
	reasonKeyUsageChanged = "key usage changed"
)

// CA is a certificate authority.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key is the CA private key; its public key is the one in Cert.
	Key crypto.Signer
	// CertPEM is the PEM encoding of Cert.
	CertPEM []byte
	// KeyPEM is the PEM encoding of Key, in PKCS#8 form.
	KeyPEM []byte
}

// NewCA creates a self-signed CA with a new ECDSA P-256 key. The certificate
// has the given common name, is valid from one minute before now (to allow
// for clock skew) until now plus validity, and may sign certificates and
// CRLs.
func NewCA(commonName string, now time.Time, validity time.Duration) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("CA common name must not be empty")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("CA validity must be positive, got %s", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		// Left empty, SubjectKeyId is derived from the public key by
		// x509.CreateCertificate, as it is for every CA certificate.
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("failed to create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("failed to parse CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// ParseCA parses a CA from PEM: the first certificate of certPEM, and the
// private key of keyPEM in PKCS#8, PKCS#1 (RSA) or SEC1 (EC) form. The
// certificate must be a CA and the key must match its public key. The
// returned CA holds canonical PEM: the certificate alone, and the key in
// PKCS#8 form.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("failed to parse CA certificate: %w", err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA", cert.Subject.CommonName)
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("failed to parse CA key: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("CA key does not match the public key of certificate %q", cert.Subject.CommonName)
	}
	canonicalKeyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(cert.Raw), KeyPEM: canonicalKeyPEM}, nil
}

// Usage is what a leaf certificate is for.
type Usage int

const (
	// UsageServing is a TLS server certificate: ExtKeyUsage ServerAuth,
	// KeyUsage DigitalSignature and KeyEncipherment.
	UsageServing Usage = iota
	// UsageClient is a TLS client certificate: ExtKeyUsage ClientAuth only,
	// KeyUsage DigitalSignature.
	UsageClient
)

// keyUsages returns the key usage bits and extended key usages of u.
func (u Usage) keyUsages() (x509.KeyUsage, []x509.ExtKeyUsage, error) {
	switch u {
	case UsageServing:
		return x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, nil
	case UsageClient:
		return x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, nil
	default:
		return 0, nil, fmt.Errorf("unknown certificate usage %d", int(u))
	}
}

// LeafSpec describes a leaf certificate.
type LeafSpec struct {
	// CommonName is the subject CN.
	CommonName string
	// Organizations is the subject O; order and duplicates do not matter.
	Organizations []string
	// SANs are DNS names or IP addresses; each entry that parses as an IP
	// goes to IPAddresses, the rest to DNSNames.
	SANs []string
	// Usage is what the certificate is for.
	Usage Usage
	// Validity is how long the certificate is valid; 0 means LeafValidity.
	Validity time.Duration
}

// validity returns the validity of s, applying the default.
func (s LeafSpec) validity() (time.Duration, error) {
	switch {
	case s.Validity == 0:
		return LeafValidity, nil
	case s.Validity < 0:
		return 0, fmt.Errorf("certificate validity must not be negative, got %s", s.Validity)
	default:
		return s.Validity, nil
	}
}

// Issue creates a new ECDSA P-256 key and a certificate for spec signed by
// ca. The certificate is valid from one minute before now until now plus the
// spec's validity, but never after the CA expires. It returns the PEM of the
// certificate and of the key in PKCS#8 form. Issue fails if the CA has
// expired by now.
func (ca *CA) Issue(spec LeafSpec, now time.Time) (certPEM, keyPEM []byte, err error) {
	validity, err := spec.validity()
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to generate certificate key: %w", err)
	}
	subject := pkix.Name{CommonName: spec.CommonName, Organization: spec.Organizations}
	certPEM, err = ca.create(subject, spec.SANs, spec.Usage, validity, key.Public(), now)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// Sign issues a certificate for someone else's key, as a CSR signer does:
// exactly subject (no SANs), for usage, valid from now for validity (0 means
// LeafValidity), clamped to the CA's lifetime. The caller has verified the
// request; Sign copies nothing from it but the public key.
func (ca *CA) Sign(subject pkix.Name, pub crypto.PublicKey, usage Usage, validity time.Duration, now time.Time) ([]byte, error) {
	validity, err := LeafSpec{Validity: validity}.validity()
	if err != nil {
		return nil, err
	}
	return ca.create(subject, nil, usage, validity, pub, now)
}

// create signs a certificate for pub.
func (ca *CA) create(subject pkix.Name, sans []string, usage Usage, validity time.Duration, pub crypto.PublicKey, now time.Time) ([]byte, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("CA certificate and key are required to issue a certificate")
	}
	keyUsage, extKeyUsage, err := usage.keyUsages()
	if err != nil {
		return nil, err
	}
	if !now.Before(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("CA %q expired at %s", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	dnsNames, ips := splitSANs(sans)
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              keyUsage,
		ExtKeyUsage:           extKeyUsage,
		BasicConstraintsValid: true,
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("failed to create certificate %q: %w", subject.CommonName, err)
	}
	return encodeCert(der), nil
}

// CheckLeaf reports why the stored certificate and key must be (re)issued for
// spec under ca at time now, or "" when they are fine. The reason is a short
// human-readable string, one of: "certificate missing", "certificate
// unparseable: <error>" (the certificate or the key), "private key does not
// match the certificate", "issued by another CA", "expired", "not yet valid",
// "past 80% of its lifetime (renew at <RFC3339 time>)", "subject alternative
// names changed", "subject changed" or "key usage changed". SANs are compared
// as sets: order and duplicates do not matter, IP addresses are compared by
// value and DNS names case-insensitively. Organizations are compared as sets
// too.
func CheckLeaf(ca *CA, spec LeafSpec, certPEM, keyPEM []byte, now time.Time) string {
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return reasonMissing
	}
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return reasonUnparseable + ": " + err.Error()
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return reasonUnparseable + ": " + err.Error()
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return reasonKeyMismatch
	}
	if reason := checkValidity(ca, cert, now); reason != "" {
		return reason
	}
	if renewAt := RenewAt(cert); !now.Before(renewAt) {
		return fmt.Sprintf("past %d%% of its lifetime (renew at %s)", renewPercent, renewAt.UTC().Format(time.RFC3339))
	}
	wantDNS, wantIPs := splitSANs(spec.SANs)
	if !sameSet(sanKeys(wantDNS, wantIPs), sanKeys(cert.DNSNames, cert.IPAddresses)) {
		return reasonSANsChanged
	}
	if cert.Subject.CommonName != spec.CommonName || !sameSet(spec.Organizations, cert.Subject.Organization) {
		return reasonSubjectChanged
	}
	if !hasUsage(cert, spec.Usage) {
		return reasonKeyUsageChanged
	}
	return ""
}

// checkValidity verifies cert against ca at now, and returns why it fails:
// another CA, expiry, or a NotBefore in the future.
func checkValidity(ca *CA, cert *x509.Certificate, now time.Time) string {
	if ca == nil || ca.Cert == nil {
		return reasonOtherCA
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime: now,
	})
	if err == nil {
		return ""
	}
	// Verify reports a certificate outside its validity period before it
	// looks for the issuer, so check the signature on its own.
	var invalid x509.CertificateInvalidError
	if !errors.As(err, &invalid) || invalid.Reason != x509.Expired || cert.CheckSignatureFrom(ca.Cert) != nil {
		return reasonOtherCA
	}
	if now.Before(cert.NotBefore) {
		return reasonNotYetValid
	}
	// The certificate itself, or the CA it chains to, has expired.
	return reasonExpired
}

// RenewAt returns when cert should be renewed: NotBefore plus 80% of its
// lifetime (NotAfter - NotBefore).
func RenewAt(cert *x509.Certificate) time.Time {
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	// lifetime*80/100 without overflowing.
	return cert.NotBefore.Add(lifetime/100*renewPercent + lifetime%100*renewPercent/100)
}

// EncodeCertificate returns cert in PEM.
func EncodeCertificate(cert *x509.Certificate) []byte { return encodeCert(cert.Raw) }

// ParseCertificate parses the first CERTIFICATE block of PEM data.
func ParseCertificate(certPEM []byte) (*x509.Certificate, error) {
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no CERTIFICATE block found in PEM data")
		}
		if block.Type != pemTypeCertificate {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("failed to parse certificate: %w", err)
		}
		return cert, nil
	}
}

// parsePrivateKey parses the first private key block of PEM data, in PKCS#8,
// PKCS#1 (RSA) or SEC1 (EC) form. Other blocks, such as EC PARAMETERS, are
// skipped.
func parsePrivateKey(keyPEM []byte) (crypto.Signer, error) {
	for rest := keyPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PRIVATE KEY block found in PEM data")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case pemTypePrivateKey:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("failed to parse %s: %w", strings.ToLower(block.Type), err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("private key of type %T cannot sign", key)
		}
		return signer, nil
	}
}

// publicKeysEqual reports whether two public keys are the same.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// hasUsage reports whether cert was issued for usage: exactly its extended
// key usages, and at least its key usage bits.
func hasUsage(cert *x509.Certificate, usage Usage) bool {
	keyUsage, extKeyUsage, err := usage.keyUsages()
	if err != nil {
		return false
	}
	return len(cert.UnknownExtKeyUsage) == 0 &&
		sameSet(extKeyUsage, cert.ExtKeyUsage) &&
		cert.KeyUsage&keyUsage == keyUsage
}

// splitSANs splits SANs into DNS names and IP addresses, dropping
// duplicates.
func splitSANs(sans []string) ([]string, []net.IP) {
	var (
		dnsNames []string
		ips      []net.IP
		seen     = map[string]bool{}
	)
	for _, san := range sans {
		ip := net.ParseIP(san)
		key := sanKey(san, ip)
		if seen[key] {
			continue
		}
		seen[key] = true
		if ip != nil {
			ips = append(ips, ip)
		} else {
			dnsNames = append(dnsNames, san)
		}
	}
	return dnsNames, ips
}

// sanKeys returns the comparison keys of DNS names and IP addresses.
func sanKeys(dnsNames []string, ips []net.IP) []string {
	keys := make([]string, 0, len(dnsNames)+len(ips))
	for _, name := range dnsNames {
		keys = append(keys, sanKey(name, nil))
	}
	for _, ip := range ips {
		keys = append(keys, sanKey("", ip))
	}
	return keys
}

// sanKey returns the comparison key of a SAN: the canonical form of ip when
// it is not nil, else the lower-cased DNS name. The prefixes keep the two
// kinds apart.
func sanKey(dnsName string, ip net.IP) string {
	if ip != nil {
		return "ip:" + ip.String()
	}
	return "dns:" + strings.ToLower(dnsName)
}

// sameSet reports whether a and b hold the same elements, ignoring order and
// duplicates.
func sameSet[T comparable](a, b []T) bool {
	return maps.Equal(toSet(a), toSet(b))
}

// toSet returns the elements of s as a set.
func toSet[T comparable](s []T) map[T]bool {
	set := make(map[T]bool, len(s))
	for _, v := range s {
		set[v] = true
	}
	return set
}

// randomSerial returns a random serial number of up to 128 bits, never zero.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), serialBits)
	limit.Sub(limit, big.NewInt(1))
	serial, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("failed to generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// encodeCert returns the PEM of a DER certificate.
func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemTypeCertificate, Bytes: der})
}

// encodeKey returns the PKCS#8 PEM of key.
func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("failed to marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: der}), nil
}
