// Package healthreport is what each proxy-server publishes about the agents
// connected to it, for the hub to tell each ManagedClusterAddOn's health
// (internal/addonhealth): a Report (the server's ID, the server count, when
// it was written and, per cluster, how many agents are connected and the
// client certificate that expires first), its JSON encoding with a version,
// the ConfigMap it lives in and a Writer that keeps that ConfigMap current.
//
// One ConfigMap per proxy-server pod, in the proxy-server namespace, named
// ConfigMapName(pod), labelled Labels() and owned by the pod, so the garbage
// collector removes the report of a pod that is gone. Readers select the
// reports with Selector() and trust only those in the proxy-server namespace
// of their ManagedProxyConfiguration, where only the proxy-servers (and
// administrators) write.
//
// # Wiring
//
// The proxy-server command (internal/tunnel, --health-report) runs a Writer
// whose Snapshot is the server core's Report (agents whose certificate
// names no cluster left out), with the pod's name and UID from the
// downward API ($POD_NAME, $POD_UID) and an in-cluster kube client; it
// triggers a write when an agent connects or leaves, at most once a second.
// The ManagedProxyConfiguration reconciler (internal/proxyconfig) gives the
// proxy-server that flag, the downward-API environment and a Role for
// configmaps (get, create, patch) in its namespace; the addon-manager's
// cache (internal/addonmanager CacheOptions) holds the ConfigMaps matching
// Selector().
//
// This package imports client-go and our API names only, so the tunnel can
// use it without the controller frameworks.
package healthreport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"open-cluster-management.io/cluster-proxy/internal/identity"
)

// Version is the report format this build writes and reads. A reader
// refuses other versions: a format that readers of this version would
// misread gets a new one.
const Version = 1

// Report is what one proxy-server knows of the agents connected to it.
type Report struct {
	// Version is the format's version: Version.
	Version int `json:"version"`
	// ServerID is the proxy-server's ID (its --server-id), unique among the
	// proxy-servers of one ManagedProxyConfiguration.
	ServerID string `json:"serverID"`
	// ServerCount is the number of proxy-servers this one was told run
	// beside it (its --server-count): how many each agent should connect
	// to.
	ServerCount int `json:"serverCount"`
	// UpdateTime is when the report was written; readers ignore a report
	// that has not been rewritten for a while (its server is gone or hung).
	UpdateTime time.Time `json:"updateTime"`
	// Clusters are the clusters with an agent connected, sorted by name
	// (Encode and Decode sort them).
	Clusters []Cluster `json:"clusters"`
	// TrustedSigners are the signer organizational units
	// (identity.SignerOU) of the CAs the server trusts agent certificates
	// from (its client CA bundle, as last loaded): a CA rotation lets the
	// new CA sign only once every server trusts it.
	TrustedSigners []string `json:"trustedSigners,omitempty"`
	// ServingSigners are the signer units of the CAs that issued the
	// server's serving certificates (agent port and frontend), as loaded:
	// a CA rotation drops the old CA only once no server serves a
	// certificate it issued.
	ServingSigners []string `json:"servingSigners,omitempty"`
}

// Cluster is what a proxy-server knows of one cluster's agents.
type Cluster struct {
	// Name is the managed cluster, from the agents' certificates.
	Name string `json:"name"`
	// Agents is the number of the cluster's agents connected; a cluster
	// listed with 0 has none.
	Agents int `json:"agents"`
	// Certificate is the agents' client certificate that expires first;
	// nil when none presented one.
	Certificate *Certificate `json:"certificate,omitempty"`
}

// Certificate describes an agent's client certificate.
type Certificate struct {
	// NotBefore and NotAfter bound its validity.
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	// Serial is its serial number in hexadecimal.
	Serial string `json:"serial,omitempty"`
	// Issuer is the common name of the CA that signed it.
	Issuer string `json:"issuer,omitempty"`
	// Signer is its signer-<hash> organizational unit
	// (identity.SignerOU), naming the CA by its certificate's hash; "" when
	// it has none.
	Signer string `json:"signer,omitempty"`
}

// Connected reports whether at least one of the cluster's agents is
// connected.
func (c *Cluster) Connected() bool { return c.Agents > 0 }

// Cluster returns the report's entry for the named cluster. The clusters
// must be sorted by name, as Decode returns them.
func (r *Report) Cluster(name string) (*Cluster, bool) {
	i, found := slices.BinarySearchFunc(r.Clusters, name, func(c Cluster, name string) int { return strings.Compare(c.Name, name) })
	if !found {
		return nil, false
	}
	return &r.Clusters[i], true
}

// Validate checks the report; each error names its field
// (clusters[2].certificate.notAfter). The clusters must be sorted by name.
func (r *Report) Validate() error {
	if r.Version != Version {
		// Nothing else of another version's report means what it says here.
		return field.ErrorList{field.Invalid(field.NewPath("version"), r.Version, "this build reads version "+strconv.Itoa(Version))}.ToAggregate()
	}
	var errs field.ErrorList
	if r.ServerID == "" {
		errs = append(errs, field.Required(field.NewPath("serverID"), "the proxy-server's ID"))
	}
	if r.ServerCount < 1 {
		errs = append(errs, field.Invalid(field.NewPath("serverCount"), r.ServerCount, "must be at least 1"))
	}
	if r.UpdateTime.IsZero() {
		errs = append(errs, field.Required(field.NewPath("updateTime"), "when the report was written"))
	}
	for _, list := range []struct {
		name    string
		signers []string
	}{{"trustedSigners", r.TrustedSigners}, {"servingSigners", r.ServingSigners}} {
		for i, ou := range list.signers {
			if !strings.HasPrefix(ou, identity.SignerOUPrefix) {
				errs = append(errs, field.Invalid(field.NewPath(list.name).Index(i), ou,
					"must be a signer organizational unit ("+identity.SignerOUPrefix+"<hash>)"))
			}
		}
	}
	clusters := field.NewPath("clusters")
	for i := range r.Clusters {
		c := &r.Clusters[i]
		path := clusters.Index(i)
		if err := identity.ValidateClusterName(c.Name); err != nil {
			errs = append(errs, field.Invalid(path.Child("name"), c.Name, err.Error()))
		}
		if i > 0 && r.Clusters[i-1].Name == c.Name {
			errs = append(errs, field.Duplicate(path.Child("name"), c.Name))
		}
		if c.Agents < 0 {
			errs = append(errs, field.Invalid(path.Child("agents"), c.Agents, "must not be negative"))
		}
		if cert := c.Certificate; cert != nil {
			certPath := path.Child("certificate")
			if cert.NotBefore.IsZero() {
				errs = append(errs, field.Required(certPath.Child("notBefore"), "the start of the certificate's validity"))
			}
			if !cert.NotAfter.After(cert.NotBefore) {
				errs = append(errs, field.Invalid(certPath.Child("notAfter"), cert.NotAfter.UTC().Format(time.RFC3339), "must be after notBefore"))
			}
		}
	}
	return errs.ToAggregate()
}

// sortClusters sorts the clusters by name.
func (r *Report) sortClusters() {
	slices.SortStableFunc(r.Clusters, func(a, b Cluster) int { return strings.Compare(a.Name, b.Name) })
}

// Encode validates r and returns its JSON, clusters sorted by name. r is
// not modified.
func Encode(r Report) ([]byte, error) {
	r.Clusters = slices.Clone(r.Clusters)
	r.sortClusters()
	if r.Clusters == nil {
		r.Clusters = []Cluster{}
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("invalid health report: %w", err)
	}
	data, err := json.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("failed to encode the health report: %w", err)
	}
	return data, nil
}

// Decode parses and validates a report, with its clusters sorted by name.
// Fields it does not know are ignored (a newer writer of the same version
// may add some); a field of the wrong type is an error naming it.
func Decode(data []byte) (Report, error) {
	var r Report
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&r); err != nil {
		return Report{}, fmt.Errorf("failed to parse the health report: %w", err)
	}
	if dec.More() {
		return Report{}, errors.New("failed to parse the health report: data after the JSON object")
	}
	r.sortClusters()
	if err := r.Validate(); err != nil {
		return Report{}, fmt.Errorf("invalid health report: %w", err)
	}
	return r, nil
}
