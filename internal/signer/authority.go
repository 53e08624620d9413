package signer

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"open-cluster-management.io/cluster-proxy/internal/certs"
)

// More keys of the CA Secret, used while a CA rotation is under way.
const (
	// NextCertKey and NextKeyKey hold the CA that will sign next, trusted
	// beside the signing one (PhaseTrusting).
	NextCertKey = "next-ca.crt"
	NextKeyKey  = "next-ca.key"
	// PreviousCertKey holds the CA that signed before the current one,
	// still trusted until every certificate it issued is replaced
	// (PhaseSigning). Its key is gone: it signs nothing more.
	PreviousCertKey = "previous-ca.crt"
)

// Annotations of the CA Secret.
const (
	// AnnotationRotate asks for a CA rotation: set it to a new value (a
	// date, a ticket) and the manager rotates once for that value.
	AnnotationRotate = "proxy.open-cluster-management.io/rotate-ca"
	// AnnotationRotateHandled is the AnnotationRotate value the manager
	// last started a rotation for.
	AnnotationRotateHandled = "proxy.open-cluster-management.io/rotate-ca-handled"
	// AnnotationPhase is the rotation's phase ("" or absent: none).
	AnnotationPhase = "proxy.open-cluster-management.io/ca-rotation-phase"
	// AnnotationPhaseSince is when the phase began (RFC 3339, nanoseconds).
	AnnotationPhaseSince = "proxy.open-cluster-management.io/ca-rotation-phase-since"
)

// Phase is where a CA rotation stands. A rotation goes PhaseNone →
// PhaseTrusting → PhaseSigning → PhaseNone: first every party learns to
// trust the new CA beside the old one, then the new CA signs and every
// certificate is reissued by it, then the old CA is dropped.
type Phase string

const (
	// PhaseNone means no rotation: one CA signs and is the only one
	// trusted.
	PhaseNone Phase = ""
	// PhaseTrusting means the next CA is generated and trusted beside the
	// signing one, which still signs.
	PhaseTrusting Phase = "Trusting"
	// PhaseSigning means the next CA became the signing one; the previous
	// one is still trusted until every certificate it issued is replaced.
	PhaseSigning Phase = "Signing"
)

// Authority is the cluster-proxy CA as its Secret holds it: the CA that
// signs, and during a rotation the other CA trusted beside it.
type Authority struct {
	// Signing signs every certificate issued now.
	Signing *certs.CA
	// Next is the CA that will sign once the rotation reaches
	// PhaseSigning; set in PhaseTrusting only.
	Next *certs.CA
	// Previous is the CA that signed before Signing; set in PhaseSigning
	// only.
	Previous *x509.Certificate
	// Phase is the rotation's phase and PhaseSince when it began (zero in
	// PhaseNone).
	Phase      Phase
	PhaseSince time.Time
	// RotateRequested is the value of AnnotationRotate that no rotation
	// has handled yet ("" when none is pending).
	RotateRequested string
}

// Trusted returns every CA certificate to trust now: the signing one
// first, then the next or previous one during a rotation.
func (a *Authority) Trusted() []*x509.Certificate {
	out := []*x509.Certificate{a.Signing.Cert}
	switch {
	case a.Next != nil:
		out = append(out, a.Next.Cert)
	case a.Previous != nil:
		out = append(out, a.Previous)
	}
	return out
}

// BundlePEM is Trusted in PEM, the content of every CA bundle the
// cluster-proxy components trust (ca.crt of the Secrets the manager
// writes).
func (a *Authority) BundlePEM() []byte {
	var buf bytes.Buffer
	for _, c := range a.Trusted() {
		buf.Write(certs.EncodeCertificate(c))
	}
	return buf.Bytes()
}

// authorityFromSecret reads the CA Secret. Keys a phase does not use are
// ignored, so a half-edited Secret cannot make an untrusted certificate
// trusted.
func authorityFromSecret(secret *corev1.Secret) (*Authority, error) {
	ref := secret.Namespace + "/" + secret.Name
	certPEM, keyPEM := secret.Data[CertKey], secret.Data[KeyKey]
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return nil, fmt.Errorf("CA secret %s lacks %q or %q", ref, CertKey, KeyKey)
	}
	signing, err := certs.ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA secret %s holds no usable CA: %w", ref, err)
	}
	a := &Authority{Signing: signing, Phase: Phase(secret.Annotations[AnnotationPhase])}
	if req := secret.Annotations[AnnotationRotate]; req != "" && req != secret.Annotations[AnnotationRotateHandled] {
		a.RotateRequested = req
	}
	if a.Phase != PhaseNone {
		since, err := time.Parse(time.RFC3339Nano, secret.Annotations[AnnotationPhaseSince])
		if err != nil {
			return nil, fmt.Errorf("CA secret %s: annotation %s: %w", ref, AnnotationPhaseSince, err)
		}
		a.PhaseSince = since
	}
	switch a.Phase {
	case PhaseNone:
	case PhaseTrusting:
		if a.Next, err = certs.ParseCA(secret.Data[NextCertKey], secret.Data[NextKeyKey]); err != nil {
			return nil, fmt.Errorf("CA secret %s in phase %s: %q and %q hold no usable CA: %w", ref, a.Phase, NextCertKey, NextKeyKey, err)
		}
	case PhaseSigning:
		if a.Previous, err = certs.ParseCertificate(secret.Data[PreviousCertKey]); err != nil {
			return nil, fmt.Errorf("CA secret %s in phase %s: %q: %w", ref, a.Phase, PreviousCertKey, err)
		}
	default:
		return nil, fmt.Errorf("CA secret %s: annotation %s has unknown phase %q (want %q, %q or none)",
			ref, AnnotationPhase, a.Phase, PhaseTrusting, PhaseSigning)
	}
	return a, nil
}

// toSecret writes a into secret's data and annotations, leaving other
// keys and annotations as they are.
func (a *Authority) toSecret(secret *corev1.Secret) {
	if secret.Data == nil {
		secret.Data = map[string][]byte{}
	}
	if secret.Annotations == nil {
		secret.Annotations = map[string]string{}
	}
	secret.Data[CertKey], secret.Data[KeyKey] = a.Signing.CertPEM, a.Signing.KeyPEM
	for _, k := range []string{NextCertKey, NextKeyKey, PreviousCertKey} {
		delete(secret.Data, k)
	}
	switch {
	case a.Next != nil:
		secret.Data[NextCertKey], secret.Data[NextKeyKey] = a.Next.CertPEM, a.Next.KeyPEM
	case a.Previous != nil:
		secret.Data[PreviousCertKey] = certs.EncodeCertificate(a.Previous)
	}
	if a.Phase == PhaseNone {
		delete(secret.Annotations, AnnotationPhase)
		delete(secret.Annotations, AnnotationPhaseSince)
		return
	}
	secret.Annotations[AnnotationPhase] = string(a.Phase)
	secret.Annotations[AnnotationPhaseSince] = a.PhaseSince.UTC().Format(time.RFC3339Nano)
}

// advanced returns the authority one phase on, at now: a new next CA
// (created by newCA) to trust, then that CA signing, then the previous one
// dropped.
func (a *Authority) advanced(now time.Time, newCA func(time.Time) (*certs.CA, error)) (*Authority, error) {
	switch a.Phase {
	case PhaseNone:
		next, err := newCA(now)
		if err != nil {
			return nil, err
		}
		return &Authority{Signing: a.Signing, Next: next, Phase: PhaseTrusting, PhaseSince: now}, nil
	case PhaseTrusting:
		return &Authority{Signing: a.Next, Previous: a.Signing.Cert, Phase: PhaseSigning, PhaseSince: now}, nil
	case PhaseSigning:
		return &Authority{Signing: a.Signing}, nil
	}
	return nil, fmt.Errorf("unknown CA rotation phase %q", a.Phase)
}
