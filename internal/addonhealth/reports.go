package addonhealth

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"open-cluster-management.io/cluster-proxy/internal/healthreport"
)

// reportCache holds the decoded report of each report ConfigMap at its
// resourceVersion: a report every addon reads is decoded once per write.
type reportCache struct {
	mu      sync.Mutex
	entries map[types.NamespacedName]decodedReport
}

type decodedReport struct {
	resourceVersion string
	report          *healthreport.Report
	err             error
}

// get returns the report cm holds, which callers must not modify. A
// ConfigMap that holds no valid report is logged once per version.
func (c *reportCache) get(ctx context.Context, cm *corev1.ConfigMap) (*healthreport.Report, error) {
	key := client.ObjectKeyFromObject(cm)
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && e.resourceVersion == cm.ResourceVersion {
		return e.report, e.err
	}
	e = decodedReport{resourceVersion: cm.ResourceVersion}
	report, err := healthreport.FromConfigMap(cm)
	if err != nil {
		klog.FromContext(ctx).Error(err, "ignoring a health report that cannot be read", "configMap", klog.KObj(cm))
		e.err = err
	} else {
		e.report = &report
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[types.NamespacedName]decodedReport{}
	}
	c.entries[key] = e
	c.mu.Unlock()
	return e.report, e.err
}

func (c *reportCache) forget(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
}

// reportHandler maps report ConfigMap events to the addons they may
// change: on an update, those of the clusters whose entries changed (a
// rewrite that changes nothing but its time wakes no one); everyone when a
// report appears, goes, was stale, or changes its server.
func (r *Reconciler) reportHandler() handler.EventHandler {
	all := func(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		for _, req := range r.enqueueAll(ctx, nil) {
			q.Add(req)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, _ event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			all(ctx, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			r.reports.forget(client.ObjectKeyFromObject(e.Object))
			all(ctx, q)
		},
		GenericFunc: func(ctx context.Context, _ event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			all(ctx, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			oldCM, okOld := e.ObjectOld.(*corev1.ConfigMap)
			newCM, okNew := e.ObjectNew.(*corev1.ConfigMap)
			if !okOld || !okNew {
				all(ctx, q)
				return
			}
			before, errOld := r.reports.get(ctx, oldCM)
			after, errNew := r.reports.get(ctx, newCM)
			if errOld != nil || errNew != nil || before.ServerID != after.ServerID || before.ServerCount != after.ServerCount ||
				!r.Clock.Now().Before(before.UpdateTime.Add(r.Staleness)) {
				all(ctx, q)
				return
			}
			for _, cluster := range changedClusters(before, after) {
				q.Add(request(cluster))
			}
		},
	}
}

// changedClusters returns the clusters whose entries differ between two
// reports (both sorted by name) in what the conditions depend on.
func changedClusters(before, after *healthreport.Report) []string {
	var changed []string
	a, b := before.Clusters, after.Clusters
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || (len(a) > 0 && a[0].Name < b[0].Name):
			changed = append(changed, a[0].Name)
			a = a[1:]
		case len(a) == 0 || b[0].Name < a[0].Name:
			changed = append(changed, b[0].Name)
			b = b[1:]
		default:
			if !sameHealth(&a[0], &b[0]) {
				changed = append(changed, a[0].Name)
			}
			a, b = a[1:], b[1:]
		}
	}
	return changed
}

func sameHealth(a, b *healthreport.Cluster) bool {
	if a.Connected() != b.Connected() || (a.Certificate == nil) != (b.Certificate == nil) {
		return false
	}
	return a.Certificate == nil || *a.Certificate == *b.Certificate
}

// shortTracker remembers since when each cluster has been short of
// connections (Result.Short), for the grace period.
type shortTracker struct {
	mu    sync.Mutex
	start map[string]time.Time
}

// since returns when cluster became short; zero when it is not known to
// be.
func (t *shortTracker) since(cluster string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.start[cluster]
}

// update starts a stretch at now when cluster is short and was not, and
// ends it when cluster is no longer short.
func (t *shortTracker) update(cluster string, short bool, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !short {
		delete(t.start, cluster)
		return
	}
	if _, ok := t.start[cluster]; ok {
		return
	}
	if t.start == nil {
		t.start = map[string]time.Time{}
	}
	t.start[cluster] = now
}

func (t *shortTracker) forget(cluster string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.start, cluster)
}
