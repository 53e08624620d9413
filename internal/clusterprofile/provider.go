package clusterprofile

import (
	"encoding/json"
	"fmt"
	"reflect"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	clusterv1 "open-cluster-management.io/api/cluster/v1"
	cpv1alpha1 "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

const (
	// ClusterManagerName is the value of the label
	// cpv1alpha1.LabelClusterManagerKey (x-k8s.io/cluster-manager) on the
	// ClusterProfiles Open Cluster Management manages, and the name of the
	// access provider this package writes.
	ClusterManagerName = "open-cluster-management"
	// ProviderName is the name of the access provider in
	// status.accessProviders that this package owns.
	ProviderName = ClusterManagerName
	// ExecExtensionName is the cluster extension that exec credential
	// plugins read (client.authentication.k8s.io/exec): the plugin learns
	// which cluster it is asked for from its clusterName.
	ExecExtensionName = "client.authentication.k8s.io/exec"
)

// Matches reports whether obj is a ClusterProfile this package reconciles:
// labelled x-k8s.io/cluster-manager=open-cluster-management and carrying the
// label open-cluster-management.io/cluster-name (any value).
func Matches(obj client.Object) bool {
	return Selector().Matches(labels.Set(obj.GetLabels()))
}

// Selector selects the ClusterProfiles Matches accepts, for a cache or a
// list.
func Selector() labels.Selector {
	managed, err := labels.NewRequirement(cpv1alpha1.LabelClusterManagerKey, selection.Equals, []string{ClusterManagerName})
	if err != nil {
		panic(err) // constant, valid arguments
	}
	named, err := labels.NewRequirement(clusterv1.ClusterNameLabelKey, selection.Exists, nil)
	if err != nil {
		panic(err) // constant, valid arguments
	}
	return labels.NewSelector().Add(*managed, *named)
}

// ServerURL is the user-server URL of cluster when the proxy-servers (and
// the user-server) run in namespace.
func ServerURL(namespace, cluster string) string {
	return fmt.Sprintf("https://%s.%s:%d/%s", proxyv1alpha1.UserServerServiceName, namespace, proxyv1alpha1.UserServerPort, cluster)
}

// execConfig is the ExecExtensionName extension's content.
type execConfig struct {
	ClusterName string `json:"clusterName"`
}

// Provider is the access provider of the ClusterProfile named profileName:
// the user-server URL for that cluster, trusting caPEM (the CA that signs
// the user-server's serving certificate), with the exec extension naming
// the cluster.
func Provider(profileName, namespace string, caPEM []byte) cpv1alpha1.AccessProvider {
	// Marshalling a struct of one string cannot fail.
	raw, _ := json.Marshal(execConfig{ClusterName: profileName})
	return cpv1alpha1.AccessProvider{
		Name: ProviderName,
		Cluster: clientcmdv1.Cluster{
			Server:                   ServerURL(namespace, profileName),
			CertificateAuthorityData: caPEM,
			Extensions: []clientcmdv1.NamedExtension{{
				Name:      ExecExtensionName,
				Extension: runtime.RawExtension{Raw: raw},
			}},
		},
	}
}

// Upsert returns providers with every entry named like p replaced by p, or
// p appended when there is none; every other entry is kept as it is, in its
// place. changed is false when providers already hold p exactly (the
// extensions compared as JSON values), and then providers is returned as it
// is.
func Upsert(providers []cpv1alpha1.AccessProvider, p cpv1alpha1.AccessProvider) (out []cpv1alpha1.AccessProvider, changed bool) {
	out = make([]cpv1alpha1.AccessProvider, 0, len(providers)+1)
	found := false
	for _, existing := range providers {
		if existing.Name != p.Name {
			out = append(out, existing)
			continue
		}
		found = true
		if !equalProviders(existing, p) {
			changed = true
		}
		out = append(out, *p.DeepCopy())
	}
	if !found {
		out = append(out, *p.DeepCopy())
		changed = true
	}
	if !changed {
		return providers, false
	}
	return out, true
}

// equalProviders compares a and b as the API server stores them: as JSON
// values, so that an extension's raw bytes compare by content, not by
// spelling. Providers that do not encode (an extension holding invalid
// JSON) are never equal.
func equalProviders(a, b cpv1alpha1.AccessProvider) bool {
	va, errA := jsonValue(a)
	vb, errB := jsonValue(b)
	return errA == nil && errB == nil && reflect.DeepEqual(va, vb)
}

func jsonValue(p cpv1alpha1.AccessProvider) (any, error) {
	data, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	var v any
	err = json.Unmarshal(data, &v)
	return v, err
}
