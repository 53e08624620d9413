package tlsprofile

import (
	"context"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
)

// Start runs a Watcher of namespace until ctx is done, waits up to timeout
// for its first read (past it, the default profile is in force until the
// ConfigMap is read; the wait also ends when waitCtx is done, a shutdown
// before serving), and returns the profile in force, for ServerConfig.
func Start(ctx, waitCtx context.Context, client kubernetes.Interface, namespace string, timeout time.Duration) func() Profile {
	log := klog.FromContext(ctx).WithValues("configMap", klog.KRef(namespace, ConfigMapName))
	w := NewWatcher(client, namespace)
	go func() {
		if err := w.Run(ctx); err != nil {
			log.Error(err, "the TLS profile ConfigMap is not watched; serving with the last profile read")
		}
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-w.Read():
	case <-ctx.Done():
	case <-waitCtx.Done():
	case <-timer.C:
		log.Error(nil, "the TLS profile ConfigMap has not been read yet; serving with the default profile until it is", "waited", timeout)
	}
	return w.Current
}
