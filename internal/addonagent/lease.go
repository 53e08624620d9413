// Package addonagent is the managed-cluster addon-agent of cluster-proxy: it
// renews the addon's Lease while the proxy-agent is connected (the hub marks
// the addon Available from it), serves the agent pod's health endpoint, and
// (for PortForward entrypoints) relays the proxy-agent's connections to the
// hub proxy-servers.
package addonagent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// LeaseName is the Lease the addon-framework's Lease health prober watches.
const LeaseName = "cluster-proxy"

// DefaultLeaseDuration is the lease duration the hub expects: it marks the
// addon unavailable once a renewal is this late.
const DefaultLeaseDuration = 60 * time.Second

// LeaseUpdater renews the addon Lease while every health check passes.
type LeaseUpdater struct {
	// Managed writes the Lease in Namespace on the managed cluster.
	Managed kubernetes.Interface
	// Hub writes the Lease in the cluster namespace on the hub when the
	// managed cluster has no Lease API; may be nil.
	Hub kubernetes.Interface
	// Namespace is the agent namespace; ClusterName the hub namespace.
	Namespace, ClusterName string
	// Duration is the lease duration; the Lease is renewed every Duration
	// (with jitter). Zero means DefaultLeaseDuration.
	Duration time.Duration
	// Checks must all pass for a renewal.
	Checks []func(ctx context.Context) error
	// Clock stamps renewals and paces them.
	Clock clock.Clock
}

// leaseJitter spreads renewals over up to a quarter of the period.
const leaseJitter = 0.25

// Run renews the Lease at once, then every Duration plus up to a quarter
// (counted from the end of the previous attempt), until ctx is done.
func (u *LeaseUpdater) Run(ctx context.Context) {
	period := u.Duration
	if period == 0 {
		period = DefaultLeaseDuration
	}
	for ctx.Err() == nil {
		u.renewOnce(ctx)
		next := u.Clock.NewTimer(wait.Jitter(period, leaseJitter))
		select {
		case <-ctx.Done():
			next.Stop()
		case <-next.C():
		}
	}
}

// renewOnce renews the Lease when healthy, logging why not otherwise.
func (u *LeaseUpdater) renewOnce(ctx context.Context) {
	log := klog.FromContext(ctx)
	for _, check := range u.Checks {
		if err := check(ctx); err != nil {
			log.Info("not renewing the addon lease: unhealthy", "reason", err.Error())
			return
		}
	}
	client, namespace := u.Managed, u.Namespace
	if u.Hub != nil && !u.managedHasLeases() {
		// No Lease API on the managed cluster: renew on the hub instead.
		client, namespace = u.Hub, u.ClusterName
	}
	if err := u.renew(ctx, client, namespace); err != nil {
		log.Error(err, "failed to renew the addon lease")
	}
}

// managedHasLeases reports whether the managed cluster serves
// coordination.k8s.io/v1 leases; when discovery fails it assumes it does.
func (u *LeaseUpdater) managedHasLeases() bool {
	resources, err := u.Managed.Discovery().ServerResourcesForGroupVersion(coordinationv1.SchemeGroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		return true
	}
	for _, r := range resources.APIResources {
		if r.Name == "leases" {
			return true
		}
	}
	return false
}

func (u *LeaseUpdater) renew(ctx context.Context, c kubernetes.Interface, namespace string) error {
	seconds := int32((u.Duration + time.Second - 1) / time.Second)
	if u.Duration == 0 {
		seconds = int32(DefaultLeaseDuration / time.Second)
	}
	now := metav1.NewMicroTime(u.Clock.Now())
	leases := c.CoordinationV1().Leases(namespace)
	lease, err := leases.Get(ctx, LeaseName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: namespace},
			Spec:       coordinationv1.LeaseSpec{LeaseDurationSeconds: &seconds, RenewTime: &now},
		}
		if _, err := leases.Create(ctx, lease, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("failed to create lease %s/%s: %w", namespace, LeaseName, err)
		}
		return nil
	case err != nil:
		return err
	}
	lease.Spec.RenewTime = &now
	lease.Spec.LeaseDurationSeconds = &seconds
	if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("failed to renew lease %s/%s: %w", namespace, LeaseName, err)
	}
	return nil
}

// ReadyCheck returns a health check that passes when url (the proxy-agent's
// readiness endpoint: connected to a proxy-server) answers 200.
func ReadyCheck(client *http.Client, url string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("failed to build the readiness request: %w", err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("proxy-agent readiness %s unreachable: %w", url, err)
		}
		defer func() { _ = resp.Body.Close() }()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("proxy-agent not ready: %s answered %s", url, resp.Status)
		}
		return nil
	}
}
