// Package servicecert keeps the service-proxy's serving certificate — the
// hub Secret proxyv1alpha1.ServiceProxyCertSecretName, which the addon-manager
// copies to every managed cluster — signed by the cluster-proxy CA and
// fresh: it is issued when missing, reissued past 80% of its lifetime, when
// the CA changes, or when it no longer matches what the service-proxy needs.
// It is what the `cluster-proxy controllers` command runs.
package servicecert

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// Spec is the service-proxy serving certificate: every managed cluster's
// service-proxy serves it, and hub clients reach it through the tunnel as
// cluster-<hash>.open-cluster-management.proxy.
var Spec = certs.LeafSpec{
	CommonName: "cluster-proxy-service-proxy",
	SANs:       []string{"*", "localhost", "127.0.0.1", "*.open-cluster-management.proxy"},
	Usage:      certs.UsageServing,
}

// CALoader returns the CA that signs the certificate and those to trust
// (signer.Store).
type CALoader interface {
	Authority(ctx context.Context) (*signer.Authority, error)
}

// Reconciler keeps the Secret <Namespace>/ServiceProxyCertSecretName current.
type Reconciler struct {
	// Client reads (from the cache) and writes the certificate Secret.
	Client client.Client
	// CA signs the certificate.
	CA CALoader
	// Clock dates the certificate and decides rotation.
	Clock clock.PassiveClock
	// Namespace holds the certificate Secret.
	Namespace string
	// SignerNamespace and SignerName locate the CA Secret: a change of the
	// CA is a reason to reissue at once.
	SignerNamespace, SignerName string
}

var _ reconcile.Reconciler = &Reconciler{}

// SetupWithManager registers the reconciler with mgr. It fails when a
// dependency is missing.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	var missing []string
	for name, absent := range map[string]bool{
		"Client": r.Client == nil, "CA": r.CA == nil, "Clock": r.Clock == nil,
		"Namespace": r.Namespace == "", "SignerNamespace": r.SignerNamespace == "", "SignerName": r.SignerName == "",
	} {
		if absent {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("servicecert.Reconciler is missing %v", missing)
	}
	certificate := types.NamespacedName{Namespace: r.Namespace, Name: proxyv1alpha1.ServiceProxyCertSecretName}
	isCertificate := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == certificate.Namespace && o.GetName() == certificate.Name
	})
	isSigner := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetNamespace() == r.SignerNamespace && o.GetName() == r.SignerName
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("service-proxy-certificate").
		For(&corev1.Secret{}, builder.WithPredicates(isCertificate)).
		// The CA Secret changing (or appearing) means the certificate must be
		// checked against it.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: certificate}}
		}), builder.WithPredicates(isSigner)).
		// The certificate may not exist yet: check it once at start.
		WatchesRawSource(startupSource(certificate)).
		Complete(r)
}

// Reconcile issues the certificate when it is missing or no longer good, and
// asks to be called again when it is due for renewal.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := klog.FromContext(ctx).WithValues("secret", klog.KRef(req.Namespace, req.Name))
	authority, err := r.CA.Authority(ctx)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("failed to load the CA: %w", err)
	}
	ca, bundle := authority.Signing, authority.BundlePEM()
	now := r.Clock.Now()
	secret := &corev1.Secret{}
	err = r.Client.Get(ctx, req.NamespacedName, secret)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("failed to get Secret %s: %w", req.NamespacedName, err)
	}
	exists := err == nil
	// Issued by the signing CA, or issued again; the bundle (ca.crt) follows
	// a CA rotation's trust without a new certificate.
	reason := certs.CheckLeaf(ca, Spec, secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey], now)
	switch {
	case reason != "":
		log.Info("issuing the service-proxy certificate", "reason", reason)
		if err := r.issue(ctx, ca, bundle, now, secret, req.NamespacedName, exists); err != nil {
			return ctrl.Result{}, err
		}
	case string(secret.Data[proxyv1alpha1.CASecretKey]) != string(bundle):
		log.Info("updating the service-proxy certificate's CA bundle")
		secret.Data[proxyv1alpha1.CASecretKey] = bundle
		if err := r.Client.Update(ctx, secret); err != nil {
			return ctrl.Result{}, fmt.Errorf("failed to update the CA bundle of Secret %s: %w", req.NamespacedName, err)
		}
	}
	cert, err := certs.ParseCertificate(secret.Data[corev1.TLSCertKey])
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("failed to parse the certificate in Secret %s: %w", req.NamespacedName, err)
	}
	return ctrl.Result{RequeueAfter: max(certs.RenewAt(cert).Sub(now), time.Second)}, nil
}

// issue writes a new certificate, issued by ca, and the CA bundle into
// secret (created when !exists).
func (r *Reconciler) issue(ctx context.Context, ca *certs.CA, bundle []byte, now time.Time, secret *corev1.Secret, key types.NamespacedName, exists bool) error {
	certPEM, keyPEM, err := ca.Issue(Spec, now)
	if err != nil {
		return fmt.Errorf("failed to issue the service-proxy certificate: %w", err)
	}
	data := map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM, proxyv1alpha1.CASecretKey: bundle}
	if exists && secret.Type != corev1.SecretTypeTLS {
		// The type of a Secret cannot change: replace it.
		if err := r.Client.Delete(ctx, secret, client.Preconditions{UID: &secret.UID}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("failed to replace Secret %s of type %s: %w", key, secret.Type, err)
		}
		exists = false
	}
	if !exists {
		*secret = corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Type:       corev1.SecretTypeTLS,
			Data:       data,
		}
		if err := r.Client.Create(ctx, secret); err != nil {
			return fmt.Errorf("failed to create Secret %s: %w", key, err)
		}
		return nil
	}
	secret.Data = data
	if err := r.Client.Update(ctx, secret); err != nil {
		return fmt.Errorf("failed to update Secret %s: %w", key, err)
	}
	return nil
}

// startupSource enqueues key once, when the controller starts, so a
// certificate that does not exist yet is issued without waiting for an event.
func startupSource(key types.NamespacedName) source.Source {
	events := make(chan event.GenericEvent, 1)
	events <- event.GenericEvent{Object: &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}}
	return source.Channel(events, &handler.EnqueueRequestForObject{})
}
