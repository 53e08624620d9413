package serviceproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/httpserve"
	"open-cluster-management.io/cluster-proxy/internal/identity"
	"open-cluster-management.io/cluster-proxy/internal/serviceproxy/authn"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// callerRefusal is why a caller without the hub-issued client certificate
// gets 403: the Cluster-Proxy-* headers decide where a request goes, so only
// the user-server and konnectivity clients holding a certificate from the
// cluster-proxy CA may send them.
const callerRefusal = "the service-proxy serves only callers that present a client certificate issued by the cluster-proxy CA (the user-server's or a proxy-client certificate)"

// targetHeaders are the Cluster-Proxy-* headers, which never reach the
// target.
var targetHeaders = []string{proxyv1alpha1.HeaderProto, proxyv1alpha1.HeaderNamespace, proxyv1alpha1.HeaderService, proxyv1alpha1.HeaderPort}

// bodyBuffers are the body-copy buffers of every Server's forwarding.
var bodyBuffers = &httpserve.BufferPool{}

// Server forwards requests to their target: the kube-apiserver (after
// authenticating the bearer token when Authn is set) or a Service.
type Server struct {
	// KubeAPIServer is the URL of the cluster's kube-apiserver.
	KubeAPIServer *url.URL
	// Anonymous reaches the kube-apiserver with no credentials of its own:
	// the client's token goes through unchanged.
	Anonymous http.RoundTripper
	// Own reaches the kube-apiserver with the service-proxy's credentials,
	// for impersonated requests.
	Own http.RoundTripper
	// Services reaches Services in the cluster.
	Services http.RoundTripper
	// Authn authenticates bearer tokens for the kube-apiserver; nil passes
	// every request through with its own credentials.
	Authn authn.Chain
	// Metrics count answers and authentication outcomes; nil counts nothing.
	Metrics *Metrics
}

// ServeHTTP checks the caller, resolves the target and forwards the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := klog.FromContext(r.Context())
	if err := checkCaller(r); err != nil {
		s.Metrics.authenticated(ProviderClientCertificate, authn.Rejected)
		s.refuse(w, targetNone, http.StatusForbidden, metav1.StatusReasonForbidden, err.Error())
		return
	}
	s.Metrics.authenticated(ProviderClientCertificate, authn.Authenticated)
	target, err := ResolveTarget(r.Header)
	if err != nil {
		s.refuse(w, targetNone, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error())
		return
	}
	transport := s.Services
	targetURL := target.URL
	targetLabel := targetService
	var impersonate *authn.Result
	if target.KubeAPIServer {
		targetURL, transport, targetLabel = s.KubeAPIServer, s.Anonymous, targetKubeAPIServer
		if s.Authn != nil {
			res, status, msg := s.authenticate(r.Context(), r.Header)
			if status != 0 {
				log.V(2).Info("refused a request for the kube-apiserver", "reason", msg)
				s.refuse(w, targetLabel, status, metav1.StatusReasonUnauthorized, msg)
				return
			}
			if res.Provider.Impersonate {
				impersonate, transport = res, s.Own
			}
		}
	}
	proxy := &httputil.ReverseProxy{
		// pr.Out is ReverseProxy's own copy of the request: the header
		// changes go there, r stays as it came.
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = targetURL.Scheme
			pr.Out.URL.Host = targetURL.Host
			pr.Out.Host = targetURL.Host
			for _, h := range targetHeaders {
				pr.Out.Header.Del(h)
			}
			if impersonate != nil {
				setImpersonation(pr.Out.Header, impersonate)
			}
		},
		Transport:  transport,
		BufferPool: bodyBuffers,
		// Called when the target's answer arrives, upgrades included.
		ModifyResponse: func(resp *http.Response) error {
			s.Metrics.answered(targetLabel, resp.StatusCode)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			log.V(2).Info("failed to reach the target", "target", targetURL.Host, "err", err.Error())
			// A Service name that does not resolve is a Service the cluster
			// does not have: the caller's mistake, not a gateway failure.
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
				s.refuse(w, targetLabel, http.StatusNotFound, metav1.StatusReasonNotFound,
					fmt.Sprintf("the service-proxy found no Service at %s on this cluster (%s does not resolve): check the Cluster-Proxy-Service and Cluster-Proxy-Namespace headers", targetURL.Host, dnsErr.Name))
				return
			}
			s.refuse(w, targetLabel, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable,
				fmt.Sprintf("the service-proxy failed to reach %s: %v", targetURL.Host, err))
		},
	}
	proxy.ServeHTTP(w, r)
}

// refuse answers with a Status of its own (no target answered) and counts
// the answer.
func (s *Server) refuse(w http.ResponseWriter, target string, code int, reason metav1.StatusReason, msg string) {
	s.Metrics.answered(target, code)
	httpserve.WriteStatus(w, code, reason, msg)
}

// authenticate authenticates the bearer token in h. It returns who the
// token belongs to, or the status and message of a refusal; the message
// never contains the token. A token of the managed cluster goes through
// unchanged (with any Impersonate-* headers, which the kube-apiserver
// authorises for that user); a token of a provider that impersonates (the
// hub, OIDC) is replaced by setImpersonation.
func (s *Server) authenticate(ctx context.Context, h http.Header) (res *authn.Result, status int, msg string) {
	token, ok := bearerToken(h)
	if !ok {
		return nil, http.StatusUnauthorized, "the request carries no bearer token (Authorization: Bearer <token>)"
	}
	res, err := s.Authn.Authenticate(ctx, token, s.Metrics.authenticated)
	var rejected *authn.RejectedError
	switch {
	case errors.As(err, &rejected):
		return nil, http.StatusUnauthorized, "Unauthorized: " + err.Error()
	case err != nil:
		return nil, http.StatusUnauthorized, "Unauthorized: authentication could not be completed: " + err.Error()
	}
	return res, 0, ""
}

// setImpersonation makes h, the headers of a request forwarded with the
// service-proxy's own credentials, impersonate res's user (name and
// groups): every client Impersonate-* header and the client's
// Authorization are removed first.
func setImpersonation(h http.Header, res *authn.Result) {
	for name := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(name), "Impersonate-") {
			h.Del(name)
		}
	}
	h.Del("Authorization")
	h.Set(authenticationv1.ImpersonateUserHeader, res.User.GetName())
	for _, g := range res.User.GetGroups() {
		h.Add(authenticationv1.ImpersonateGroupHeader, g)
	}
	// Only user and groups: the agent's RBAC grants impersonation of users
	// and groups, not of UIDs or extra fields.
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header.
func bearerToken(h http.Header) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h.Get("Authorization")), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "bearer") || token == "" {
		return "", false
	}
	return token, true
}

// checkCaller accepts callers whose client certificate the cluster-proxy
// CA issued and that is not a proxy-agent's.
func checkCaller(r *http.Request) error {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return errors.New(callerRefusal + "; this request presented none")
	}
	leaf := r.TLS.VerifiedChains[0][0]
	if leaf.Subject.CommonName == identity.ProxyAgentUser {
		return errors.New(callerRefusal + "; a proxy-agent certificate is not one")
	}
	return nil
}
