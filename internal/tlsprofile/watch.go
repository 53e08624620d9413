package tlsprofile

import (
	"context"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/configmapwatch"
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
	log := klog.FromContext(ctx).WithValues("configMap", klog.KRef(w.namespace, ConfigMapName))
	return configmapwatch.Run(ctx, w.client, w.namespace, ConfigMapName, configmapwatch.Handlers{
		Changed: func(cm *corev1.ConfigMap) {
			w.update(log, cm)
			w.markRead()
		},
		ReadFailed: func(err error) {
			log.Error(err, "failed to read the TLS profile ConfigMap; serving with the current profile while retrying",
				"minTLSVersion", w.Current().MinVersionName(), "cipherSuites", w.Current().CipherSuiteNames())
			w.markRead()
		},
	})
}

// update sets the profile from cm (nil: absent), keeping the last good one
// when it is invalid. Only Run's goroutine calls it.
func (w *Watcher) update(log klog.Logger, cm *corev1.ConfigMap) {
	p, err := FromConfigMap(cm)
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
