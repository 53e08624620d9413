package authn

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// OIDCCAKey is the key of the OIDC issuer's CA (PEM) in its ConfigMap, under
// data or binaryData.
const OIDCCAKey = "ca.crt"

// WatchOIDCCA keeps o trusting the CA in key ca.crt of ConfigMap
// namespace/name, watched with an informer on that one object: every change
// applies without a restart, and while the ConfigMap, its key or a
// certificate in it is missing, o fails closed naming why. It runs until ctx
// is done; o stops with it.
func WatchOIDCCA(ctx context.Context, client kubernetes.Interface, namespace, name string, o *OIDC) error {
	ref := klog.KRef(namespace, name)
	log := klog.FromContext(ctx).WithValues("configMap", ref)
	o.Disable(fmt.Errorf("the CA ConfigMap %s has not been read yet", ref))

	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(opts *metav1.ListOptions) {
			opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	configMaps := factory.Core().V1().ConfigMaps()
	informer := configMaps.Informer()
	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { notify() },
		UpdateFunc: func(any, any) { notify() },
		DeleteFunc: func(any) { notify() },
	}); err != nil {
		return fmt.Errorf("failed to watch the CA ConfigMap %s: %w", ref, err)
	}
	// Until the first list succeeds, a failure to read (RBAC, say) is the
	// reason OIDC tokens are refused.
	var synced atomic.Bool
	if err := informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		cache.DefaultWatchErrorHandler(ctx, r, err)
		if !synced.Load() {
			o.Disable(fmt.Errorf("failed to read the CA ConfigMap %s: %w", ref, err))
		}
	}); err != nil {
		return fmt.Errorf("failed to watch the CA ConfigMap %s: %w", ref, err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil
	}
	synced.Store(true)
	notify()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			if err := loadOIDCCA(ctx, configMaps.Lister(), namespace, name, o); err != nil {
				o.Disable(err)
				log.Error(err, "the OIDC issuer's CA is unusable: OIDC tokens are refused until the ConfigMap is fixed")
				continue
			}
			log.V(2).Info("trusting the OIDC issuer's CA from the ConfigMap")
		}
	}
}

// loadOIDCCA makes o trust the CA in the ConfigMap, or says why it cannot.
func loadOIDCCA(ctx context.Context, lister corev1listers.ConfigMapLister, namespace, name string, o *OIDC) error {
	ref := klog.KRef(namespace, name)
	cm, err := lister.ConfigMaps(namespace).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("the CA ConfigMap %s does not exist", ref)
	case err != nil:
		return fmt.Errorf("failed to read the CA ConfigMap %s: %w", ref, err)
	}
	ca, ok := caOf(cm)
	if !ok {
		return fmt.Errorf("the CA ConfigMap %s has no key %s (in data or binaryData)", ref, OIDCCAKey)
	}
	if err := o.UseCA(ctx, ca); err != nil {
		return fmt.Errorf("key %s of the CA ConfigMap %s: %w", OIDCCAKey, ref, err)
	}
	return nil
}

// caOf returns the CA of the ConfigMap: data first, then binaryData (the API
// server keeps a key out of one of them).
func caOf(cm *corev1.ConfigMap) ([]byte, bool) {
	if s, ok := cm.Data[OIDCCAKey]; ok {
		return []byte(s), true
	}
	if b, ok := cm.BinaryData[OIDCCAKey]; ok {
		return b, true
	}
	return nil, false
}

// errNoCertificate is UseCA's refusal of a CA without a certificate.
var errNoCertificate = errors.New("holds no PEM certificate")
