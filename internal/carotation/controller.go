// Package carotation rotates the cluster-proxy CA without downtime. A
// rotation starts when the CA reaches 80% of its lifetime or when an
// administrator sets the signer Secret's AnnotationRotate
// (proxy.open-cluster-management.io/rotate-ca) to a new value, and goes
// through the phases of signer.Phase, moving on only on evidence:
//
//  1. Trusting: a new CA is generated; every CA bundle the manager writes
//     holds the old and the new CA. It moves on once every proxy-server
//     reports trusting the new CA, every hub Secret carries the bundle, and
//     every online cluster's agent ManifestWork carries it and is applied
//     (then it waits Settle for the kubelets to update the mounted files).
//  2. Signing: the new CA signs; every certificate is reissued by it (the
//     proxy-agents' through their certificate requests: the signer
//     organizational unit in their subject changes). It moves on once every
//     hub certificate Secret is issued by the new CA, every proxy-server
//     serves certificates of the new CA and sees only agents with
//     certificates of the new CA, and every online cluster's ManifestWork
//     is applied with the new service-proxy certificate (then Settle).
//  3. The old CA is dropped from every bundle.
//
// Clusters that are offline (ManagedCluster not Available) do not hold a
// rotation up: their agents get the new bundle and certificates once they
// are back, through the hub, not the tunnel.
package carotation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"open-cluster-management.io/cluster-proxy/internal/certs"
	"open-cluster-management.io/cluster-proxy/internal/signer"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// Defaults of the Controller.
const (
	// DefaultInterval is how often the evidence is looked at.
	DefaultInterval = 15 * time.Second
	// DefaultSettle covers the kubelet's update of mounted Secrets (its
	// sync period, one minute, and its cache) after a ManifestWork or hub
	// Secret is applied.
	DefaultSettle = 2 * time.Minute
)

// RBAC of the Controller (config/rbac/role.yaml is generated from these
// markers): it reads what tells a phase done; it writes only the CA Secret
// (through the signer package's rules).
//
// +kubebuilder:rbac:groups=proxy.open-cluster-management.io,resources=managedproxyconfigurations,verbs=get;list;watch
// +kubebuilder:rbac:groups=cluster.open-cluster-management.io,resources=managedclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=addon.open-cluster-management.io,resources=managedclusteraddons,verbs=get;list;watch
// +kubebuilder:rbac:groups=work.open-cluster-management.io,resources=manifestworks,verbs=get;list
// +kubebuilder:rbac:groups="",resources=secrets;configmaps,verbs=get;list;watch

// Authority is the CA store the Controller moves through a rotation
// (signer.Store).
type Authority interface {
	Authority(ctx context.Context) (*signer.Authority, error)
	Advance(ctx context.Context, from signer.Phase) (*signer.Authority, error)
}

// Controller rotates the CA when due or asked, phase by phase.
type Controller struct {
	// Store holds the CA.
	Store Authority
	// Client reads ManagedProxyConfigurations, ManagedClusters,
	// ManagedClusterAddOns, the proxy-server Secrets and the health report
	// ConfigMaps (the addon-manager's cache holds them).
	Client client.Reader
	// APIReader reads what the cache does not hold: ManifestWorks
	// (unstructured) and the service-proxy certificate Secret.
	APIReader client.Reader
	// Clock tells the time.
	Clock clock.PassiveClock
	// Interval and Settle: 0 means DefaultInterval, DefaultSettle.
	Interval, Settle time.Duration
	// CertificateSecrets lists the certificate Secrets the manager writes
	// for a ManagedProxyConfiguration (proxyconfig.CertificateSecrets).
	CertificateSecrets func(*proxyv1alpha1.ManagedProxyConfiguration) []client.ObjectKey
	// ServiceProxyCertSecret, when set, is the hub Secret of the
	// service-proxy certificate (namespace/name), which must be reissued by
	// the new CA before the old one goes.
	ServiceProxyCertSecret client.ObjectKey

	// settledSince is when the evidence of the current phase was first
	// complete; zero while it is not.
	settledSince time.Time
	// waiting is the last reason logged for waiting, so each is logged once.
	waiting string
}

// Validate checks the Controller's dependencies.
func (c *Controller) Validate() error {
	var errs []error
	if c.Store == nil {
		errs = append(errs, errors.New("a Store is required"))
	}
	if c.Client == nil || c.APIReader == nil {
		errs = append(errs, errors.New("a Client and an APIReader are required"))
	}
	if c.Clock == nil {
		errs = append(errs, errors.New("a Clock is required"))
	}
	if c.CertificateSecrets == nil {
		errs = append(errs, errors.New("a CertificateSecrets function is required"))
	}
	if c.Interval < 0 || c.Settle < 0 {
		errs = append(errs, fmt.Errorf("the Interval (%s) and Settle (%s) must not be negative", c.Interval, c.Settle))
	}
	return errors.Join(errs...)
}

// Start runs the rotation until ctx is done (a manager.Runnable: only the
// leader runs it).
func (c *Controller) Start(ctx context.Context) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("invalid CA rotation controller: %w", err)
	}
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithName("carotation"))
	interval := c.Interval
	if interval == 0 {
		interval = DefaultInterval
	}
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := c.Step(ctx); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "CA rotation step failed; trying again", "after", interval)
		}
	}, interval)
	return nil
}

// Step looks at the CA and the evidence once and moves the rotation on
// when the evidence is complete.
func (c *Controller) Step(ctx context.Context) error {
	log := klog.FromContext(ctx)
	a, err := c.Store.Authority(ctx)
	if err != nil {
		return err
	}
	now := c.Clock.Now()
	var why string
	switch a.Phase {
	case signer.PhaseNone:
		c.settledSince, c.waiting = time.Time{}, ""
		switch {
		case a.RotateRequested != "":
			log.Info("CA rotation requested", "request", a.RotateRequested)
		case !now.Before(certs.RenewAt(a.Signing.Cert)):
			log.Info("CA rotation due: the CA is past 80% of its lifetime", "notAfter", a.Signing.Cert.NotAfter)
		default:
			return nil
		}
		return c.advance(ctx, a)
	case signer.PhaseTrusting:
		why, err = c.trustDistributed(ctx, a)
	case signer.PhaseSigning:
		why, err = c.reissued(ctx, a)
	default:
		return fmt.Errorf("unknown CA rotation phase %q", a.Phase)
	}
	if err != nil {
		return err
	}
	if why != "" {
		c.settledSince = time.Time{}
		c.wait(ctx, a, why)
		return nil
	}
	if c.settledSince.IsZero() {
		c.settledSince = now
	}
	settle := c.Settle
	if settle == 0 {
		settle = DefaultSettle
	}
	if left := settle - now.Sub(c.settledSince); left > 0 {
		c.wait(ctx, a, fmt.Sprintf("the evidence is complete; giving the kubelets %s to update mounted files", left.Round(time.Second)))
		return nil
	}
	return c.advance(ctx, a)
}

// Waiting returns what the rotation last waited for ("" when it did not).
func (c *Controller) Waiting() string { return c.waiting }

// wait logs why the rotation waits, once per reason.
func (c *Controller) wait(ctx context.Context, a *signer.Authority, why string) {
	if why != c.waiting {
		klog.FromContext(ctx).Info("CA rotation waiting", "phase", a.Phase, "since", a.PhaseSince, "for", why)
		c.waiting = why
	}
}

// advance moves the rotation on from a's phase.
func (c *Controller) advance(ctx context.Context, a *signer.Authority) error {
	next, err := c.Store.Advance(ctx, a.Phase)
	if err != nil {
		return err
	}
	c.settledSince, c.waiting = time.Time{}, ""
	phase := string(next.Phase)
	if phase == "" {
		phase = "done: the previous CA is no longer trusted"
	}
	klog.FromContext(ctx).Info("CA rotation moved on", "from", a.Phase, "to", phase,
		"signingSerial", next.Signing.Cert.SerialNumber.Text(16), "trusted", len(next.Trusted()))
	return nil
}
