package userserver

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/httpserve"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
	"open-cluster-management.io/cluster-proxy/pkg/client"
)

// Server forwards /<cluster>/... requests to the cluster's service-proxy
// through the tunnel.
type Server struct {
	// Transport reaches service-proxies: it dials through the pooled tunnel
	// and verifies them with the cluster-proxy CA, presenting the
	// proxy-client certificate. One keep-alive pool per cluster (per host).
	Transport http.RoundTripper
	// Allowlist returns the exposed-services list in force.
	Allowlist func() Allowlist
	// Metrics count the answers by cluster; nil counts nothing.
	Metrics *Metrics
}

// bodyBuffers are the body-copy buffers of every Server's forwarding.
var bodyBuffers = &httpserve.BufferPool{}

// ServeHTTP routes the request and forwards it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	log := klog.FromContext(r.Context())
	route, err := ParseRoute(r.URL.EscapedPath())
	if err != nil {
		s.refuse(w, UnknownCluster, start, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error())
		return
	}
	if route.Service && !s.Allowlist().Allows(route.Target) {
		s.refuse(w, route.Cluster, start, http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf(
			"service %s/%s (%s, port %d) is not exposed by the user-server: add it to the exposed-services ConfigMap",
			route.Target.Namespace, route.Target.Name, route.Target.Proto, route.Target.Port))
		return
	}
	host := net.JoinHostPort(proxyv1alpha1.ServiceProxyHost(route.Cluster), strconv.Itoa(int(proxyv1alpha1.ServiceProxyPort)))
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "https"
			pr.Out.URL.Host = host
			pr.Out.URL.Path, pr.Out.URL.RawPath = "", ""
			// route.Path is escaped (it came from EscapedPath, so it
			// unescapes); RawPath keeps an escaped "/" distinct.
			pr.Out.URL.Path, _ = url.PathUnescape(route.Path)
			if pr.Out.URL.Path != route.Path {
				pr.Out.URL.RawPath = route.Path
			}
			pr.Out.Host = host
			// The caller's own Cluster-Proxy-* headers never reach the
			// service-proxy: the route decides the target.
			for k, v := range route.Target.Headers() {
				pr.Out.Header.Set(k, v)
			}
		},
		Transport: s.Transport,
		// Called when the service-proxy's answer arrives, upgrades
		// included.
		ModifyResponse: func(resp *http.Response) error {
			s.Metrics.answered(route.Cluster, true, resp.StatusCode, start)
			return nil
		},
		// Streamed answers (watches, followed logs: no Content-Length, or
		// text/event-stream) are flushed as they come, by ReverseProxy
		// itself. An answer of known length is written in one piece: an
		// explicit FlushInterval of -1 would send its headers on their own
		// from a timer goroutine first, one more TLS record and write per
		// request.
		FlushInterval: 0,
		BufferPool:    bodyBuffers,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code, reason, msg := describeError(route.Cluster, err)
			log.V(2).Info("Failed to forward a request", "cluster", route.Cluster, "path", route.Path, "err", err.Error())
			s.refuse(w, route.Cluster, start, code, reason, msg)
		},
	}
	proxy.ServeHTTP(w, r)
}

// refuse answers a request for cluster that arrived at start with a Status
// of the user-server's own, and counts the answer.
func (s *Server) refuse(w http.ResponseWriter, cluster string, start time.Time, code int, reason metav1.StatusReason, msg string) {
	s.Metrics.answered(cluster, false, code, start)
	httpserve.WriteStatus(w, code, reason, msg)
}

// describeError turns a forwarding error into the status the user sees,
// naming the cluster.
func describeError(cluster string, err error) (int, metav1.StatusReason, string) {
	var noAgent *client.NoAgentError
	if errors.As(err, &noAgent) {
		return http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, fmt.Sprintf(
			"cluster %q is not reachable: no cluster-proxy agent of it is connected (is it a managed cluster of this hub with the cluster-proxy addon available?)", cluster)
	}
	return http.StatusBadGateway, metav1.StatusReasonServiceUnavailable, fmt.Sprintf(
		"failed to reach cluster %q through the tunnel: %v", cluster, err)
}
