package serviceproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	. "github.com/onsi/gomega"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"

	"open-cluster-management.io/cluster-proxy/internal/serviceproxy/authn"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// tokenUsers authenticates the tokens it names.
func tokenUsers(users map[string]user.Info) authenticator.Token {
	return authenticator.TokenFunc(func(_ context.Context, token string) (*authenticator.Response, bool, error) {
		u, ok := users[token]
		if !ok {
			return nil, false, nil
		}
		return &authenticator.Response{User: u}, true, nil
	})
}

func TestServerForwardsToTheKubeAPIServer(t *testing.T) {
	var got http.Header
	kube := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(kube.Close)
	kubeURL, err := url.Parse(kube.URL)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		KubeAPIServer: kubeURL, Anonymous: http.DefaultTransport, Own: http.DefaultTransport,
		Authn: authn.Chain{
			{Name: "managed", Token: tokenUsers(map[string]user.Info{"managed-token": &user.DefaultInfo{Name: "system:serviceaccount:ns:sa"}})},
			{Name: "hub", Token: tokenUsers(map[string]user.Info{"hub-token": &user.DefaultInfo{Name: "system:serviceaccount:hubns:hubsa", Groups: []string{"g1", "g2"}}}),
				Impersonate: true, MapUser: authn.HubUser},
		},
	}
	for _, c := range []struct {
		name, token string
		want        http.Header
		absent      []string
	}{
		{name: "a managed token goes through unchanged, with the caller's impersonation", token: "managed-token",
			want:   http.Header{"Authorization": {"Bearer managed-token"}, "Impersonate-User": {"someone"}},
			absent: []string{"Impersonate-Group"}},
		{name: "a hub token is replaced by impersonation of the hub user; the caller's is dropped", token: "hub-token",
			want:   http.Header{"Impersonate-User": {"cluster:hub:system:serviceaccount:hubns:hubsa"}, "Impersonate-Group": {"g1", "g2"}},
			absent: []string{"Authorization", "Impersonate-Extra-Scopes"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			got = nil
			r := httptest.NewRequest(http.MethodGet, "https://service-proxy/api/v1/namespaces/default", nil)
			r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{Subject: pkix.Name{CommonName: "proxy-client"}}}}}
			for k, v := range map[string]string{
				proxyv1alpha1.HeaderProto: "https", proxyv1alpha1.HeaderNamespace: "default",
				proxyv1alpha1.HeaderService: "kubernetes", proxyv1alpha1.HeaderPort: "443",
				"Authorization": "Bearer " + c.token, "Impersonate-User": "someone", "Impersonate-Extra-Scopes": "x",
			} {
				r.Header.Set(k, v)
			}
			sent := r.Header.Clone()
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			g.Expect(w.Code).To(Equal(http.StatusOK), w.Body.String())
			for k, v := range c.want {
				g.Expect(got.Values(k)).To(Equal(v), k)
			}
			for _, k := range append(c.absent, proxyv1alpha1.HeaderProto, proxyv1alpha1.HeaderNamespace, proxyv1alpha1.HeaderService, proxyv1alpha1.HeaderPort) {
				g.Expect(got).NotTo(HaveKey(k))
			}
			// The changes go to the forwarded copy, not the request the
			// handler was given.
			g.Expect(r.Header).To(Equal(sent))
		})
	}
}
