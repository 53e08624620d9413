package agentaddon

import (
	"context"
	"errors"
	"fmt"
	"strings"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"
	addonapiv1beta1 "open-cluster-management.io/api/addon/v1beta1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"open-cluster-management.io/cluster-proxy/internal/identity"
)

// RBAC of CSRController: it reads requests, clusters and addons (cached),
// approves the kube-client and proxy-agent requests, and signs the
// proxy-agent ones. Events on the cluster-scoped requests land in the default
// namespace (events.k8s.io create/patch, cluster-wide).
//
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests,verbs=get;list;watch
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests/approval,verbs=update
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=certificatesigningrequests/status,verbs=update
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=signers,resourceNames=kubernetes.io/kube-apiserver-client;open-cluster-management.io/proxy-agent-signer,verbs=approve
// +kubebuilder:rbac:groups=certificates.k8s.io,resources=signers,resourceNames=open-cluster-management.io/proxy-agent-signer,verbs=sign
// +kubebuilder:rbac:groups=cluster.open-cluster-management.io,resources=managedclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=addon.open-cluster-management.io,resources=managedclusteraddons,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// EventReasonNotApproved is the reason of the Warning Event CSRController
// records on a request it evaluated and will not approve; the Event's note
// says why. The request stays pending for an administrator to decide.
const EventReasonNotApproved = "NotApprovedByClusterProxy"

// CSRController approves the certificate requests of the cluster-proxy
// agents and signs the proxy-agent ones, using Registration's checks. It
// replaces the addon-framework's CSR controllers, which modify objects in
// the shared informer cache and retry refused requests forever. A request it
// will not approve stays pending with a Warning Event saying why (reason
// EventReasonNotApproved); one it refuses to sign gets a Failed condition
// saying why.
type CSRController struct {
	// Client reads CSRs, ManagedClusters and ManagedClusterAddOns (cached).
	Client client.Client
	// KubeClient writes the approval and certificate subresources.
	KubeClient kubernetes.Interface
	// Registration decides and signs.
	Registration *Registration
	// Recorder records why requests are not approved, as Events on them.
	Recorder events.EventRecorder
}

var _ reconcile.Reconciler = &CSRController{}

// isAddonCSR selects the requests the registration agent makes for this
// addon: named addon-..., labelled with the addon and a cluster.
func isAddonCSR(obj client.Object) bool {
	labels := obj.GetLabels()
	return strings.HasPrefix(obj.GetName(), "addon-") &&
		labels[addonapiv1beta1.AddonLabelKey] == AddonName &&
		labels[clusterv1.ClusterNameLabelKey] != ""
}

// SetupWithManager registers the controller with mgr.
func (c *CSRController) SetupWithManager(mgr ctrl.Manager) error {
	if c.Client == nil || c.KubeClient == nil || c.Registration == nil || c.Recorder == nil {
		return errors.New("agentaddon.CSRController needs Client, KubeClient, Registration and Recorder")
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("cluster-proxy-csr").
		For(&certificatesv1.CertificateSigningRequest{}, builder.WithPredicates(predicate.NewPredicateFuncs(isAddonCSR))).
		// A cluster being accepted, or its addon appearing, may unblock requests.
		Watches(&clusterv1.ManagedCluster{}, handler.EnqueueRequestsFromMapFunc(c.pendingRequestsOf)).
		Watches(&addonapiv1beta1.ManagedClusterAddOn{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
			if obj.GetName() != AddonName {
				return nil
			}
			return c.pendingRequestsOf(ctx, &clusterv1.ManagedCluster{ObjectMeta: metav1.ObjectMeta{Name: obj.GetNamespace()}})
		})).
		Complete(c)
}

// pendingRequestsOf lists the unfinished addon CSRs of a cluster.
func (c *CSRController) pendingRequestsOf(ctx context.Context, cluster client.Object) []reconcile.Request {
	list := &certificatesv1.CertificateSigningRequestList{}
	if err := c.Client.List(ctx, list, client.MatchingLabels{
		addonapiv1beta1.AddonLabelKey: AddonName, clusterv1.ClusterNameLabelKey: cluster.GetName(),
	}); err != nil {
		logf.FromContext(ctx).Error(err, "failed to list certificate requests", "cluster", cluster.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if csr := &list.Items[i]; isAddonCSR(csr) && len(csr.Status.Certificate) == 0 && !hasCondition(csr, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: csr.Name}})
		}
	}
	return reqs
}

// Reconcile approves and signs one request when it passes the checks.
func (c *CSRController) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	cached := &certificatesv1.CertificateSigningRequest{}
	if err := c.Client.Get(ctx, req.NamespacedName, cached); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// Never modify the cached object.
	csr := cached.DeepCopy()
	if len(csr.Status.Certificate) > 0 || hasCondition(csr, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed) {
		return ctrl.Result{}, nil
	}
	clusterName := csr.Labels[clusterv1.ClusterNameLabelKey]
	cluster := &clusterv1.ManagedCluster{}
	if err := c.Client.Get(ctx, types.NamespacedName{Name: clusterName}, cluster); err != nil {
		// A request for a cluster that does not exist (yet) stays pending.
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	addon := &addonapiv1beta1.ManagedClusterAddOn{}
	if err := c.Client.Get(ctx, types.NamespacedName{Namespace: clusterName, Name: AddonName}, addon); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	if !hasCondition(csr, certificatesv1.CertificateApproved) {
		if refusal := c.Registration.Approve(ctx, cluster, addon, csr); refusal != "" {
			// Left pending: an administrator may still approve it by hand.
			// The Event tells them that it was looked at, and why
			// it was not approved; the recorder folds repeats into a series.
			c.Recorder.Eventf(csr, nil, corev1.EventTypeWarning, EventReasonNotApproved, "Approve", "%s", refusal)
			return ctrl.Result{}, nil
		}
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type:    certificatesv1.CertificateApproved,
			Status:  corev1.ConditionTrue,
			Reason:  "AutoApprovedByClusterProxy",
			Message: "the request comes from the klusterlet of cluster " + clusterName + " and asks for the cluster-proxy agent identity",
		})
		updated, err := c.KubeClient.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{})
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("failed to approve certificate request %s: %w", csr.Name, err)
		}
		csr = updated
	}

	if csr.Spec.SignerName != identity.SignerName {
		// The hub's own signer issues the kube-client certificate.
		return ctrl.Result{}, nil
	}
	certPEM, err := c.Registration.Sign(ctx, cluster, addon, csr)
	var refused *RefusedError
	switch {
	case errors.As(err, &refused):
		csr.Status.Conditions = append(csr.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue,
			Reason: "RefusedByClusterProxySigner", Message: refused.Reason,
		})
	case err != nil:
		return ctrl.Result{}, err
	default:
		csr.Status.Certificate = certPEM
	}
	if _, err := c.KubeClient.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
		return ctrl.Result{}, fmt.Errorf("failed to update certificate request %s: %w", csr.Name, err)
	}
	return ctrl.Result{}, nil
}

func hasCondition(csr *certificatesv1.CertificateSigningRequest, types ...certificatesv1.RequestConditionType) bool {
	for _, c := range csr.Status.Conditions {
		for _, t := range types {
			if c.Type == t && c.Status == corev1.ConditionTrue {
				return true
			}
		}
	}
	return false
}
