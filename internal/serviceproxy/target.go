// Package serviceproxy is the managed-cluster end of cluster-proxy's HTTPS
// access path (`cluster-proxy service-proxy`): it takes requests that came
// through the tunnel, finds their target from the Cluster-Proxy-* headers —
// the cluster's kube-apiserver or one of its Services — and forwards them.
package serviceproxy

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// KubeAPIServerURL is where requests for Service kubernetes in namespace
// default go: the cluster's own kube-apiserver.
const KubeAPIServerURL = "https://kubernetes.default.svc"

// Target is where the service-proxy forwards a request.
type Target struct {
	// URL is the target's scheme and host (and port).
	URL *url.URL
	// KubeAPIServer is set when the target is the cluster's kube-apiserver,
	// the only target whose requests are authenticated.
	KubeAPIServer bool
}

// TargetError says which Cluster-Proxy-* header is missing or invalid.
type TargetError struct {
	// Header is the offending header's name.
	Header string
	// Reason says what is wrong with it.
	Reason string
}

func (e *TargetError) Error() string { return "header " + e.Header + ": " + e.Reason }

// ResolveTarget returns the target the Cluster-Proxy-* headers of h name.
// Every header is required; the Service kubernetes in namespace default
// (case-insensitively) is the kube-apiserver, whatever the scheme and port.
func ResolveTarget(h http.Header) (Target, error) {
	values := map[string]string{}
	for _, name := range []string{proxyv1alpha1.HeaderProto, proxyv1alpha1.HeaderNamespace, proxyv1alpha1.HeaderService, proxyv1alpha1.HeaderPort} {
		vs := h.Values(name)
		switch {
		case len(vs) == 0 || strings.TrimSpace(vs[0]) == "":
			return Target{}, &TargetError{Header: name, Reason: "missing"}
		case len(vs) > 1:
			return Target{}, &TargetError{Header: name, Reason: "given more than once"}
		}
		values[name] = strings.TrimSpace(vs[0])
	}
	namespace := strings.ToLower(values[proxyv1alpha1.HeaderNamespace])
	service := strings.ToLower(values[proxyv1alpha1.HeaderService])
	if namespace == "default" && service == "kubernetes" {
		u, _ := url.Parse(KubeAPIServerURL)
		return Target{URL: u, KubeAPIServer: true}, nil
	}
	proto := strings.ToLower(values[proxyv1alpha1.HeaderProto])
	if proto != "http" && proto != "https" {
		return Target{}, &TargetError{Header: proxyv1alpha1.HeaderProto, Reason: fmt.Sprintf("%q is not http or https", values[proxyv1alpha1.HeaderProto])}
	}
	if msgs := validation.IsDNS1123Label(namespace); len(msgs) > 0 {
		return Target{}, &TargetError{Header: proxyv1alpha1.HeaderNamespace, Reason: fmt.Sprintf("%q is not a namespace name: %s", values[proxyv1alpha1.HeaderNamespace], strings.Join(msgs, "; "))}
	}
	if msgs := validation.IsDNS1035Label(service); len(msgs) > 0 {
		return Target{}, &TargetError{Header: proxyv1alpha1.HeaderService, Reason: fmt.Sprintf("%q is not a Service name: %s", values[proxyv1alpha1.HeaderService], strings.Join(msgs, "; "))}
	}
	port, err := strconv.ParseUint(values[proxyv1alpha1.HeaderPort], 10, 16)
	if err != nil || port == 0 {
		return Target{}, &TargetError{Header: proxyv1alpha1.HeaderPort, Reason: fmt.Sprintf("%q is not a port number (1-65535)", values[proxyv1alpha1.HeaderPort])}
	}
	host := net.JoinHostPort(service+"."+namespace+".svc", strconv.FormatUint(port, 10))
	return Target{URL: &url.URL{Scheme: proto, Host: host}}, nil
}
