package client

import (
	"errors"
	"fmt"
	"net"
	"strings"

	konnectivity "sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client"
	"sigs.k8s.io/apiserver-network-proxy/konnectivity-client/pkg/client/metrics"
)

// noAgentMessage is the error text of the DIAL_RSP a konnectivity
// proxy-server answers when no connected agent registered the dialled host
// (apiserver-network-proxy's server.ErrNotFound).
const noAgentMessage = "no agent available"

// ErrDialerClosed is returned by DialContext after Close.
var ErrDialerClosed = errors.New("the cluster-proxy dialer is closed")

// NoAgentError is returned by Dialer.DialContext when the proxy-server has no
// agent for the dialled host: the managed cluster's proxy-agent is not
// connected (not deployed, not running, or not yet reconnected), or the
// cluster name is wrong. The proxy-server answers this at once, so the dial
// fails without waiting for a timeout.
type NoAgentError struct {
	// Cluster is the host part of Address: the managed cluster name when
	// the caller dialled "<cluster>:<port>".
	Cluster string
	// Address is the address that was dialled.
	Address string

	err error
}

// Error says which cluster has no agent.
func (e *NoAgentError) Error() string {
	return fmt.Sprintf("no cluster-proxy agent of cluster %q is connected to the proxy-server (dial %s)", e.Cluster, e.Address)
}

// Unwrap returns the konnectivity-client error the proxy-server's answer
// produced, so konnectivity's GetDialFailureReason still classifies it.
func (e *NoAgentError) Unwrap() error { return e.err }

// isNoAgent reports whether err is the proxy-server's answer that no agent
// serves the dialled host.
func isNoAgent(err error) bool {
	isDialFailure, reason := konnectivity.GetDialFailureReason(err)
	return isDialFailure && reason == metrics.DialFailureEndpoint &&
		strings.EqualFold(strings.TrimSpace(err.Error()), noAgentMessage)
}

// isTunnelFailure reports whether err says the gRPC connection to the
// proxy-server, rather than this one dial, failed: the stream could not be
// opened, the tunnel closed under the dial, or an untyped transport error.
// Such a tunnel is worth replacing.
func isTunnelFailure(err error) bool {
	isDialFailure, reason := konnectivity.GetDialFailureReason(err)
	if !isDialFailure {
		return true
	}
	switch reason {
	case metrics.DialFailureStreamSetup, metrics.DialFailureTunnelClosed:
		return true
	default:
		return false
	}
}

// dialError turns the error of a tunnelled dial of address into the error
// DialContext returns.
func dialError(address, proxyServer string, err error) error {
	if isNoAgent(err) {
		host, _, splitErr := net.SplitHostPort(address)
		if splitErr != nil {
			host = address
		}
		return &NoAgentError{Cluster: host, Address: address, err: err}
	}
	return fmt.Errorf("failed to dial %s through the proxy-server %s: %w", address, proxyServer, err)
}
