// Package localenv runs cluster-proxy's local environment: a hub and two
// managed clusters, each a real etcd, kube-apiserver and
// kube-controller-manager in its own network namespace, joined by OCM's own
// controllers and agents, with cluster-proxy installed into the hub by the
// Helm CLI and its pods run as local processes by a kubelet stand-in.
//
// The network (all addresses from 198.18.0.0/15):
//
//	root namespace   198.18.0.254 ─┐
//	cpx-hub          198.18.0.1  ──┤ bridge "uplink" (in cpx-hub)
//	cpx-cluster1     198.18.0.11 ──┤
//	cpx-cluster2     198.18.0.12 ──┘
//
// Each cluster namespace also holds a bridge "pods" (hub 198.18.16.0/24,
// cluster1 198.18.17.0/24, cluster2 198.18.18.0/24); every pod gets its own
// namespace on that bridge. Namespaces do not forward packets, so nothing
// routes between a pods bridge and the uplink. A managed cluster's
// kube-apiserver listens only on its pods bridge: the hub, which has no
// route there, cannot reach it except through the tunnel. Managed pods reach
// the hub through relays on their gateway (the node "NAT"); the hub exposes
// its proxy-server's ports on the uplink through a relay that follows the
// Service's endpoints, as a LoadBalancer would.
package localenv

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
)

// Names and addresses of the environment.
const (
	// HubName is the hub's name in messages and paths.
	HubName = "hub"
	// HubHostname is the DNS name of the hub's kube-apiserver.
	HubHostname = "hub.cpx.test"
	// EntrypointHostname is the proxy-server entrypoint agents dial.
	EntrypointHostname = "proxy.hub.cpx.test"
	// HubUplinkIP is the hub's address on the uplink bridge.
	HubUplinkIP = "198.18.0.1"
	// RootUplinkIP is the root network namespace's address on the uplink:
	// the operator's machine, where kubectl and helm run.
	RootUplinkIP = "198.18.0.254"
	// HubAPIServerPort is the hub kube-apiserver's port.
	HubAPIServerPort = 6443
	// ManagedAPIServerPort is a managed kube-apiserver's port, the
	// kubernetes Service's port: agents dial <cluster>:443.
	ManagedAPIServerPort = 443
	// EntrypointPort is the proxy-server agent port agents dial.
	EntrypointPort = 8091
	// FrontendPort is the proxy-server port tunnel clients dial.
	FrontendPort = 8090
	// UserServerPort is the user-server's HTTPS port, on the hub's uplink
	// address too.
	UserServerPort = 9092
	// UserServerServiceName is the user-server's Service, whose port
	// UserServerPortName it serves on.
	UserServerServiceName = "cluster-proxy-addon-user"
	UserServerPortName    = "user-server"
	// ServiceCIDR is the (unrouted) Service IP range of every cluster.
	ServiceCIDR = "198.19.0.0/16"
	// uplinkBridge and podsBridge are the bridge names.
	uplinkBridge = "uplink"
	podsBridge   = "pods"
	// netnsPrefix starts the name of every namespace the environment creates.
	netnsPrefix = "cpx-"
)

// ManagedClusters are the managed clusters' names.
var ManagedClusters = []string{"cluster1", "cluster2"}

// Cluster is one simulated cluster's place in the network.
type Cluster struct {
	// Name is "hub" or the managed cluster's name.
	Name string
	// Hub is true for the hub.
	Hub bool
	// Index orders the clusters: 0 for the hub, 1.. for managed clusters.
	Index int
}

// Clusters returns the hub followed by the managed clusters.
func Clusters() []Cluster {
	out := []Cluster{{Name: HubName, Hub: true}}
	for i, name := range ManagedClusters {
		out = append(out, Cluster{Name: name, Index: i + 1})
	}
	return out
}

// Netns is the cluster's ("node") network namespace.
func (c Cluster) Netns() string { return netnsPrefix + c.Name }

// UplinkIP is the cluster's address on the uplink bridge.
func (c Cluster) UplinkIP() string {
	if c.Hub {
		return HubUplinkIP
	}
	return fmt.Sprintf("198.18.0.%d", 10+c.Index)
}

// PodPrefix is the first three octets of the cluster's pod network.
func (c Cluster) PodPrefix() string { return fmt.Sprintf("198.18.%d", 16+c.Index) }

// Gateway is the node's address on its pods bridge.
func (c Cluster) Gateway() string { return c.PodPrefix() + ".1" }

// PodNetnsPrefix starts the names of the cluster's pod namespaces.
func (c Cluster) PodNetnsPrefix() string { return fmt.Sprintf("%sp%d-", netnsPrefix, c.Index) }

// APIServerPort is the port the cluster's kube-apiserver listens on.
func (c Cluster) APIServerPort() int {
	if c.Hub {
		return HubAPIServerPort
	}
	return ManagedAPIServerPort
}

// APIServerBind is the address the kube-apiserver binds: every interface
// of the hub, but only the pods bridge of a managed cluster.
func (c Cluster) APIServerBind() string {
	if c.Hub {
		return "0.0.0.0"
	}
	return c.Gateway()
}

// LocalAPIServerURL is the kube-apiserver's URL inside the cluster's own
// namespace (for its controller-manager and OCM's agents).
func (c Cluster) LocalAPIServerURL() string {
	return "https://" + net.JoinHostPort(c.Gateway(), strconv.Itoa(c.APIServerPort()))
}

// NodeName is the Node the kubelet stand-in registers.
func (c Cluster) NodeName() string { return c.Name + "-node" }

// Dir is the cluster's state directory under the environment's.
func (c Cluster) Dir(stateDir string) string { return filepath.Join(stateDir, c.Name) }

// HubURL is the hub kube-apiserver's URL as managed clusters and the
// operator see it.
func HubURL() string {
	return "https://" + net.JoinHostPort(HubHostname, strconv.Itoa(HubAPIServerPort))
}

// The hub proxy-server's Service, as the chart's default
// ManagedProxyConfiguration names it.
const (
	// MPCName is the chart's default ManagedProxyConfiguration.
	MPCName = "cluster-proxy"
	// AddonName is the addon's name.
	AddonName = "cluster-proxy"
	// ChartNamespace is the namespace the chart is installed into.
	ChartNamespace = "open-cluster-management-addon"
	// ReleaseName is the Helm release.
	ReleaseName = "cluster-proxy"
)
