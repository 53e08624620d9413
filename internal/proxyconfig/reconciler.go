// Package proxyconfig reconciles ManagedProxyConfigurations into the hub side
// of cluster-proxy: the proxy-server namespace, ServiceAccount, Services,
// certificate Secrets, the proxy-server Deployment, the port-forward RBAC for
// agents and, for LoadBalancerService entrypoints, the load balancer — all
// owned by the ManagedProxyConfiguration — and reports their state in its
// status, with the health of what runs: ProxyServerAvailable (a proxy-server
// replica is ready) and Degraded (replicas missing, or a certificate in the
// last tenth of its lifetime because its renewal keeps failing).
package proxyconfig

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/entrypoint"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// FieldManager is the server-side apply field manager of the addon-manager.
const FieldManager = "cluster-proxy-addon-manager"

// Condition reasons beyond the API's SuccessfullyDeployed/NotYetDeployed and
// SuccessfullySigned/NotYetSigned.
const (
	// ReasonUnsupportedSigner: the signer type is not implemented.
	ReasonUnsupportedSigner = "UnsupportedSigner"
	// ReasonNamespaceUnavailable: the proxy-server namespace cannot be created.
	ReasonNamespaceUnavailable = "NamespaceUnavailable"
	// ReasonCAUnavailable: the CA cannot be loaded or created.
	ReasonCAUnavailable = "CAUnavailable"
	// ReasonInvalidTLSProfile: the OCM TLS profile ConfigMap has bad values.
	ReasonInvalidTLSProfile = "InvalidTLSProfile"
	// ReasonEntrypointPending: the entrypoint address is not known yet.
	ReasonEntrypointPending = "EntrypointPending"
	// ReasonApplyFailed: the API server refused an object.
	ReasonApplyFailed = "ApplyFailed"
)

// entrypointPendingRecheck is how often a pending load balancer is looked at
// again, in addition to the Service's own watch events.
const entrypointPendingRecheck = 30 * time.Second

// waitRecheck is how often the reconciler looks again at something it waits
// for without a watch event to wake it (a namespace being deleted).
const waitRecheck = 5 * time.Second

// CALoader returns the CA that signs the proxy-server certificates and
// those to trust (signer.Store).
type CALoader interface {
	Authority(ctx context.Context) (*signer.Authority, error)
}

// Reconciler turns ManagedProxyConfigurations into running proxy-server
// infrastructure on the hub.
type Reconciler struct {
	// Client reads (from the cache) and applies objects.
	Client client.Client
	// Recorder records Events on ManagedProxyConfigurations.
	Recorder events.EventRecorder
	// Clock dates certificates and decides rotation.
	Clock clock.PassiveClock
	// CA signs the certificates; its bundle (the signing CA and, during a
	// CA rotation, the other one) is every ca.crt the reconciler writes.
	CA CALoader
	// CAChanged, optional, delivers an event whenever the CA Secret
	// changes (a rotation's phase): every configuration is reconciled.
	CAChanged <-chan event.GenericEvent
	// TLSProfileNamespace is where the OCM TLS profile ConfigMap is read:
	// the addon-manager's namespace.
	TLSProfileNamespace string
	// ImagePullPolicy of the proxy-server container.
	ImagePullPolicy corev1.PullPolicy

	// announced remembers the health condition changes Events announced.
	announced announcements
}

var _ reconcile.Reconciler = &Reconciler{}

// SetupWithManager registers the reconciler with mgr. It fails when a
// dependency is missing.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	var missing []string
	if r.Client == nil {
		missing = append(missing, "Client")
	}
	if r.Recorder == nil {
		missing = append(missing, "Recorder")
	}
	if r.Clock == nil {
		missing = append(missing, "Clock")
	}
	if r.CA == nil {
		missing = append(missing, "CA")
	}
	if r.TLSProfileNamespace == "" {
		missing = append(missing, "TLSProfileNamespace")
	}
	if len(missing) > 0 {
		return fmt.Errorf("proxyconfig.Reconciler is missing %v", missing)
	}
	if r.ImagePullPolicy == "" {
		r.ImagePullPolicy = corev1.PullIfNotPresent
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named("managedproxyconfiguration").
		For(&proxyv1alpha1.ManagedProxyConfiguration{}).
		Owns(&corev1.Secret{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&appsv1.Deployment{}).
		Owns(&rbacv1.Role{}).
		Owns(&rbacv1.RoleBinding{}).
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.enqueueAllFor(r.isTLSProfile)))
	if r.CAChanged != nil {
		b = b.WatchesRawSource(source.Channel(r.CAChanged, handler.EnqueueRequestsFromMapFunc(r.enqueueAllFor(func(client.Object) bool { return true }))))
	}
	return b.Complete(r)
}

func (r *Reconciler) isTLSProfile(obj client.Object) bool {
	return obj.GetNamespace() == r.TLSProfileNamespace && obj.GetName() == TLSProfileConfigMapName
}

// enqueueAllFor maps an object matching match to every
// ManagedProxyConfiguration: all of them depend on it.
func (r *Reconciler) enqueueAllFor(match func(client.Object) bool) handler.MapFunc {
	return func(ctx context.Context, obj client.Object) []reconcile.Request {
		if !match(obj) {
			return nil
		}
		list := &proxyv1alpha1.ManagedProxyConfigurationList{}
		if err := r.Client.List(ctx, list); err != nil {
			klog.FromContext(ctx).Error(err, "failed to list ManagedProxyConfigurations")
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for i := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
		}
		return reqs
	}
}

// RBAC of the ManagedProxyConfiguration reconciler (config/rbac/role.yaml is
// generated from these markers; the chart's roles are checked against it).
// The proxy-server namespace comes from the ManagedProxyConfiguration, so the
// objects there need cluster-wide rules. Objects are server-side applied
// (create + patch). pods and pods/portforward are not used by the manager
// itself: it grants them to the agents in the port-forward Role, and RBAC
// only lets it grant what it holds; so are configmaps get, create and patch,
// which it grants the proxy-servers in the health report Role. Events on the cluster-scoped
// ManagedProxyConfigurations land in the default namespace. The TLS profile
// ConfigMap is read from the manager's own namespace: namespace= below stands
// for it (POD_NAMESPACE; the chart's release namespace). delete on the
// applied kinds lets the manager move their owner reference to a recreated
// ManagedProxyConfiguration where the OwnerReferencesPermissionEnforcement
// admission plugin runs (it asks for delete on the object, and for update of
// the owner's finalizers because of blockOwnerDeletion).
//
// +kubebuilder:rbac:groups=proxy.open-cluster-management.io,resources=managedproxyconfigurations,verbs=get;list;watch
// +kubebuilder:rbac:groups=proxy.open-cluster-management.io,resources=managedproxyconfigurations/status,verbs=patch
// +kubebuilder:rbac:groups=proxy.open-cluster-management.io,resources=managedproxyconfigurations/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;create
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=services;serviceaccounts,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods/portforward,verbs=get;create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch,namespace=open-cluster-management-addon
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;create;patch

// Reconcile brings the hub objects of one ManagedProxyConfiguration in line
// with its spec and records the outcome in its status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	mpc := &proxyv1alpha1.ManagedProxyConfiguration{}
	if err := r.Client.Get(ctx, req.NamespacedName, mpc); err != nil {
		if apierrors.IsNotFound(err) {
			r.announced.forget(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !mpc.DeletionTimestamp.IsZero() {
		// Owner references make the garbage collector remove what we created.
		r.announced.forget(req.Name)
		return ctrl.Result{}, nil
	}
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("managedProxyConfiguration", klog.KObj(mpc)))

	before := mpc.DeepCopy()
	var complete bool
	defer func() {
		if retErr == nil && complete {
			mpc.Status.LastObservedGeneration = mpc.Generation
		}
		if err := r.patchStatus(ctx, before, mpc); err != nil {
			retErr = errors.Join(retErr, err)
			// An error requeues with backoff; a result beside it is ignored.
			result = ctrl.Result{}
		}
	}()
	result, complete, retErr = r.reconcile(ctx, mpc)
	return result, retErr
}

func (r *Reconciler) patchStatus(ctx context.Context, before, mpc *proxyv1alpha1.ManagedProxyConfiguration) error {
	if equalStatus(before.Status, mpc.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, mpc, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("failed to update status of ManagedProxyConfiguration %s: %w", mpc.Name, err)
	}
	return nil
}

func equalStatus(a, b proxyv1alpha1.ManagedProxyConfigurationStatus) bool {
	return a.LastObservedGeneration == b.LastObservedGeneration &&
		slices.EqualFunc(a.Conditions, b.Conditions, func(x, y metav1.Condition) bool {
			return x.Type == y.Type && x.Status == y.Status && x.Reason == y.Reason &&
				x.Message == y.Message && x.ObservedGeneration == y.ObservedGeneration
		})
}

// reconcile does the work; complete reports that everything the spec asks
// for is in place (nothing pending). However far it gets, it ends by setting
// the health conditions from what runs, and looks again when they may change.
func (r *Reconciler) reconcile(ctx context.Context, mpc *proxyv1alpha1.ManagedProxyConfiguration) (result ctrl.Result, complete bool, err error) {
	var ca *certs.CA
	defer func() {
		// An error requeues with backoff, and a result beside it is ignored.
		if recheckAt := r.reconcileHealth(ctx, mpc, ca); err == nil && !recheckAt.IsZero() {
			after := max(recheckAt.Sub(r.Clock.Now()), time.Second)
			if result.RequeueAfter == 0 || after < result.RequeueAfter {
				result.RequeueAfter = after
			}
		}
	}()

	if t := mpc.Spec.Authentication.Signer.Type; t != "" && t != proxyv1alpha1.SignerTypeSelfSigned {
		msg := fmt.Sprintf("spec.authentication.signer.type %s is not supported; only %s is implemented", t, proxyv1alpha1.SignerTypeSelfSigned)
		r.setAll(mpc, metav1.ConditionFalse, ReasonUnsupportedSigner, msg)
		r.event(mpc, corev1.EventTypeWarning, ReasonUnsupportedSigner, msg)
		// Nothing to retry until the spec changes.
		return ctrl.Result{}, false, nil
	}

	if err := r.ensureNamespace(ctx, mpc.Spec.ProxyServer.Namespace); err != nil {
		// Often a namespace still terminating: retry at a steady pace rather
		// than with a growing backoff, so recovery is prompt.
		klog.FromContext(ctx).Error(err, "proxy-server namespace unavailable; retrying", "after", waitRecheck)
		r.setDeployed(mpc, metav1.ConditionFalse, ReasonNamespaceUnavailable, err.Error())
		return ctrl.Result{RequeueAfter: waitRecheck}, false, nil
	}

	authority, err := r.CA.Authority(ctx)
	if err != nil {
		r.setAll(mpc, metav1.ConditionFalse, ReasonCAUnavailable, err.Error())
		return ctrl.Result{}, false, err
	}
	ca = authority.Signing
	bundle := authority.BundlePEM()

	tlsArgs, err := tlsProfileArgs(ctx, r.Client, r.TLSProfileNamespace)
	if err != nil {
		// Keep the running Deployment; the ConfigMap watch brings us back.
		r.setDeployed(mpc, metav1.ConditionFalse, ReasonInvalidTLSProfile, err.Error())
		r.event(mpc, corev1.EventTypeWarning, ReasonInvalidTLSProfile, err.Error())
		return ctrl.Result{}, false, nil
	}

	rd := &render{mpc: mpc, imagePullPolicy: r.ImagePullPolicy, tlsArgs: tlsArgs, caBundle: bundle}

	if ep := mpc.Spec.ProxyServer.Entrypoint; ep != nil && ep.Type == proxyv1alpha1.EntryPointTypeLoadBalancerService {
		if err := r.apply(ctx, mpc, rd.loadBalancerService()); err != nil {
			return ctrl.Result{}, false, err
		}
	}
	ep, err := entrypoint.Resolve(ctx, r.Client, mpc)
	if err != nil {
		return ctrl.Result{}, false, err
	}

	for _, obj := range []runtime.ApplyConfiguration{
		rd.serviceAccount(), rd.service(), rd.caSecret(), rd.portForwardRole(), rd.portForwardRoleBinding(),
		rd.healthReportRole(), rd.healthReportRoleBinding(),
	} {
		if err := r.apply(ctx, mpc, obj); err != nil {
			return ctrl.Result{}, false, err
		}
	}

	// Renewed certificates reach the running proxy-servers through their
	// mounted Secrets; they re-read them for new handshakes, so a renewal
	// rolls no pod and breaks no tunnel.
	renewAt, err := r.reconcileCertificates(ctx, mpc, rd, ca, ep)
	if err != nil {
		return ctrl.Result{}, false, err
	}

	if err := r.reconcileDeployment(ctx, mpc, rd); err != nil {
		return ctrl.Result{}, false, err
	}

	requeue := renewAt.Sub(r.Clock.Now())
	if !ep.Ready() && requeue > entrypointPendingRecheck {
		requeue = entrypointPendingRecheck
	}
	return ctrl.Result{RequeueAfter: max(requeue, time.Second)}, ep.Ready(), nil
}

func (r *Reconciler) ensureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{}
	err := r.Client.Get(ctx, types.NamespacedName{Name: name}, ns)
	if err == nil {
		if ns.Status.Phase == corev1.NamespaceTerminating {
			return fmt.Errorf("namespace %s is terminating; the proxy-servers are created once it is gone", name)
		}
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to get namespace %s: %w", name, err)
	}
	// The namespace is deliberately not owned by the ManagedProxyConfiguration:
	// it often is the addon-manager's own namespace.
	ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := r.Client.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to create namespace %s: %w", name, err)
	}
	return nil
}

// reconcileCertificates keeps every certificate Secret current. It returns
// the earliest renewal time.
func (r *Reconciler) reconcileCertificates(ctx context.Context, mpc *proxyv1alpha1.ManagedProxyConfiguration, rd *render, ca *certs.CA, ep entrypoint.Entrypoint) (time.Time, error) {
	now := r.Clock.Now()
	renewAt := now.Add(certs.LeafValidity)
	desired := desiredCertificates(mpc, ep.SANs)
	for _, c := range desired {
		certPEM, err := r.ensureCertificate(ctx, mpc, rd, ca, c, now)
		if err != nil {
			r.setCondition(mpc, c.condition, metav1.ConditionFalse, proxyv1alpha1.ReasonNotYetSigned, err.Error())
			return time.Time{}, err
		}
		cert, err := certs.ParseCertificate(certPEM)
		if err != nil {
			return time.Time{}, fmt.Errorf("failed to parse certificate of secret %s: %w", c.secretName, err)
		}
		if at := certs.RenewAt(cert); at.Before(renewAt) {
			renewAt = at
		}
		if c.condition == proxyv1alpha1.ConditionTypeAgentServerSecretSigned && !ep.Ready() {
			r.setCondition(mpc, c.condition, metav1.ConditionFalse, ReasonEntrypointPending,
				ep.Pending+"; the certificate is reissued with that address once it is known")
			continue
		}
		r.setCondition(mpc, c.condition, metav1.ConditionTrue, proxyv1alpha1.ReasonSuccessfullySigned,
			"Expiry:"+cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if mpc.Spec.UserServer == nil {
		if err := r.deleteOwned(ctx, mpc, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: rd.namespace(), Name: UserServerSecretName}}); err != nil {
			return time.Time{}, err
		}
		meta.RemoveStatusCondition(&mpc.Status.Conditions, proxyv1alpha1.ConditionTypeUserServerSecretSigned)
	}
	return renewAt, nil
}

// ensureCertificate returns the certificate of c, reissuing it (and
// recording why) when the stored one is missing or no longer fits.
func (r *Reconciler) ensureCertificate(ctx context.Context, mpc *proxyv1alpha1.ManagedProxyConfiguration, rd *render, ca *certs.CA, c certificate, now time.Time) ([]byte, error) {
	secret := &corev1.Secret{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: rd.namespace(), Name: c.secretName}, secret)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("failed to get secret %s/%s: %w", rd.namespace(), c.secretName, err)
	}
	certPEM, keyPEM := secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey]
	if why := certs.CheckLeaf(ca, c.spec, certPEM, keyPEM, now); why != "" {
		certPEM, keyPEM, err = ca.Issue(c.spec, now)
		if err != nil {
			return nil, fmt.Errorf("failed to issue the certificate of secret %s: %w", c.secretName, err)
		}
		klog.FromContext(ctx).Info("issuing certificate", "secret", klog.KRef(rd.namespace(), c.secretName), "reason", why)
		r.event(mpc, corev1.EventTypeNormal, "CertificateIssued", fmt.Sprintf("issued the certificate in secret %s/%s: %s", rd.namespace(), c.secretName, why))
	}
	if err := r.apply(ctx, mpc, rd.tlsSecret(c.secretName, certPEM, keyPEM)); err != nil {
		return nil, err
	}
	return certPEM, nil
}

func (r *Reconciler) reconcileDeployment(ctx context.Context, mpc *proxyv1alpha1.ManagedProxyConfiguration, rd *render) error {
	if err := r.apply(ctx, mpc, rd.deployment()); err != nil {
		r.setDeployed(mpc, metav1.ConditionFalse, ReasonApplyFailed, err.Error())
		return err
	}
	deploy := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: rd.namespace(), Name: mpc.Name}, deploy); err != nil {
		// The cache may not have it yet; the Deployment's event requeues us.
		if apierrors.IsNotFound(err) {
			r.setDeployed(mpc, metav1.ConditionFalse, proxyv1alpha1.ReasonNotYetDeployed, "the proxy-server Deployment is being created")
			return nil
		}
		return fmt.Errorf("failed to get deployment %s/%s: %w", rd.namespace(), mpc.Name, err)
	}
	r.setDeployed(mpc, metav1.ConditionTrue, proxyv1alpha1.ReasonSuccessfullyDeployed,
		fmt.Sprintf("Replicas: %d (available: %d)", mpc.Spec.ProxyServer.Replicas, deploy.Status.AvailableReplicas))
	return nil
}

// apply server-side applies obj, recording a Warning Event when the API
// server refuses it.
func (r *Reconciler) apply(ctx context.Context, mpc *proxyv1alpha1.ManagedProxyConfiguration, obj runtime.ApplyConfiguration) error {
	if err := r.Client.Apply(ctx, obj, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		err = fmt.Errorf("failed to apply %s: %w", describe(obj), err)
		// A shutdown cancels in-flight requests; that is not the object's fault.
		if !errors.Is(err, context.Canceled) {
			r.event(mpc, corev1.EventTypeWarning, ReasonApplyFailed, err.Error())
		}
		return err
	}
	return nil
}

// deleteOwned deletes obj if it exists and mpc controls it.
func (r *Reconciler) deleteOwned(ctx context.Context, mpc *proxyv1alpha1.ManagedProxyConfiguration, obj client.Object) error {
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	if owner := metav1.GetControllerOf(obj); owner == nil || owner.UID != mpc.UID {
		return nil
	}
	if err := r.Client.Delete(ctx, obj); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("failed to delete %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

func (r *Reconciler) setCondition(mpc *proxyv1alpha1.ManagedProxyConfiguration, typ string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&mpc.Status.Conditions, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: message,
		ObservedGeneration: mpc.Generation,
		LastTransitionTime: metav1.NewTime(r.Clock.Now()),
	})
}

func (r *Reconciler) setDeployed(mpc *proxyv1alpha1.ManagedProxyConfiguration, status metav1.ConditionStatus, reason, message string) {
	r.setCondition(mpc, proxyv1alpha1.ConditionTypeProxyServerDeployed, status, reason, message)
}

// setAll sets every condition that applies to mpc.
func (r *Reconciler) setAll(mpc *proxyv1alpha1.ManagedProxyConfiguration, status metav1.ConditionStatus, reason, message string) {
	r.setDeployed(mpc, status, reason, message)
	for _, c := range desiredCertificates(mpc, nil) {
		r.setCondition(mpc, c.condition, status, reason, message)
	}
}

func (r *Reconciler) event(mpc *proxyv1alpha1.ManagedProxyConfiguration, eventType, reason, note string) {
	r.Recorder.Eventf(mpc, nil, eventType, reason, "Reconcile", "%s", note)
}

// namedApplyConfiguration is what every typed apply configuration offers.
type namedApplyConfiguration interface {
	GetKind() *string
	GetNamespace() *string
	GetName() *string
}

// describe names an apply configuration for errors: "Kind namespace/name".
func describe(obj runtime.ApplyConfiguration) string {
	n, ok := obj.(namedApplyConfiguration)
	if !ok {
		return fmt.Sprintf("%T", obj)
	}
	deref := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	return fmt.Sprintf("%s %s", deref(n.GetKind()), klog.KRef(deref(n.GetNamespace()), deref(n.GetName())))
}
