// Package signer keeps the cluster-proxy certificate authority in a Secret:
// it loads the CA, or creates it when it does not exist yet, safely when
// several addon-managers start at once.
package signer

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/certs"
)

// Keys of the CA Secret.
const (
	// CertKey holds the PEM CA certificate.
	CertKey = "ca.crt"
	// KeyKey holds the PEM CA private key.
	KeyKey = "ca.key"
)

// Store loads and creates the CA Secret <Namespace>/<Name>.
type Store struct {
	// Client reads and creates the Secret. Use an uncached reader/writer so
	// that a Secret another manager just created is seen at once.
	Client client.Client
	// Namespace and Name locate the Secret.
	Namespace, Name string
	// Clock dates a new CA.
	Clock clock.PassiveClock

	// loaded is the CA certificate last loaded or created (metrics).
	loaded atomic.Pointer[x509.Certificate]
	// trusted is what Authority or Advance last returned as trusted.
	trusted atomic.Pointer[[]*x509.Certificate]
}

// Certificate returns the CA certificate LoadOrCreate last returned, or nil
// before it returned one.
func (s *Store) Certificate() *x509.Certificate { return s.loaded.Load() }

// Trusted returns the CA certificates trusted as of the last Authority or
// Advance (the signing one and, during a rotation, the other one), or nil
// before either returned.
func (s *Store) Trusted() []*x509.Certificate {
	if t := s.trusted.Load(); t != nil {
		return *t
	}
	return nil
}

// LoadOrCreate returns the CA stored in the Secret, creating a new
// self-signed CA (certs.NewCA) and the Secret when it does not exist. When
// two callers race, exactly one Secret is created and both return its CA.
func (s *Store) LoadOrCreate(ctx context.Context) (*certs.CA, error) {
	a, err := s.Authority(ctx)
	if err != nil {
		return nil, err
	}
	return a.Signing, nil
}

// Authority returns the authority the Secret holds (creating the Secret
// as LoadOrCreate does): the signing CA and, during a rotation, the other
// one trusted beside it. It reads the Secret once (twice when it raced
// another manager creating it).
func (s *Store) Authority(ctx context.Context) (*Authority, error) {
	a, err := s.loadOrCreate(ctx)
	if err != nil {
		return nil, err
	}
	s.loaded.Store(a.Signing.Cert)
	trusted := a.Trusted()
	s.trusted.Store(&trusted)
	return a, nil
}

func (s *Store) loadOrCreate(ctx context.Context) (*Authority, error) {
	a, _, err := s.loadAuthority(ctx)
	if err == nil || !apierrors.IsNotFound(err) {
		return a, err
	}

	ca, err := certs.NewCA(certs.CACommonName, s.Clock.Now(), certs.CAValidity)
	if err != nil {
		return nil, fmt.Errorf("failed to create a certificate authority: %w", err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: s.Name},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{CertKey: ca.CertPEM, KeyKey: ca.KeyPEM},
	}
	switch err := s.Client.Create(ctx, secret); {
	case err == nil:
		klog.FromContext(ctx).Info("created certificate authority", "secret", klog.KObj(secret))
		return &Authority{Signing: ca}, nil
	case apierrors.IsAlreadyExists(err):
		// Another manager won the race: use its CA.
		a, _, err := s.loadAuthority(ctx)
		return a, err
	default:
		return nil, fmt.Errorf("failed to create CA secret %s/%s: %w", s.Namespace, s.Name, err)
	}
}

// loadAuthority reads the Secret and the authority it holds.
func (s *Store) loadAuthority(ctx context.Context) (*Authority, *corev1.Secret, error) {
	secret := &corev1.Secret{}
	if err := s.Client.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: s.Name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("failed to get CA secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	a, err := authorityFromSecret(secret)
	if err != nil {
		return nil, nil, err
	}
	return a, secret, nil
}

// Advance moves the CA rotation on from phase from: PhaseNone starts a
// rotation with a new CA (marking the pending AnnotationRotate request
// handled), PhaseTrusting makes that CA sign, PhaseSigning drops the
// previous CA. It writes the Secret only if it is still in phase from, and
// fails on a concurrent change (a conflict: read again and decide again).
func (s *Store) Advance(ctx context.Context, from Phase) (*Authority, error) {
	a, secret, err := s.loadAuthority(ctx)
	if err != nil {
		return nil, err
	}
	if a.Phase != from {
		return nil, fmt.Errorf("CA secret %s/%s is in rotation phase %q, not %q", s.Namespace, s.Name, a.Phase, from)
	}
	next, err := a.advanced(s.Clock.Now(), func(now time.Time) (*certs.CA, error) {
		return certs.NewCA(certs.CACommonName, now, certs.CAValidity)
	})
	if err != nil {
		return nil, err
	}
	orig := secret.DeepCopy()
	next.toSecret(secret)
	if from == PhaseNone && a.RotateRequested != "" {
		secret.Annotations[AnnotationRotateHandled] = a.RotateRequested
	}
	// The resourceVersion read above goes with the patch, so a concurrent
	// change is a conflict instead of a mix of two decisions.
	if err := s.Client.Patch(ctx, secret, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return nil, fmt.Errorf("failed to move CA secret %s/%s from rotation phase %q to %q: %w", s.Namespace, s.Name, from, next.Phase, err)
	}
	s.loaded.Store(next.Signing.Cert)
	trusted := next.Trusted()
	s.trusted.Store(&trusted)
	return next, nil
}
