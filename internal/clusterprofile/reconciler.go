// Package clusterprofile publishes, in the status of each ClusterProfile
// (multicluster.x-k8s.io/v1alpha1, the Cluster Inventory API) that Open
// Cluster Management manages, how to reach that cluster through the hub's
// user-server: the access provider named ProviderName. It is the
// addon-manager's ClusterProfile feature (gate ClusterProfile), registered
// only when the gate is on.
package clusterprofile

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	cpv1alpha1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// ControllerName names the reconciler in logs and metrics.
const ControllerName = "clusterprofile"

// MissingRecheck is how often a ClusterProfile waiting for the user-server
// (its ManagedProxyConfiguration or its serving certificate Secret) is
// looked at again. The watches on both usually bring it back sooner; this
// is the backstop.
const MissingRecheck = time.Minute

// Reconciler keeps the ProviderName access provider of every ClusterProfile
// that Matches pointing at the user-server URL of its cluster.
type Reconciler struct {
	// Client reads ClusterProfiles, the ManagedProxyConfiguration and the
	// user-server Secret (from the manager's cache) and patches
	// ClusterProfile status.
	Client client.Client
}

var _ reconcile.Reconciler = &Reconciler{}

// RBAC of the ClusterProfile reconciler. The chart grants these rules only
// with featureGates.clusterProfile=true; the ManagedProxyConfiguration and
// the Secret are read through the rules of the proxyconfig package.
//
// +kubebuilder:rbac:groups=multicluster.x-k8s.io,resources=clusterprofiles,verbs=get;list;watch
// +kubebuilder:rbac:groups=multicluster.x-k8s.io,resources=clusterprofiles/status,verbs=patch

// SetupWithManager registers the reconciler with mgr. It fails when a
// dependency is missing. The ClusterProfile CRD must be installed (see
// StartWhenInstalled).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil {
		return errors.New("clusterprofile.Reconciler is missing [Client]")
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&cpv1alpha1.ClusterProfile{}, builder.WithPredicates(predicate.NewPredicateFuncs(Matches))).
		// Every profile's provider follows the user-server's namespace and
		// CA: a change of either (or their appearing) concerns them all.
		Watches(&proxyv1alpha1.ManagedProxyConfiguration{}, handler.EnqueueRequestsFromMapFunc(r.enqueueAll),
			builder.WithPredicates(configurationChanged())).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.enqueueAll),
			builder.WithPredicates(userServerSecretChanged())).
		Complete(r)
}

// configurationChanged passes events of the ManagedProxyConfiguration
// proxyv1alpha1.DefaultName that can change a provider: it appears, goes,
// or moves the proxy-servers (and the user-server) to another namespace.
func configurationChanged() predicate.Predicate {
	isDefault := func(o client.Object) bool { return o.GetName() == proxyv1alpha1.DefaultName }
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return isDefault(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return isDefault(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return isDefault(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, okOld := e.ObjectOld.(*proxyv1alpha1.ManagedProxyConfiguration)
			n, okNew := e.ObjectNew.(*proxyv1alpha1.ManagedProxyConfiguration)
			return okOld && okNew && isDefault(n) && o.Spec.ProxyServer.Namespace != n.Spec.ProxyServer.Namespace
		},
	}
}

// userServerSecretChanged passes events of the user-server Secrets (in any
// namespace: which one counts is the reconciler's business) that can change
// a provider: one appears, goes or gets another CA.
func userServerSecretChanged() predicate.Predicate {
	isUserServer := func(o client.Object) bool { return o.GetName() == proxyv1alpha1.UserServerSecretName }
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return isUserServer(e.Object) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return isUserServer(e.Object) },
		GenericFunc: func(e event.GenericEvent) bool { return isUserServer(e.Object) },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, okOld := e.ObjectOld.(*corev1.Secret)
			n, okNew := e.ObjectNew.(*corev1.Secret)
			return okOld && okNew && isUserServer(n) &&
				string(o.Data[proxyv1alpha1.CASecretKey]) != string(n.Data[proxyv1alpha1.CASecretKey])
		},
	}
}

// enqueueAll maps an event to every ClusterProfile in the cache (which holds
// only the matching ones).
func (r *Reconciler) enqueueAll(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &cpv1alpha1.ClusterProfileList{}
	if err := r.Client.List(ctx, list); err != nil {
		klog.FromContext(ctx).Error(err, "failed to list ClusterProfiles")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		if Matches(&list.Items[i]) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// Reconcile upserts the ProviderName access provider of one ClusterProfile.
// It waits (MissingRecheck, and the watches) while the user-server's
// ManagedProxyConfiguration or serving certificate Secret is missing.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := klog.FromContext(ctx).WithValues("clusterProfile", req.NamespacedName)
	profile := &cpv1alpha1.ClusterProfile{}
	if err := r.Client.Get(ctx, req.NamespacedName, profile); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !Matches(profile) || !profile.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	namespace, caPEM, waiting, err := r.userServer(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	if waiting != "" {
		log.V(2).Info("waiting for the user-server before publishing access", "reason", waiting, "after", MissingRecheck)
		return ctrl.Result{RequeueAfter: MissingRecheck}, nil
	}
	providers, changed := Upsert(profile.Status.AccessProviders, Provider(profile.Name, namespace, caPEM))
	if !changed {
		return ctrl.Result{}, nil
	}
	before := profile.DeepCopy()
	profile.Status.AccessProviders = providers
	// The optimistic lock makes a concurrent writer's change of the list
	// (which a merge patch replaces whole) a conflict, retried on the fresh
	// object, instead of a lost update.
	if err := r.Client.Status().Patch(ctx, profile, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsConflict(err) {
			log.V(2).Info("ClusterProfile changed meanwhile; retrying", "after", time.Second)
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return ctrl.Result{}, fmt.Errorf("failed to patch the status of ClusterProfile %s: %w", req.NamespacedName, err)
	}
	log.Info("published the user-server access provider", "server", ServerURL(namespace, profile.Name))
	return ctrl.Result{}, nil
}

// userServer finds the user-server the way the rest of the addon-manager
// does: in the proxy-server namespace of the ManagedProxyConfiguration
// proxyv1alpha1.DefaultName, with the CA of its serving certificate Secret.
// waiting says why it cannot be published yet.
func (r *Reconciler) userServer(ctx context.Context) (namespace string, caPEM []byte, waiting string, err error) {
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: proxyv1alpha1.DefaultName}, mpc); err != nil {
		if apierrors.IsNotFound(err) {
			return "", nil, fmt.Sprintf("ManagedProxyConfiguration %s does not exist", proxyv1alpha1.DefaultName), nil
		}
		return "", nil, "", fmt.Errorf("failed to get ManagedProxyConfiguration %s: %w", proxyv1alpha1.DefaultName, err)
	}
	namespace = mpc.Spec.ProxyServer.Namespace
	key := types.NamespacedName{Namespace: namespace, Name: proxyv1alpha1.UserServerSecretName}
	secret := &corev1.Secret{}
	if err := r.Client.Get(ctx, key, secret); err != nil {
		if !apierrors.IsNotFound(err) {
			return "", nil, "", fmt.Errorf("failed to get Secret %s: %w", key, err)
		}
		if mpc.Spec.UserServer == nil {
			return "", nil, fmt.Sprintf("the user-server is not enabled: spec.userServer of ManagedProxyConfiguration %s is unset, so Secret %s is not issued", mpc.Name, key), nil
		}
		return "", nil, fmt.Sprintf("Secret %s does not exist yet", key), nil
	}
	// The CA, not the leaf certificate (tls.crt): the leaf is reissued at
	// 80% of its lifetime and on every change of its names, the CA lasts
	// years, so a consumer that copied the provider keeps working. And a
	// leaf that is not self-signed is a valid trust anchor only for some
	// TLS stacks (Go accepts a root pool holding the leaf itself; OpenSSL
	// refuses it unless partial chains are allowed).
	caPEM = secret.Data[proxyv1alpha1.CASecretKey]
	if len(caPEM) == 0 {
		return "", nil, fmt.Sprintf("Secret %s has no %s", key, proxyv1alpha1.CASecretKey), nil
	}
	return namespace, caPEM, "", nil
}
