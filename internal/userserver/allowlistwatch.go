package userserver

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
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
// and waits for the first list, or until waitCtx is done (a shutdown before
// serving).
func watchAllowlist(ctx, waitCtx context.Context, client kubernetes.Interface, recorder record.EventRecorder, namespace, name string) (*allowlistWatch, error) {
	log := klog.FromContext(ctx).WithValues("configMap", namespace+"/"+name)
	w := &allowlistWatch{}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	informer := factory.Core().V1().ConfigMaps().Informer()
	apply := func(obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok {
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
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    apply,
		UpdateFunc: func(_, obj any) { apply(obj) },
		DeleteFunc: func(any) {
			w.current.Store(&Allowlist{})
			log.Info("The exposed-services ConfigMap was deleted; no Service is exposed")
		},
	}); err != nil {
		return nil, fmt.Errorf("failed to watch ConfigMap %s/%s: %w", namespace, name, err)
	}
	factory.Start(ctx.Done())
	go func() {
		<-ctx.Done()
		factory.Shutdown()
	}()
	// The first read ends with either context.
	wait, cancel := context.WithCancel(waitCtx)
	defer cancel()
	defer context.AfterFunc(ctx, cancel)()
	if !cache.WaitForCacheSync(wait.Done(), informer.HasSynced) {
		return nil, fmt.Errorf("stopped before ConfigMap %s/%s was read: %w", namespace, name, errors.Join(context.Cause(waitCtx), context.Cause(ctx)))
	}
	return w, nil
}
