package tlsprofile

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Watcher keeps the profile of the ConfigMap ocm-tls-profile in one
// namespace current, for servers that apply it to new handshakes
// (ServerConfig with Current). It starts with Default. Then:
//   - the ConfigMap absent or deleted: Default;
//   - created or changed with valid values: those values;
//   - an invalid value: the last good profile stays, and the error naming
//     the key is logged — a typo never weakens a server below what it runs
//     with, and never below Default either.
type Watcher struct {
	client    kubernetes.Interface
	namespace string

	current  atomic.Pointer[Profile]
	read     chan struct{}
	readOnce sync.Once
	// lastInvalid is the last invalid ConfigMap's error, logged once.
	lastInvalid string
}

// NewWatcher returns a Watcher of the ConfigMap in namespace, read through
// client once Run is called.
func NewWatcher(client kubernetes.Interface, namespace string) *Watcher {
	w := &Watcher{client: client, namespace: namespace, read: make(chan struct{})}
	p := Default()
	w.current.Store(&p)
	return w
}

// Current returns the profile in force.
func (w *Watcher) Current() Profile {
	return *w.current.Load()
}

// Read is closed once the ConfigMap has been read for the first time (the
// profile is then the ConfigMap's), or the first attempt failed (the
// profile stays Default while the watch retries). A server waits for it
// before it listens, so it never serves a weaker profile than configured
// for lack of having looked.
func (w *Watcher) Read() <-chan struct{} {
	return w.read
}

func (w *Watcher) markRead() {
	w.readOnce.Do(func() { close(w.read) })
}

// Run watches the ConfigMap (an informer on that one object) until ctx is
// done.
func (w *Watcher) Run(ctx context.Context) error {
	ref := klog.KRef(w.namespace, ConfigMapName)
	log := klog.FromContext(ctx).WithValues("configMap", ref)
	factory := informers.NewSharedInformerFactoryWithOptions(w.client, 0, informers.WithNamespace(w.namespace),
		informers.WithTweakListOptions(func(opts *metav1.ListOptions) {
			opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", ConfigMapName).String()
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
		return fmt.Errorf("failed to watch the TLS profile ConfigMap %s: %w", ref, err)
	}
	var synced atomic.Bool
	if err := informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		cache.DefaultWatchErrorHandler(ctx, r, err)
		if !synced.Load() {
			log.Error(err, "failed to read the TLS profile ConfigMap; serving with the current profile while retrying",
				"minTLSVersion", w.Current().MinVersionName(), "cipherSuites", w.Current().CipherSuiteNames())
			w.markRead()
		}
	}); err != nil {
		return fmt.Errorf("failed to watch the TLS profile ConfigMap %s: %w", ref, err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil
	}
	synced.Store(true)
	w.update(ctx, configMaps.Lister())
	w.markRead()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			w.update(ctx, configMaps.Lister())
		}
	}
}

// update sets the profile from the ConfigMap in the lister, keeping the last
// good one when the ConfigMap is invalid. Only Run's goroutine calls it.
func (w *Watcher) update(ctx context.Context, lister corev1listers.ConfigMapLister) {
	ref := klog.KRef(w.namespace, ConfigMapName)
	log := klog.FromContext(ctx).WithValues("configMap", ref)
	cm, err := lister.ConfigMaps(w.namespace).Get(ConfigMapName)
	if apierrors.IsNotFound(err) {
		cm, err = nil, nil
	}
	var p Profile
	if err == nil {
		p, err = FromConfigMap(cm)
	}
	if err != nil {
		if err.Error() != w.lastInvalid {
			w.lastInvalid = err.Error()
			last := w.Current()
			log.Error(err, "invalid TLS profile ConfigMap; keeping the last good profile",
				"minTLSVersion", last.MinVersionName(), "cipherSuites", last.CipherSuiteNames())
		}
		return
	}
	w.lastInvalid = ""
	if p.Equal(w.Current()) {
		return
	}
	w.current.Store(&p)
	log.Info("TLS profile applied to new connections", "exists", cm != nil,
		"minTLSVersion", p.MinVersionName(), "cipherSuites", p.CipherSuiteNames())
}
