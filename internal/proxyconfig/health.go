package proxyconfig

import (
	"context"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// expiringPercent is the last part of a certificate's lifetime, in percent,
// that makes the ManagedProxyConfiguration Degraded. Certificates are
// renewed past certs.RenewFraction of it, so only a renewal that keeps
// failing lets one get there.
const expiringPercent = 10

// healthEventActionPrefix starts the action of the Events recorded when a
// health condition changes; the condition's type follows
// (UpdateProxyServerAvailable, UpdateDegraded). Events of one action and
// reason aggregate into a series, so the two conditions' Events must not
// share one.
const healthEventActionPrefix = "Update"

// healthInput is what evaluateHealth decides from.
type healthInput struct {
	// deployment is the proxy-server Deployment; nil when it does not exist
	// (yet).
	deployment *appsv1.Deployment
	// deploymentName names it in messages ("namespace/name").
	deploymentName string
	// desiredReplicas is used when deployment is nil: the spec's replicas.
	desiredReplicas int32
	// certificates are the certificates in use: each certificate Secret's
	// and the CA's.
	certificates []inUseCertificate
	// now is the current time.
	now time.Time
}

// inUseCertificate is a certificate and where it is, for messages.
type inUseCertificate struct {
	// what names it: "the certificate in secret ns/name", "the CA
	// certificate ...".
	what string
	cert *x509.Certificate
}

// healthResult is what evaluateHealth decided.
type healthResult struct {
	// available and degraded are the conditions to set (Type, Status,
	// Reason and Message; the caller dates them).
	available, degraded metav1.Condition
	// recheckAt is when the result may change with no new event (a
	// certificate entering the last tenth of its lifetime, or expiring);
	// zero when nothing is due.
	recheckAt time.Time
}

// evaluateHealth decides the ProxyServerAvailable and Degraded conditions
// from the proxy-server Deployment's status and the certificates in use.
func evaluateHealth(in healthInput) healthResult {
	var res healthResult

	desired, ready := in.desiredReplicas, int32(0)
	if d := in.deployment; d != nil {
		desired = 1
		if d.Spec.Replicas != nil {
			desired = *d.Spec.Replicas
		}
		ready = d.Status.ReadyReplicas
	}
	replicas := fmt.Sprintf("%d of %d proxy-servers ready", ready, desired)

	if ready > 0 {
		res.available = healthCondition(proxyv1alpha1.ConditionTypeProxyServerAvailable, metav1.ConditionTrue,
			proxyv1alpha1.ReasonReplicasReady, replicas)
	} else {
		res.available = healthCondition(proxyv1alpha1.ConditionTypeProxyServerAvailable, metav1.ConditionFalse,
			proxyv1alpha1.ReasonNoReplicaReady, strings.Join(append([]string{replicas}, whyNoneReady(in)...), "; "))
	}

	// The replicas first, then what is wrong with the certificates; the
	// replicas name the reason when both are wrong.
	var reasons, problems []string
	switch d := in.deployment; {
	case ready < desired:
		reasons = append(reasons, proxyv1alpha1.ReasonProxyServerReplicasNotReady)
	case d != nil && d.Status.ObservedGeneration < d.Generation:
		reasons = append(reasons, proxyv1alpha1.ReasonProxyServerReplicasNotReady)
		problems = append(problems, fmt.Sprintf("generation %d of the Deployment %s is not rolled out yet (observed: %d)",
			d.Generation, in.deploymentName, d.Status.ObservedGeneration))
	}

	var first *inUseCertificate
	expiring := false
	for i := range in.certificates {
		c := &in.certificates[i]
		expiringAt := expiringFrom(c.cert)
		switch {
		case !in.now.Before(c.cert.NotAfter):
			problems = append(problems, fmt.Sprintf("%s expired at %s", c.what, timestamp(c.cert.NotAfter)))
		case !in.now.Before(expiringAt):
			problems = append(problems, fmt.Sprintf("%s expires at %s, within the last %d%% of its lifetime",
				c.what, timestamp(c.cert.NotAfter), expiringPercent))
			res.recheckAt = earliest(res.recheckAt, c.cert.NotAfter)
		default:
			res.recheckAt = earliest(res.recheckAt, expiringAt)
			if first == nil || c.cert.NotAfter.Before(first.cert.NotAfter) {
				first = c
			}
			continue
		}
		expiring = true
	}
	if expiring {
		reasons = append(reasons, proxyv1alpha1.ReasonCertificateExpiring)
	}

	if len(reasons) == 0 {
		msg := replicas
		if first != nil {
			msg += fmt.Sprintf("; the first certificate to expire is %s, at %s", first.what, timestamp(first.cert.NotAfter))
		}
		res.degraded = healthCondition(proxyv1alpha1.ConditionTypeDegraded, metav1.ConditionFalse, proxyv1alpha1.ReasonAsExpected, msg)
		return res
	}
	res.degraded = healthCondition(proxyv1alpha1.ConditionTypeDegraded, metav1.ConditionTrue, reasons[0],
		strings.Join(append([]string{replicas}, problems...), "; "))
	return res
}

// whyNoneReady returns what the Deployment says about its missing replicas:
// that it does not exist, a ReplicaFailure, or a Progressing condition gone
// False (the progress deadline passed).
func whyNoneReady(in healthInput) []string {
	d := in.deployment
	if d == nil {
		return []string{fmt.Sprintf("the Deployment %s does not exist yet", in.deploymentName)}
	}
	var out []string
	for _, c := range d.Status.Conditions {
		switch {
		case c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue,
			c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse:
			out = append(out, fmt.Sprintf("Deployment %s (%s): %s", c.Type, c.Reason, c.Message))
		}
	}
	return out
}

// expiringFrom is when cert enters the last expiringPercent of its lifetime.
func expiringFrom(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Add(-life / 100 * expiringPercent)
}

func timestamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func healthCondition(typ string, status metav1.ConditionStatus, reason, message string) metav1.Condition {
	return metav1.Condition{Type: typ, Status: status, Reason: reason, Message: message}
}

// earliest returns the earlier of a and b, ignoring zero times.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// reconcileHealth sets the ProxyServerAvailable and Degraded conditions of
// mpc from what runs: the proxy-server Deployment's status and the
// certificates in the Secrets (both read from the cache), and ca, the CA
// that signs them (nil when this reconcile did not get it). It runs whatever
// the rest of the reconcile achieved: a renewal that fails is what Degraded
// is for. It records an Event when a condition changes status or reason, and
// returns when to look again.
func (r *Reconciler) reconcileHealth(ctx context.Context, mpc *proxyv1alpha1.ManagedProxyConfiguration, ca *certs.CA) time.Time {
	log := klog.FromContext(ctx)
	ns := mpc.Spec.ProxyServer.Namespace
	in := healthInput{
		deploymentName:  klog.KRef(ns, mpc.Name).String(),
		desiredReplicas: mpc.Spec.ProxyServer.Replicas,
		now:             r.Clock.Now(),
	}
	deploy := &appsv1.Deployment{}
	switch err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: mpc.Name}, deploy); {
	case err == nil:
		in.deployment = deploy
	case !apierrors.IsNotFound(err):
		// Keep the conditions as they are rather than guess; the error
		// requeues through the rest of the reconcile or the next event.
		log.Error(err, "failed to get the proxy-server Deployment for the health conditions")
		return time.Time{}
	}
	for _, c := range desiredCertificates(mpc, nil) {
		secret := &corev1.Secret{}
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: c.secretName}, secret); err != nil {
			// Missing or unreadable: the certificate's own condition says so.
			continue
		}
		cert, err := certs.ParseCertificate(secret.Data[corev1.TLSCertKey])
		if err != nil {
			continue
		}
		in.certificates = append(in.certificates, inUseCertificate{
			what: "the certificate in secret " + klog.KObj(secret).String(), cert: cert,
		})
	}
	if ca != nil && ca.Cert != nil {
		in.certificates = append(in.certificates, inUseCertificate{
			what: fmt.Sprintf("the CA certificate %q", ca.Cert.Subject.CommonName), cert: ca.Cert,
		})
	}

	res := evaluateHealth(in)
	for _, cond := range []metav1.Condition{res.available, res.degraded} {
		var before *conditionState
		if c := meta.FindStatusCondition(mpc.Status.Conditions, cond.Type); c != nil {
			before = &conditionState{status: c.Status, reason: c.Reason}
		}
		r.setCondition(mpc, cond.Type, cond.Status, cond.Reason, cond.Message)
		now := conditionState{status: cond.Status, reason: cond.Reason}
		if prev, changed := r.announced.change(mpc.Name, cond.Type, before, now); changed {
			r.Recorder.Eventf(mpc, nil, healthEventType(cond), cond.Reason, healthEventActionPrefix+cond.Type, "%s", changeNote(cond, prev))
		}
	}
	return res.recheckAt
}

// changeNote is the note of the Event announcing cond, which was prev
// (nil: not set).
func changeNote(cond metav1.Condition, prev *conditionState) string {
	if prev == nil {
		return fmt.Sprintf("%s set to %s (%s): %s", cond.Type, cond.Status, cond.Reason, cond.Message)
	}
	return fmt.Sprintf("%s changed from %s (%s) to %s (%s): %s", cond.Type, prev.status, prev.reason,
		cond.Status, cond.Reason, cond.Message)
}

// conditionState is what makes a condition change worth an Event.
type conditionState struct {
	status metav1.ConditionStatus
	reason string
}

// announcements remembers, per ManagedProxyConfiguration and condition type,
// the state the last Event announced. The cache may serve a reconcile the
// status from before the previous reconcile's patch; comparing with what was
// announced keeps such a reconcile from announcing the same change again.
// The zero value is ready to use.
type announcements struct {
	mu   sync.Mutex
	last map[string]map[string]conditionState
}

// change records now as the state of condition typ of the configuration
// name, and says whether that is a change worth an Event, and from what:
// from the state last announced or, when none was (since the manager
// started), from the state in the status (nil when not set).
func (a *announcements) change(name, typ string, inStatus *conditionState, now conditionState) (*conditionState, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last == nil {
		a.last = map[string]map[string]conditionState{}
	}
	byType := a.last[name]
	if byType == nil {
		byType = map[string]conditionState{}
		a.last[name] = byType
	}
	prev := inStatus
	if announced, ok := byType[typ]; ok {
		prev = &announced
	}
	byType[typ] = now
	return prev, prev == nil || *prev != now
}

// forget drops what was announced for the configuration name (deleted).
func (a *announcements) forget(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.last, name)
}

// healthEventType is Normal for a healthy condition (ProxyServerAvailable
// True, Degraded False), Warning otherwise.
func healthEventType(cond metav1.Condition) string {
	healthy := metav1.ConditionTrue
	if cond.Type == proxyv1alpha1.ConditionTypeDegraded {
		healthy = metav1.ConditionFalse
	}
	if cond.Status == healthy {
		return corev1.EventTypeNormal
	}
	return corev1.EventTypeWarning
}
