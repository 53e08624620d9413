// Package entrypoint works out where proxy-agents reach the proxy-servers
// of a ManagedProxyConfiguration. The MPC reconciler uses it for the
// agent-server certificate's names; the agent addon for the address it gives
// every agent.
package entrypoint

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// Entrypoint is where proxy-agents reach the proxy-servers.
type Entrypoint struct {
	// Host is the address agents dial; empty when not known yet.
	Host string
	// Port is the port agents dial.
	Port int32
	// PortForward is set when agents reach the servers through the
	// addon-agent's port-forward relay on 127.0.0.1.
	PortForward bool
	// SANs are the addresses the agent-server certificate must name for
	// this entrypoint.
	SANs []string
	// Pending explains why Host is not known yet (a load balancer without an
	// ingress address); empty when the entrypoint is ready.
	Pending string
}

// Ready reports whether agents can be told where to connect.
func (e Entrypoint) Ready() bool { return e.Pending == "" }

// Resolve works out where agents reach the proxy-servers of mpc.
// For a LoadBalancerService entrypoint it reads the Service's ingress: every
// IP and host name there is returned in SANs and the first becomes Host.
func Resolve(ctx context.Context, c client.Reader, mpc *proxyv1alpha1.ManagedProxyConfiguration) (Entrypoint, error) {
	mpc = mpc.DeepCopy()
	mpc.Default()
	server := mpc.Spec.ProxyServer
	ep := server.Entrypoint
	if ep == nil {
		return Entrypoint{Host: server.InClusterServiceName + "." + server.Namespace, Port: proxyv1alpha1.DefaultEntrypointPort}, nil
	}
	port := ep.Port
	switch ep.Type {
	case proxyv1alpha1.EntryPointTypeHostname:
		if ep.Hostname == nil || ep.Hostname.Value == "" {
			return Entrypoint{Port: port, Pending: "entrypoint type Hostname needs spec.proxyServer.entrypoint.hostname.value"}, nil
		}
		return Entrypoint{Host: ep.Hostname.Value, Port: port, SANs: []string{ep.Hostname.Value}}, nil
	case proxyv1alpha1.EntryPointTypePortForward:
		return Entrypoint{Host: "127.0.0.1", Port: port, PortForward: true}, nil
	case proxyv1alpha1.EntryPointTypeLoadBalancerService:
		name := mpc.LoadBalancerServiceName()
		svc := &corev1.Service{}
		err := c.Get(ctx, types.NamespacedName{Namespace: server.Namespace, Name: name}, svc)
		if apierrors.IsNotFound(err) {
			return Entrypoint{Port: port, Pending: fmt.Sprintf("load balancer Service %s/%s does not exist yet", server.Namespace, name)}, nil
		}
		if err != nil {
			return Entrypoint{}, fmt.Errorf("failed to get load balancer Service %s/%s: %w", server.Namespace, name, err)
		}
		var addrs []string
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				addrs = append(addrs, in.IP)
			}
			if in.Hostname != "" {
				addrs = append(addrs, in.Hostname)
			}
		}
		if len(addrs) == 0 {
			return Entrypoint{Port: port, Pending: fmt.Sprintf(
				"waiting for load balancer Service %s/%s to get an ingress IP or host name from the cloud provider", server.Namespace, name)}, nil
		}
		return Entrypoint{Host: addrs[0], Port: port, SANs: addrs}, nil
	default:
		return Entrypoint{}, fmt.Errorf("unknown entrypoint type %q", ep.Type)
	}
}
