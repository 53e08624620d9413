package proxyconfig

import (
	"crypto/x509"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

func TestEvaluateHealth(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	// leaf is a 100-day certificate at the given percentage of its lifetime.
	leaf := func(what string, percent int) inUseCertificate {
		notBefore := now.Add(-time.Duration(percent) * day)
		return inUseCertificate{what: what, cert: &x509.Certificate{NotBefore: notBefore, NotAfter: notBefore.Add(100 * day)}}
	}
	deployment := func(desired, ready int32, generation, observed int64, conditions ...appsv1.DeploymentCondition) *appsv1.Deployment {
		d := &appsv1.Deployment{}
		d.Generation = generation
		d.Spec.Replicas = ptr.To(desired)
		d.Status = appsv1.DeploymentStatus{ReadyReplicas: ready, ObservedGeneration: observed, Conditions: conditions}
		return d
	}
	fresh := []inUseCertificate{leaf("the certificate in secret ns/proxy-server", 10), leaf("the CA certificate \"ca\"", 5)}

	for _, tc := range []struct {
		name                string
		in                  healthInput
		available, degraded metav1.Condition
		recheckAt           time.Time
	}{
		{
			name: "no Deployment yet",
			in:   healthInput{deploymentName: "ns/cp", desiredReplicas: 3},
			available: metav1.Condition{Status: metav1.ConditionFalse, Reason: proxyv1alpha1.ReasonNoReplicaReady,
				Message: "0 of 3 proxy-servers ready; the Deployment ns/cp does not exist yet"},
			degraded: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonProxyServerReplicasNotReady,
				Message: "0 of 3 proxy-servers ready"},
		},
		{
			name: "no replica ready, with the Deployment's reasons",
			in: healthInput{deploymentName: "ns/cp", deployment: deployment(3, 0, 2, 2,
				appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "ReplicaSetUpdated", Message: "progressing"},
				appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: "pods are forbidden"},
			)},
			available: metav1.Condition{Status: metav1.ConditionFalse, Reason: proxyv1alpha1.ReasonNoReplicaReady,
				Message: "0 of 3 proxy-servers ready; Deployment ReplicaFailure (FailedCreate): pods are forbidden"},
			degraded: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonProxyServerReplicasNotReady,
				Message: "0 of 3 proxy-servers ready"},
		},
		{
			name: "progress deadline exceeded",
			in: healthInput{deploymentName: "ns/cp", deployment: deployment(1, 0, 2, 2,
				appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: "took too long"},
			)},
			available: metav1.Condition{Status: metav1.ConditionFalse, Reason: proxyv1alpha1.ReasonNoReplicaReady,
				Message: "0 of 1 proxy-servers ready; Deployment Progressing (ProgressDeadlineExceeded): took too long"},
			degraded: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonProxyServerReplicasNotReady,
				Message: "0 of 1 proxy-servers ready"},
		},
		{
			name: "some replicas ready",
			in:   healthInput{deploymentName: "ns/cp", deployment: deployment(3, 2, 2, 2), certificates: fresh, now: now},
			available: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonReplicasReady,
				Message: "2 of 3 proxy-servers ready"},
			degraded: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonProxyServerReplicasNotReady,
				Message: "2 of 3 proxy-servers ready"},
			recheckAt: now.Add(80 * day),
		},
		{
			name: "every replica ready, but the Deployment's latest generation not observed",
			in:   healthInput{deploymentName: "ns/cp", deployment: deployment(3, 3, 3, 2), certificates: fresh, now: now},
			available: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonReplicasReady,
				Message: "3 of 3 proxy-servers ready"},
			degraded: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonProxyServerReplicasNotReady,
				Message: "3 of 3 proxy-servers ready; generation 3 of the Deployment ns/cp is not rolled out yet (observed: 2)"},
			recheckAt: now.Add(80 * day),
		},
		{
			name: "healthy: names the first certificate to expire",
			in:   healthInput{deploymentName: "ns/cp", deployment: deployment(3, 3, 2, 2), certificates: fresh, now: now},
			available: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonReplicasReady,
				Message: "3 of 3 proxy-servers ready"},
			degraded: metav1.Condition{Status: metav1.ConditionFalse, Reason: proxyv1alpha1.ReasonAsExpected,
				Message: "3 of 3 proxy-servers ready; the first certificate to expire is the certificate in secret ns/proxy-server, at " +
					timestamp(now.Add(90*day))},
			// The proxy-server certificate enters its last tenth at 90 days
			// from NotBefore: 80 days from now.
			recheckAt: now.Add(80 * day),
		},
		{
			name: "at 89% nothing is wrong yet",
			in: healthInput{deploymentName: "ns/cp", deployment: deployment(1, 1, 1, 1), now: now,
				certificates: []inUseCertificate{leaf("the certificate in secret ns/agent-server", 89)}},
			available: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonReplicasReady,
				Message: "1 of 1 proxy-servers ready"},
			degraded: metav1.Condition{Status: metav1.ConditionFalse, Reason: proxyv1alpha1.ReasonAsExpected,
				Message: "1 of 1 proxy-servers ready; the first certificate to expire is the certificate in secret ns/agent-server, at " +
					timestamp(now.Add(11*day))},
			recheckAt: now.Add(day),
		},
		{
			name: "a certificate in its last tenth, another expired",
			in: healthInput{deploymentName: "ns/cp", deployment: deployment(3, 3, 2, 2), now: now, certificates: []inUseCertificate{
				leaf("the certificate in secret ns/proxy-server", 95),
				leaf("the certificate in secret ns/agent-server", 10),
				leaf("the certificate in secret ns/proxy-client", 100),
			}},
			available: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonReplicasReady,
				Message: "3 of 3 proxy-servers ready"},
			degraded: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonCertificateExpiring,
				Message: "3 of 3 proxy-servers ready; the certificate in secret ns/proxy-server expires at " + timestamp(now.Add(5*day)) +
					", within the last 10% of its lifetime; the certificate in secret ns/proxy-client expired at " + timestamp(now)},
			recheckAt: now.Add(5 * day),
		},
		{
			name: "replicas and a certificate: the replicas name the reason, the message lists both",
			in: healthInput{deploymentName: "ns/cp", deployment: deployment(3, 2, 2, 2), now: now,
				certificates: []inUseCertificate{leaf("the CA certificate \"ca\"", 90)}},
			available: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonReplicasReady,
				Message: "2 of 3 proxy-servers ready"},
			degraded: metav1.Condition{Status: metav1.ConditionTrue, Reason: proxyv1alpha1.ReasonProxyServerReplicasNotReady,
				Message: "2 of 3 proxy-servers ready; the CA certificate \"ca\" expires at " + timestamp(now.Add(10*day)) +
					", within the last 10% of its lifetime"},
			recheckAt: now.Add(10 * day),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got := evaluateHealth(tc.in)
			tc.available.Type = proxyv1alpha1.ConditionTypeProxyServerAvailable
			tc.degraded.Type = proxyv1alpha1.ConditionTypeDegraded
			g.Expect(got.available).To(Equal(tc.available))
			g.Expect(got.degraded).To(Equal(tc.degraded))
			g.Expect(got.recheckAt).To(Equal(tc.recheckAt))
		})
	}
}

func TestHealthEventType(t *testing.T) {
	for _, tc := range []struct {
		typ    string
		status metav1.ConditionStatus
		want   string
	}{
		{proxyv1alpha1.ConditionTypeProxyServerAvailable, metav1.ConditionTrue, corev1.EventTypeNormal},
		{proxyv1alpha1.ConditionTypeProxyServerAvailable, metav1.ConditionFalse, corev1.EventTypeWarning},
		{proxyv1alpha1.ConditionTypeDegraded, metav1.ConditionFalse, corev1.EventTypeNormal},
		{proxyv1alpha1.ConditionTypeDegraded, metav1.ConditionTrue, corev1.EventTypeWarning},
	} {
		t.Run(tc.typ+"="+string(tc.status), func(t *testing.T) {
			NewWithT(t).Expect(healthEventType(metav1.Condition{Type: tc.typ, Status: tc.status})).To(Equal(tc.want))
		})
	}
}

func TestAnnouncements(t *testing.T) {
	g := NewWithT(t)
	bad := conditionState{status: metav1.ConditionTrue, reason: proxyv1alpha1.ReasonProxyServerReplicasNotReady}
	good := conditionState{status: metav1.ConditionFalse, reason: proxyv1alpha1.ReasonAsExpected}
	var a announcements

	prev, changed := a.change("cp", proxyv1alpha1.ConditionTypeDegraded, nil, bad)
	g.Expect(changed).To(BeTrue(), "a condition set for the first time")
	g.Expect(prev).To(BeNil())

	// A stale cache serves the status from before that change: what was
	// announced counts, so nothing is announced twice.
	_, changed = a.change("cp", proxyv1alpha1.ConditionTypeDegraded, nil, bad)
	g.Expect(changed).To(BeFalse())

	prev, changed = a.change("cp", proxyv1alpha1.ConditionTypeDegraded, &bad, good)
	g.Expect(changed).To(BeTrue())
	g.Expect(prev).To(HaveValue(Equal(bad)))

	announceGood := func(typ string) bool {
		_, changed := a.change("cp", typ, nil, good)
		return changed
	}
	g.Expect(announceGood(proxyv1alpha1.ConditionTypeProxyServerAvailable)).To(BeTrue(), "each condition type on its own")

	// Nothing announced since the manager started: the status is the
	// reference.
	_, changed = a.change("other", proxyv1alpha1.ConditionTypeDegraded, &good, good)
	g.Expect(changed).To(BeFalse())

	a.forget("cp")
	prev, changed = a.change("cp", proxyv1alpha1.ConditionTypeDegraded, &bad, good)
	g.Expect(changed).To(BeTrue())
	g.Expect(prev).To(HaveValue(Equal(bad)), "forgotten: the status is the reference again")
}
