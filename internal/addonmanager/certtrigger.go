package addonmanager

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	addonclient "open-cluster-management.io/api/client/addon/clientset/versioned"

	"open-cluster-management.io/cluster-proxy/internal/agentaddon"
)

// certificateTrigger re-renders every cluster-proxy addon when a Secret
// the agents' values come from changes: the service-proxy certificate
// (created, reissued by `cluster-proxy controllers`, deleted), or the CA
// Secret (a CA rotation's phase changes the CA bundle), so each cluster's
// copy follows it. The addon-framework only re-renders on addon, cluster
// and config changes, and those Secrets are none of them.
type certificateTrigger struct {
	kubeClient  kubernetes.Interface
	addonClient addonclient.Interface
	// namespace and name locate the Secret.
	namespace, name string
	// trigger queues one addon for rendering (the addon-framework
	// manager's Trigger).
	trigger func(clusterName, addonName string)
	// onChange, optional, is told of every change too.
	onChange func()

	mu sync.Mutex
	// store is the informer's, once Start made it (metrics read it).
	store cache.Store
}

// secret returns the service-proxy certificate Secret as the watch last saw
// it, or nil when it is not watched (yet) or does not exist. t may be nil.
func (t *certificateTrigger) secret() *corev1.Secret {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	store := t.store
	t.mu.Unlock()
	if store == nil {
		return nil
	}
	obj, ok, err := store.GetByKey(t.namespace + "/" + t.name)
	if err != nil || !ok {
		return nil
	}
	secret, _ := obj.(*corev1.Secret)
	return secret
}

// Start watches the Secret until ctx ends.
func (t *certificateTrigger) Start(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("secret", t.namespace+"/"+t.name)
	factory := informers.NewSharedInformerFactoryWithOptions(t.kubeClient, 10*time.Minute,
		informers.WithNamespace(t.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", t.name).String()
		}))
	informer := factory.Core().V1().Secrets().Informer()
	changed := func(reason string) {
		if t.onChange != nil {
			t.onChange()
		}
		if err := t.triggerAll(ctx); err != nil {
			logger.Error(err, "Failed to re-render the addons after the Secret changed", "change", reason)
			return
		}
		logger.V(2).Info("Secret changed; addons re-rendered", "change", reason)
	}
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { changed("added") },
		UpdateFunc: func(oldObj, newObj any) {
			o, okOld := oldObj.(*corev1.Secret)
			n, okNew := newObj.(*corev1.Secret)
			if okOld && okNew && o.ResourceVersion == n.ResourceVersion {
				return // a resync
			}
			changed("updated")
		},
		DeleteFunc: func(any) { changed("deleted") },
	}); err != nil {
		return fmt.Errorf("failed to watch Secret %s/%s: %w", t.namespace, t.name, err)
	}
	t.mu.Lock()
	t.store = informer.GetStore()
	t.mu.Unlock()
	factory.Start(ctx.Done())
	<-ctx.Done()
	factory.Shutdown()
	return nil
}

// triggerAll queues every ManagedClusterAddOn of the cluster-proxy addon.
func (t *certificateTrigger) triggerAll(ctx context.Context) error {
	addons, err := t.addonClient.AddonV1beta1().ManagedClusterAddOns(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", agentaddon.AddonName).String(),
	})
	if err != nil {
		return fmt.Errorf("failed to list the %s addons: %w", agentaddon.AddonName, err)
	}
	for _, addon := range addons.Items {
		t.trigger(addon.Namespace, addon.Name)
	}
	return nil
}
