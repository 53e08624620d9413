package userserver

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/configmapwatch"
)

// Event reasons of the allowlist ConfigMap.
const (
	// ReasonInvalidAllowlist: the ConfigMap does not parse; the last good
	// list stays in force.
	ReasonInvalidAllowlist = "InvalidExposedServices"
	// ReasonAllowlistLoaded: the ConfigMap's list is in force.
	ReasonAllowlistLoaded = "ExposedServicesLoaded"
)

// allowlistWatch keeps the allowlist of one ConfigMap current: its list
// once it parses, the last good list while it does not (with a Warning
// Event on the ConfigMap saying why), nothing while it is missing.
type allowlistWatch struct {
	current atomic.Pointer[Allowlist]
}

// Allowlist returns the list in force; nothing is allowed until the
// ConfigMap has been read.
func (w *allowlistWatch) Allowlist() Allowlist {
	if a := w.current.Load(); a != nil {
		return *a
	}
	return Allowlist{}
}

// watchAllowlist starts watching ConfigMap namespace/name until ctx is done
// and waits for the first read, or until waitCtx is done (a shutdown before
// serving).
func watchAllowlist(ctx, waitCtx context.Context, client kubernetes.Interface, recorder record.EventRecorder, namespace, name string) (*allowlistWatch, error) {
	log := klog.FromContext(ctx).WithValues("configMap", klog.KRef(namespace, name))
	w := &allowlistWatch{}
	read := make(chan struct{})
	var readOnce sync.Once
	go func() {
		err := configmapwatch.Run(ctx, client, namespace, name, configmapwatch.Handlers{
			Changed: func(cm *corev1.ConfigMap) {
				w.apply(log, recorder, cm)
				readOnce.Do(func() { close(read) })
			},
			ReadFailed: func(err error) {
				log.Error(err, "The exposed-services list is not read yet; not serving until it is")
			},
		})
		if err != nil {
			log.Error(err, "The exposed-services ConfigMap is not watched")
		}
	}()
	select {
	case <-read:
		return w, nil
	case <-waitCtx.Done():
		return nil, fmt.Errorf("stopped before ConfigMap %s/%s was read: %w", namespace, name, context.Cause(waitCtx))
	case <-ctx.Done():
		return nil, fmt.Errorf("stopped before ConfigMap %s/%s was read: %w", namespace, name, context.Cause(ctx))
	}
}

// apply puts cm's list in force (nil: deleted, nothing allowed), or keeps
// the last good list when cm does not parse.
func (w *allowlistWatch) apply(log klog.Logger, recorder record.EventRecorder, cm *corev1.ConfigMap) {
	if cm == nil {
		w.current.Store(&Allowlist{})
		log.Info("The exposed-services ConfigMap does not exist; no Service is exposed")
		return
	}
	list, err := ParseAllowlist(cm.Data)
	if err != nil {
		kept := w.Allowlist().Len()
		log.Error(err, "The exposed-services ConfigMap is invalid; keeping the last good list", "entriesKept", kept)
		recorder.Eventf(cm, corev1.EventTypeWarning, ReasonInvalidAllowlist,
			"Invalid exposed-services list, the last good list (%d entries) stays in force: %v", kept, err)
		return
	}
	w.current.Store(&list)
	log.Info("Exposed-services list loaded", "entries", list.Len())
	recorder.Eventf(cm, corev1.EventTypeNormal, ReasonAllowlistLoaded, "Exposed-services list loaded: %d entries", list.Len())
}
