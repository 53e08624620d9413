package userserver

import (
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// proxyServiceSegment marks a Service request: the path's eighth segment,
// /<cluster>/api/v1/namespaces/<ns>/services/<svc>/proxy-service/<path>.
const proxyServiceSegment = "proxy-service"

// Target is a Service on a managed cluster, named in the service-proxy's
// Cluster-Proxy-* headers.
type Target struct {
	// Proto is http or https.
	Proto string
	// Namespace and Name are the Service's.
	Namespace, Name string
	// Port is the Service's port.
	Port int
}

// kubeAPIServer is the managed cluster's kube-apiserver as a target.
var kubeAPIServer = Target{Proto: "https", Namespace: "default", Name: "kubernetes", Port: 443}

// Headers returns the service-proxy's target headers.
func (t Target) Headers() map[string]string {
	return map[string]string{
		proxyv1alpha1.HeaderProto:     t.Proto,
		proxyv1alpha1.HeaderNamespace: t.Namespace,
		proxyv1alpha1.HeaderService:   t.Name,
		proxyv1alpha1.HeaderPort:      strconv.Itoa(t.Port),
	}
}

// Route is where a user-server request goes.
type Route struct {
	// Cluster is the managed cluster.
	Cluster string
	// Target is the Service the request reaches on the cluster.
	Target Target
	// Service is true for a request to a Service other than through the
	// kube API (the exposed-services allowlist applies).
	Service bool
	// Path is the path the service-proxy gets, starting with "/".
	Path string
}

// ParseRoute maps a request path to its route:
//
//	/<cluster>/<kube path>  the cluster's kube-apiserver, path <kube path>;
//	/<cluster>/api/v1/namespaces/<ns>/services/<[proto:]svc[:port]>/proxy-service/<path>
//	                        Service <svc> in <ns>, path <path>; proto is
//	                        http or https (default https), port defaults to
//	                        the proto's (80, 443).
//
// The error names what is wrong with the path.
func ParseRoute(path string) (Route, error) {
	if !strings.HasPrefix(path, "/") {
		return Route{}, fmt.Errorf("the path %q does not start with /", path)
	}
	cluster, rest, _ := strings.Cut(path[1:], "/")
	if cluster == "" {
		return Route{}, fmt.Errorf("the path %q names no cluster: use /<cluster>/<kube API path>", path)
	}
	if msgs := validation.IsDNS1123Label(cluster); len(msgs) > 0 {
		return Route{}, fmt.Errorf("the path %q names an invalid cluster %q: %s", path, cluster, strings.Join(msgs, "; "))
	}
	rest = "/" + rest
	segments := strings.Split(rest, "/")
	// "", api, v1, namespaces, <ns>, services, <svc>, proxy-service, ...
	if len(segments) < 8 || segments[7] != proxyServiceSegment ||
		segments[1] != "api" || segments[2] != "v1" || segments[3] != "namespaces" || segments[5] != "services" {
		return Route{Cluster: cluster, Target: kubeAPIServer, Path: rest}, nil
	}
	target, err := parseService(segments[4], segments[6])
	if err != nil {
		return Route{}, fmt.Errorf("the path %q names an invalid Service: %w", path, err)
	}
	servicePath := "/" + strings.Join(segments[8:], "/")
	return Route{Cluster: cluster, Target: target, Service: true, Path: servicePath}, nil
}

// parseService parses a "[proto:]name[:port]" Service reference in
// namespace.
func parseService(namespace, ref string) (Target, error) {
	if msgs := validation.IsDNS1123Label(namespace); len(msgs) > 0 {
		return Target{}, fmt.Errorf("invalid namespace %q: %s", namespace, strings.Join(msgs, "; "))
	}
	parts := strings.Split(ref, ":")
	t := Target{Proto: "https", Namespace: namespace}
	switch len(parts) {
	case 1:
		t.Name = parts[0]
	case 2:
		// name:port, or proto:name when the first part is a scheme.
		if parts[0] == "http" || parts[0] == "https" {
			t.Proto, t.Name = parts[0], parts[1]
		} else {
			t.Name = parts[0]
			if err := t.setPort(parts[1]); err != nil {
				return Target{}, err
			}
		}
	case 3:
		t.Proto, t.Name = parts[0], parts[1]
		if err := t.setPort(parts[2]); err != nil {
			return Target{}, err
		}
	default:
		return Target{}, fmt.Errorf("invalid service %q: expected [proto:]name[:port]", ref)
	}
	if t.Proto != "http" && t.Proto != "https" {
		return Target{}, fmt.Errorf("invalid service %q: protocol %q is neither http nor https", ref, t.Proto)
	}
	if msgs := validation.IsDNS1035Label(t.Name); len(msgs) > 0 {
		return Target{}, fmt.Errorf("invalid service %q: name %q: %s", ref, t.Name, strings.Join(msgs, "; "))
	}
	if t.Port == 0 {
		t.Port = 443
		if t.Proto == "http" {
			t.Port = 80
		}
	}
	return t, nil
}

// setPort sets a numeric port (1-65535).
func (t *Target) setPort(s string) error {
	port, err := strconv.Atoi(s)
	if err != nil || port < 1 || port > 65535 {
		return fmt.Errorf("invalid port %q: must be a number from 1 to 65535", s)
	}
	t.Port = port
	return nil
}
