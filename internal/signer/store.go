// Package signer keeps the cluster-proxy certificate authority in a Secret:
// it loads the CA, or creates it when it does not exist yet, safely when
// several addon-managers start at once.
package signer

import (
	"context"
	"crypto/x509"
	"fmt"
	"sync/atomic"

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
}

// Certificate returns the CA certificate LoadOrCreate last returned, or nil
// before it returned one.
func (s *Store) Certificate() *x509.Certificate { return s.loaded.Load() }

// LoadOrCreate returns the CA stored in the Secret, creating a new
// self-signed CA (certs.NewCA) and the Secret when it does not exist. When
// two callers race, exactly one Secret is created and both return its CA.
func (s *Store) LoadOrCreate(ctx context.Context) (*certs.CA, error) {
	ca, err := s.loadOrCreate(ctx)
	if err == nil {
		s.loaded.Store(ca.Cert)
	}
	return ca, err
}

func (s *Store) loadOrCreate(ctx context.Context) (*certs.CA, error) {
	ca, err := s.load(ctx)
	if err == nil || !apierrors.IsNotFound(err) {
		return ca, err
	}

	ca, err = certs.NewCA(certs.CACommonName, s.Clock.Now(), certs.CAValidity)
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
		return ca, nil
	case apierrors.IsAlreadyExists(err):
		// Another manager won the race: use its CA.
		return s.load(ctx)
	default:
		return nil, fmt.Errorf("failed to create CA secret %s/%s: %w", s.Namespace, s.Name, err)
	}
}

func (s *Store) load(ctx context.Context) (*certs.CA, error) {
	secret := &corev1.Secret{}
	if err := s.Client.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: s.Name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, err
		}
		return nil, fmt.Errorf("failed to get CA secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	certPEM, keyPEM := secret.Data[CertKey], secret.Data[KeyKey]
	if len(certPEM) == 0 || len(keyPEM) == 0 {
		return nil, fmt.Errorf("CA secret %s/%s lacks %q or %q", s.Namespace, s.Name, CertKey, KeyKey)
	}
	ca, err := certs.ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA secret %s/%s holds no usable CA: %w", s.Namespace, s.Name, err)
	}
	return ca, nil
}
