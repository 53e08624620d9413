package clusterprofile

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	cpv1alpha1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// CRDName is the CustomResourceDefinition of ClusterProfiles.
const CRDName = "clusterprofiles.multicluster.x-k8s.io"

// resourceName is the ClusterProfile resource in discovery.
const resourceName = "clusterprofiles"

// absentLogEvery is how often the wait for the CRD says again that it
// waits.
const absentLogEvery = 5 * time.Minute

// Installed reports whether the hub serves ClusterProfiles
// (multicluster.x-k8s.io/v1alpha1). It asks discovery every time: nothing is
// cached.
func Installed(d discovery.DiscoveryInterface) (bool, error) {
	list, err := d.ServerResourcesForGroupVersion(cpv1alpha1.GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to discover %s: %w", cpv1alpha1.GroupVersion, err)
	}
	for _, r := range list.APIResources {
		if r.Name == resourceName {
			return true, nil
		}
	}
	return false, nil
}

// StartWhenInstalled registers the reconciler with mgr once the hub serves
// ClusterProfiles. It adds to mgr a runnable that, while mgr is the leader,
// asks d every interval whether the CRD CRDName is installed — logging that
// it waits, and why, until it is — and then sets up the reconciler.
//
// Waiting rather than failing is deliberate: the CRD belongs to the Cluster
// Inventory API that OCM's cluster-manager installs with its own
// ClusterProfile feature gate, so which of the two is switched on first
// must not matter, and a missing optional API must not stop what the
// addon-manager does for every cluster (proxy-servers, agents,
// certificates).
func (r *Reconciler) StartWhenInstalled(mgr ctrl.Manager, d discovery.DiscoveryInterface, interval time.Duration) error {
	if r.Client == nil {
		return errors.New("clusterprofile.Reconciler is missing [Client]")
	}
	if d == nil || interval <= 0 {
		return errors.New("clusterprofile.StartWhenInstalled needs a discovery client and a positive interval")
	}
	log := mgr.GetLogger().WithName(ControllerName).WithValues("customResourceDefinition", CRDName)
	// A plain RunnableFunc runs only on the leader.
	return mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		if !waitInstalled(ctx, log, d, interval) {
			return nil // the manager stops
		}
		log.Info("ClusterProfiles are served: starting the ClusterProfile reconciler")
		if err := r.SetupWithManager(mgr); err != nil {
			return fmt.Errorf("failed to set up the ClusterProfile reconciler: %w", err)
		}
		return nil
	}))
}

// waitInstalled returns true once d reports that ClusterProfiles are
// served, false when ctx ends first. It says that it waits, and why, at
// start and every absentLogEvery.
func waitInstalled(ctx context.Context, log logr.Logger, d discovery.DiscoveryInterface, interval time.Duration) bool {
	var lastLogged time.Time
	installed := false
	// The condition never fails, so only ctx ends the poll early.
	_ = wait.PollUntilContextCancel(ctx, interval, true, func(context.Context) (bool, error) {
		var err error
		installed, err = Installed(d)
		if installed {
			return true, nil
		}
		if time.Since(lastLogged) < absentLogEvery {
			log.V(4).Info("still waiting for the ClusterProfile CRD", "after", interval)
			return false, nil
		}
		lastLogged = time.Now()
		if err != nil {
			log.Info("cannot tell whether ClusterProfiles are served; the ClusterProfile reconciler waits", "err", err, "after", interval)
		} else {
			log.Info("the ClusterProfile CRD is not installed; the ClusterProfile reconciler starts once it is",
				"reason", "feature gate ClusterProfile is on: install the Cluster Inventory API CRD "+CRDName+" (OCM's cluster-manager installs it with its ClusterProfile feature gate) or turn the gate off",
				"after", interval)
		}
		return false, nil
	})
	return installed
}
