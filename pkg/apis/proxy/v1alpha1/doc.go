// Package v1alpha1 holds the proxy.open-cluster-management.io/v1alpha1 API:
// ManagedProxyConfiguration, the cluster-scoped object that tells the
// cluster-proxy addon-manager how to run the hub proxy-servers and the
// per-cluster proxy-agents.
//
// The group, version, kind and every JSON field name are those of the
// existing OCM cluster-proxy addon, so objects written for it apply
// unchanged.
//
// +k8s:deepcopy-gen=package
// +kubebuilder:object:generate=true
// +groupName=proxy.open-cluster-management.io
package v1alpha1
