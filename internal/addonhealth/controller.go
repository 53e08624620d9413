package addonhealth

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"open-cluster-management.io/cluster-proxy/internal/healthreport"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// RBAC of the Reconciler (config/rbac/role.yaml is generated from these
// markers). The reports live in the proxy-server namespace each
// ManagedProxyConfiguration names, so reading them needs a cluster-wide
// rule; the addon-manager's cache holds only the report ConfigMaps
// (healthreport.Selector).
//
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=addon.open-cluster-management.io,resources=managedclusteraddons,verbs=get;list;watch
// +kubebuilder:rbac:groups=addon.open-cluster-management.io,resources=managedclusteraddons/status,verbs=patch
// +kubebuilder:rbac:groups=cluster.open-cluster-management.io,resources=managedclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=proxy.open-cluster-management.io,resources=managedproxyconfigurations,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// AddonName is the ManagedClusterAddOn the Reconciler looks after (the
// agent addon's name, agentaddon.AddonName).
const AddonName = "cluster-proxy"

// ControllerName names the controller (and its logger).
const ControllerName = "addonhealth"

// Defaults of the Reconciler's durations.
const (
	// DefaultStaleness: a report not rewritten for three of the writers'
	// periods no longer counts.
	DefaultStaleness = 3 * healthreport.DefaultPeriod
	// DefaultGrace rides out a proxy-server rollout: new pods start, agents
	// connect to them and leave the old ones within seconds to a minute.
	DefaultGrace = 2 * time.Minute
	// DefaultResync is how often every addon is looked at again without a
	// change.
	DefaultResync = DefaultStaleness
)

// conflictRetries is how many times a status patch that conflicts with
// another writer's is tried again, each time on a fresh read.
const conflictRetries = 5

// minRequeue keeps a recheck due now from spinning.
const minRequeue = time.Second

// eventActionPrefix starts the action of the Events the Reconciler
// records; the condition's type follows (UpdateAvailable, UpdateDegraded).
// Events of one action and reason aggregate into a series, so the two
// conditions' Events must not share one.
const eventActionPrefix = "Update"

// Reconciler sets the Available and Degraded conditions of the
// ManagedClusterAddOns named AddonName from the proxy-servers' health
// reports. It writes only those two conditions, by a JSON merge patch
// bound to the resourceVersion it read (a conflict is retried on a fresh
// read), so other writers' conditions stay. While the ManagedCluster's own
// Available condition is Unknown it leaves Available to the hub's
// registration controller, which then sets it Unknown.
type Reconciler struct {
	// Client reads (from the cache) and patches.
	Client client.Client
	// APIReader reads an addon again, past the cache, after a conflict.
	APIReader client.Reader
	// Recorder records an Event on an addon when a condition changes
	// status or reason.
	Recorder events.EventRecorder
	// Clock tells the time reports, grace and certificates are measured
	// against.
	Clock clock.PassiveClock
	// ConfigurationName is the ManagedProxyConfiguration an addon uses
	// (agentaddon.ConfigurationName): its proxy-server namespace holds the
	// reports, its replicas are the expected server count.
	ConfigurationName func(*addonapiv1beta1.ManagedClusterAddOn) string
	// TrustedSigners, optional, returns the signer organizational units
	// (identity.SignerOU) of the CAs agent certificates may come from;
	// nil skips that check.
	TrustedSigners func(context.Context) ([]string, error)
	// Staleness, Grace and Resync: 0 means DefaultStaleness, DefaultGrace,
	// DefaultResync.
	Staleness, Grace, Resync time.Duration

	reports reportCache
	short   shortTracker
}

var _ reconcile.Reconciler = &Reconciler{}

// SetupWithManager registers the reconciler with mgr. It fails when a
// dependency is missing. The manager's cache must hold the report
// ConfigMaps (healthreport.Selector()).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	var missing []string
	if r.Client == nil {
		missing = append(missing, "Client")
	}
	if r.APIReader == nil {
		missing = append(missing, "APIReader")
	}
	if r.Recorder == nil {
		missing = append(missing, "Recorder")
	}
	if r.Clock == nil {
		missing = append(missing, "Clock")
	}
	if r.ConfigurationName == nil {
		missing = append(missing, "ConfigurationName")
	}
	if len(missing) > 0 {
		return fmt.Errorf("addonhealth.Reconciler is missing %v", missing)
	}
	if r.Staleness < 0 || r.Grace < 0 || r.Resync < 0 {
		return fmt.Errorf("addonhealth.Reconciler durations must not be negative: staleness %s, grace %s, resync %s", r.Staleness, r.Grace, r.Resync)
	}
	r.Staleness = orDefault(r.Staleness, DefaultStaleness)
	r.Grace = orDefault(r.Grace, DefaultGrace)
	r.Resync = orDefault(r.Resync, DefaultResync)

	isReport := predicate.NewPredicateFuncs(func(o client.Object) bool { return healthreport.IsReport(o.GetLabels()) })
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&addonapiv1beta1.ManagedClusterAddOn{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetName() == AddonName
		}))).
		Watches(&clusterv1.ManagedCluster{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{request(o.GetName())}
		})).
		Watches(&proxyv1alpha1.ManagedProxyConfiguration{}, handler.EnqueueRequestsFromMapFunc(r.enqueueAll),
			builder.WithPredicates(configurationChanged())).
		Watches(&corev1.ConfigMap{}, r.reportHandler(), builder.WithPredicates(isReport)).
		Complete(r)
}

// orDefault returns v, or def when v is 0.
func orDefault(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// request is the reconcile request of cluster's addon.
func request(cluster string) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: cluster, Name: AddonName}}
}

// configurationChanged passes the ManagedProxyConfiguration events that
// change the expected server count or where reports are read.
func configurationChanged() predicate.Predicate {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, okOld := e.ObjectOld.(*proxyv1alpha1.ManagedProxyConfiguration)
			n, okNew := e.ObjectNew.(*proxyv1alpha1.ManagedProxyConfiguration)
			return !okOld || !okNew || o.Spec.ProxyServer.Namespace != n.Spec.ProxyServer.Namespace ||
				o.Spec.ProxyServer.Replicas != n.Spec.ProxyServer.Replicas
		},
	}
}

// enqueueAll maps an event to every addon named AddonName.
func (r *Reconciler) enqueueAll(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &addonapiv1beta1.ManagedClusterAddOnList{}
	if err := r.Client.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		klog.FromContext(ctx).Error(err, "failed to list ManagedClusterAddOns")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if list.Items[i].Name == AddonName {
			reqs = append(reqs, request(list.Items[i].Namespace))
		}
	}
	return reqs
}

// Reconcile sets the health conditions of one addon.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Name != AddonName {
		return ctrl.Result{}, nil
	}
	cluster := req.Namespace
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("cluster", cluster))
	var recheckAt time.Time
	var changed []change
	var addon *addonapiv1beta1.ManagedClusterAddOn
	var err error
	// Not client-go's retry.RetryOnConflict: it returns nil when the last
	// error is a cancelled context.
	reader := client.Reader(r.Client)
	for attempt := 0; ; attempt++ {
		addon = &addonapiv1beta1.ManagedClusterAddOn{}
		if err = reader.Get(ctx, req.NamespacedName, addon); err == nil {
			changed, recheckAt, err = r.update(ctx, addon)
		}
		if !apierrors.IsConflict(err) || attempt == conflictRetries {
			break
		}
		// The cache may still hold what conflicted: read past it.
		reader = r.APIReader
	}
	if apierrors.IsNotFound(err) {
		r.short.forget(cluster)
		return ctrl.Result{}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	for _, c := range changed {
		r.Recorder.Eventf(addon, nil, c.eventType(), c.now.Reason, eventActionPrefix+c.now.Type, "%s", c.note())
	}
	after := r.Resync
	if !recheckAt.IsZero() {
		after = min(after, max(recheckAt.Sub(r.Clock.Now()), minRequeue))
	}
	return ctrl.Result{RequeueAfter: after}, nil
}

// change is a condition that changed status or reason.
type change struct {
	before *metav1.Condition
	now    metav1.Condition
}

func (c change) eventType() string {
	healthy := metav1.ConditionTrue
	if c.now.Type == addonapiv1beta1.ManagedClusterAddOnConditionDegraded {
		healthy = metav1.ConditionFalse
	}
	if c.now.Status == healthy {
		return corev1.EventTypeNormal
	}
	return corev1.EventTypeWarning
}

func (c change) note() string {
	if c.before == nil {
		return fmt.Sprintf("%s set to %s (%s): %s", c.now.Type, c.now.Status, c.now.Reason, c.now.Message)
	}
	return fmt.Sprintf("%s changed from %s (%s) to %s (%s): %s", c.now.Type, c.before.Status, c.before.Reason,
		c.now.Status, c.now.Reason, c.now.Message)
}

// update computes and patches the conditions of addon. It returns the
// conditions that changed status or reason, and when to look again.
func (r *Reconciler) update(ctx context.Context, addon *addonapiv1beta1.ManagedClusterAddOn) ([]change, time.Time, error) {
	log := klog.FromContext(ctx)
	if !addon.DeletionTimestamp.IsZero() {
		return nil, time.Time{}, nil
	}
	cluster := addon.Namespace
	mc := &clusterv1.ManagedCluster{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: cluster}, mc); err != nil {
		if apierrors.IsNotFound(err) {
			// The addon goes with its cluster.
			log.V(4).Info("managed cluster not found; leaving its addon alone")
			return nil, time.Time{}, nil
		}
		return nil, time.Time{}, fmt.Errorf("failed to get ManagedCluster %s: %w", cluster, err)
	}
	reports, expected, err := r.serverReports(ctx, addon)
	if err != nil {
		return nil, time.Time{}, err
	}
	var trusted []string
	if r.TrustedSigners != nil {
		if trusted, err = r.TrustedSigners(ctx); err != nil {
			return nil, time.Time{}, fmt.Errorf("failed to get the trusted signers: %w", err)
		}
	}
	now := r.Clock.Now()
	res := Evaluate(Input{
		Cluster: cluster, Reports: reports, ExpectedServers: expected, Now: now,
		Staleness: r.Staleness, Grace: r.Grace, ShortSince: r.short.since(cluster),
		TrustedSigners: trusted, Current: addon.Status.Conditions,
	})
	r.short.update(cluster, res.Short, now)

	if res.Hold {
		log.V(4).Info("connections fell short; keeping the addon's conditions for the grace period", "after", res.RecheckAt.Sub(now))
		return nil, res.RecheckAt, nil
	}

	desired := []metav1.Condition{res.Degraded}
	// The hub's registration controller sets Available Unknown while the
	// cluster's own Available is Unknown; two writers would take turns.
	if c := meta.FindStatusCondition(mc.Status.Conditions, clusterv1.ManagedClusterConditionAvailable); c == nil || c.Status != metav1.ConditionUnknown {
		desired = append(desired, res.Available)
	}
	before := addon.DeepCopy()
	var changed []change
	patch := false
	for _, c := range desired {
		c.ObservedGeneration = addon.Generation
		c.LastTransitionTime = metav1.NewTime(now)
		old := meta.FindStatusCondition(before.Status.Conditions, c.Type)
		if !meta.SetStatusCondition(&addon.Status.Conditions, c) {
			continue
		}
		patch = true
		if old == nil || old.Status != c.Status || old.Reason != c.Reason {
			changed = append(changed, change{before: old, now: c})
		}
	}
	if !patch {
		return nil, res.RecheckAt, nil
	}
	if err := r.Client.Status().Patch(ctx, addon, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return nil, time.Time{}, fmt.Errorf("failed to patch the status of ManagedClusterAddOn %s/%s: %w", addon.Namespace, addon.Name, err)
	}
	for _, c := range changed {
		log.V(2).Info("addon health changed", "managedClusterAddOn", klog.KObj(addon), "reason", c.note())
	}
	return changed, res.RecheckAt, nil
}

// serverReports returns the reports of the proxy-servers of addon's
// ManagedProxyConfiguration, narrowed to its cluster, and the number of
// proxy-servers it runs. No configuration means no reports.
func (r *Reconciler) serverReports(ctx context.Context, addon *addonapiv1beta1.ManagedClusterAddOn) ([]ServerReport, int, error) {
	name := r.ConfigurationName(addon)
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, mpc); err != nil {
		if apierrors.IsNotFound(err) {
			klog.FromContext(ctx).V(2).Info("no ManagedProxyConfiguration, so no proxy-server reports", "managedProxyConfiguration", klog.KRef("", name))
			return nil, 0, nil
		}
		return nil, 0, fmt.Errorf("failed to get ManagedProxyConfiguration %s: %w", name, err)
	}
	list := &corev1.ConfigMapList{}
	// Reports are large and only read here: no copies.
	if err := r.Client.List(ctx, list, client.InNamespace(mpc.Spec.ProxyServer.Namespace),
		client.MatchingLabelsSelector{Selector: healthreport.Selector()}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, 0, fmt.Errorf("failed to list the health reports in namespace %s: %w", mpc.Spec.ProxyServer.Namespace, err)
	}
	reports := make([]ServerReport, 0, len(list.Items))
	for i := range list.Items {
		report, err := r.reports.get(ctx, &list.Items[i])
		if err != nil {
			continue
		}
		reports = append(reports, ForCluster(report, addon.Namespace))
	}
	return reports, int(mpc.Spec.ProxyServer.Replicas), nil
}
