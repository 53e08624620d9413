// Package configmapwatch follows one ConfigMap, named, with an informer on
// that object alone: the configuration the HTTP-side commands take from a
// ConfigMap without a restart (the OCM TLS profile, the OIDC issuer's CA,
// the exposed-services allowlist).
package configmapwatch

import (
	"context"
	"fmt"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Handlers are what Run calls, always from its own goroutine, one call at a
// time.
type Handlers struct {
	// Changed gets the ConfigMap once it has been listed and after every
	// change; nil while it does not exist.
	Changed func(cm *corev1.ConfigMap)
	// ReadFailed, optional, gets each failure to list or watch the
	// ConfigMap until the first list succeeds (RBAC, an unreachable API
	// server): the caller's chance to say why nothing was read yet.
	ReadFailed func(err error)
}

// Run follows ConfigMap namespace/name until ctx is done.
func Run(ctx context.Context, client kubernetes.Interface, namespace, name string, h Handlers) error {
	ref := klog.KRef(namespace, name)
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
		return fmt.Errorf("failed to watch ConfigMap %s: %w", ref, err)
	}
	var synced atomic.Bool
	if err := informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		cache.DefaultWatchErrorHandler(ctx, r, err)
		if !synced.Load() && h.ReadFailed != nil {
			h.ReadFailed(fmt.Errorf("failed to read ConfigMap %s: %w", ref, err))
		}
	}); err != nil {
		return fmt.Errorf("failed to watch ConfigMap %s: %w", ref, err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil
	}
	synced.Store(true)
	notify()
	lister := configMaps.Lister().ConfigMaps(namespace)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			cm, err := lister.Get(name)
			if apierrors.IsNotFound(err) {
				cm = nil
			} else if err != nil {
				// The lister reads the informer's cache: only NotFound.
				klog.FromContext(ctx).Error(err, "failed to read ConfigMap from the cache", "configMap", ref)
				continue
			}
			h.Changed(cm)
		}
	}
}
