package authn

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// testIssuer is an OpenID Connect issuer on a local TLS server: discovery,
// a JWKS with one RSA key, and RS256-signed ID tokens.
type testIssuer struct {
	server *httptest.Server
	key    *rsa.PrivateKey
	// caPEM is the server certificate, which is its own CA.
	caPEM []byte
}

func newTestIssuer(t *testing.T) *testIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &testIssuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                iss.url(),
			"jwks_uri":                              iss.url() + "/keys",
			"authorization_endpoint":                iss.url() + "/auth",
			"response_types_supported":              []string{"id_token"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{{
			"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
			"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
			"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
		}}})
	})
	iss.server = httptest.NewTLSServer(mux)
	t.Cleanup(iss.server.Close)
	iss.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: iss.server.Certificate().Raw})
	return iss
}

func (i *testIssuer) url() string { return i.server.URL }

// token signs claims, completed with iss, aud "client", iat and a one-hour
// exp unless given.
func (i *testIssuer) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	full := map[string]any{"iss": i.url(), "aud": "client", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		full[k] = v
	}
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "kid": "k1", "typ": "JWT"})
	payload, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	signed := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, i.key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// readyOIDC returns the provider for config trusting iss, once its
// discovery is done.
func readyOIDC(t *testing.T, iss *testIssuer, config OIDCConfig) *OIDC {
	t.Helper()
	g := NewWithT(t)
	config.IssuerURL, config.ClientID = iss.url(), "client"
	if config.UsernameClaim == "" {
		config.UsernameClaim = "sub"
	}
	o, err := NewOIDC(config)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(o.UseCA(t.Context(), iss.caPEM)).To(Succeed())
	g.Eventually(func() error { return o.state.Load().token.HealthCheck() }).WithTimeout(10 * time.Second).Should(Succeed())
	return o
}

func TestOIDCAuthenticateToken(t *testing.T) {
	iss := newTestIssuer(t)
	other := newTestIssuer(t)
	tests := []struct {
		name   string
		config OIDCConfig
		token  func(t *testing.T) string
		// wantUser and wantGroups describe an acceptance; wantInvalid an
		// *InvalidTokenError containing it; neither a plain rejection.
		wantUser    string
		wantGroups  []string
		wantInvalid string
	}{
		{
			name:   "the default prefix is the issuer and #; the user is in system:authenticated",
			config: OIDCConfig{ReservedNamePrefixes: []string{"system:"}},
			token:  func(t *testing.T) string { return iss.token(t, map[string]any{"sub": "alice"}) },
			// Filled in below: the issuer's URL is only known now.
			wantUser:   "#alice",
			wantGroups: []string{"system:authenticated"},
		},
		{
			name:   "groups with their prefix",
			config: OIDCConfig{UsernamePrefix: "oidc:", GroupsClaim: "groups", GroupsPrefix: "oidc:"},
			token: func(t *testing.T) string {
				return iss.token(t, map[string]any{"sub": "alice", "groups": []string{"dev", "ops"}})
			},
			wantUser:   "oidc:alice",
			wantGroups: []string{"oidc:dev", "oidc:ops", "system:authenticated"},
		},
		{
			name:       "a groups claim that is one string",
			config:     OIDCConfig{UsernamePrefix: "-", GroupsClaim: "role"},
			token:      func(t *testing.T) string { return iss.token(t, map[string]any{"sub": "alice", "role": "admin"}) },
			wantUser:   "alice",
			wantGroups: []string{"admin", "system:authenticated"},
		},
		{
			name:   "the email claim gets no default prefix",
			config: OIDCConfig{UsernameClaim: "email"},
			token: func(t *testing.T) string {
				return iss.token(t, map[string]any{"email": "a@example.com", "email_verified": true})
			},
			wantUser:   "a@example.com",
			wantGroups: []string{"system:authenticated"},
		},
		{
			name:   "an unverified email is refused",
			config: OIDCConfig{UsernameClaim: "email"},
			token: func(t *testing.T) string {
				return iss.token(t, map[string]any{"email": "a@example.com", "email_verified": false})
			},
			wantInvalid: "email not verified",
		},
		{
			name:        "another audience",
			token:       func(t *testing.T) string { return iss.token(t, map[string]any{"sub": "alice", "aud": "someone-else"}) },
			wantInvalid: "expected audience",
		},
		{
			name: "an expired token",
			token: func(t *testing.T) string {
				return iss.token(t, map[string]any{"sub": "alice", "exp": time.Now().Add(-time.Minute).Unix()})
			},
			wantInvalid: "token is expired",
		},
		{
			name: "a token signed by another key",
			token: func(t *testing.T) string {
				forged := &testIssuer{server: iss.server, key: other.key}
				return forged.token(t, map[string]any{"sub": "alice"})
			},
			wantInvalid: "failed to verify signature",
		},
		{
			name:        "a user name with a reserved prefix",
			config:      OIDCConfig{UsernamePrefix: "-", ReservedNamePrefixes: []string{"system:"}},
			token:       func(t *testing.T) string { return iss.token(t, map[string]any{"sub": "system:admin"}) },
			wantInvalid: `the user name must not start with the reserved prefix "system:"`,
		},
		{
			name:   "a group with a reserved prefix",
			config: OIDCConfig{UsernamePrefix: "-", GroupsClaim: "groups", ReservedNamePrefixes: []string{"system:", "kube:"}},
			token: func(t *testing.T) string {
				return iss.token(t, map[string]any{"sub": "alice", "groups": []string{"dev", "kube:admins"}})
			},
			wantInvalid: `no group may start with the reserved prefix "kube:"`,
		},
		{
			name:       "no reserved prefixes: the check is off",
			config:     OIDCConfig{UsernamePrefix: "-"},
			token:      func(t *testing.T) string { return iss.token(t, map[string]any{"sub": "system:admin"}) },
			wantUser:   "system:admin",
			wantGroups: []string{"system:authenticated"},
		},
		{
			name:   "required claims present",
			config: OIDCConfig{UsernamePrefix: "-", RequiredClaims: map[string]string{"hd": "example.com", "tier": "gold"}},
			token: func(t *testing.T) string {
				return iss.token(t, map[string]any{"sub": "alice", "hd": "example.com", "tier": "gold"})
			},
			wantUser:   "alice",
			wantGroups: []string{"system:authenticated"},
		},
		{
			name:        "a required claim missing",
			config:      OIDCConfig{RequiredClaims: map[string]string{"hd": "example.com"}},
			token:       func(t *testing.T) string { return iss.token(t, map[string]any{"sub": "alice"}) },
			wantInvalid: "required claim hd not present",
		},
		{
			name:        "a required claim with another value",
			config:      OIDCConfig{RequiredClaims: map[string]string{"hd": "example.com"}},
			token:       func(t *testing.T) string { return iss.token(t, map[string]any{"sub": "alice", "hd": "evil.com"}) },
			wantInvalid: "required claim hd value does not match",
		},
		{
			name:  "a token of another issuer is rejected, not refused",
			token: func(t *testing.T) string { return other.token(t, map[string]any{"sub": "alice"}) },
		},
		{
			name:  "a token that is no JWT is rejected",
			token: func(*testing.T) string { return "not-a-jwt" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o := readyOIDC(t, iss, tt.config)
			resp, ok, err := o.AuthenticateToken(t.Context(), tt.token(t))
			switch {
			case tt.wantInvalid != "":
				var invalid *InvalidTokenError
				g.Expect(errors.As(err, &invalid)).To(BeTrue(), "error %v", err)
				g.Expect(invalid.Reason).To(ContainSubstring(tt.wantInvalid))
				g.Expect(ok).To(BeFalse())
			case tt.wantUser != "":
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(ok).To(BeTrue())
				want := tt.wantUser
				if want[0] == '#' {
					want = iss.url() + want
				}
				g.Expect(resp.User.GetName()).To(Equal(want))
				g.Expect(resp.User.GetGroups()).To(Equal(tt.wantGroups))
			default:
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(ok).To(BeFalse())
			}
		})
	}
}

func TestOIDCFailsClosed(t *testing.T) {
	g := NewWithT(t)
	iss := newTestIssuer(t)
	o, err := NewOIDC(OIDCConfig{IssuerURL: iss.url(), ClientID: "client", UsernameClaim: "sub", UsernamePrefix: "-"})
	g.Expect(err).NotTo(HaveOccurred())
	token := iss.token(t, map[string]any{"sub": "alice"})
	authenticate := func() error {
		_, _, err := o.AuthenticateToken(t.Context(), token)
		return err
	}
	expectOutage := func(substring string) {
		t.Helper()
		err := authenticate()
		var invalid *InvalidTokenError
		g.Expect(errors.As(err, &invalid)).To(BeFalse(), "an unusable issuer is an outage, not an invalid token: %v", err)
		g.Expect(err).To(MatchError(ContainSubstring(substring)))
	}

	expectOutage("is not loaded yet")

	g.Expect(o.UseCA(t.Context(), []byte("not a certificate"))).To(MatchError(errNoCertificate))
	expectOutage("holds no PEM certificate")

	// The host's roots do not trust the test server: discovery keeps
	// failing, and says why.
	g.Expect(o.UseCA(t.Context(), nil)).To(Succeed())
	g.Eventually(authenticate).WithTimeout(10 * time.Second).Should(MatchError(ContainSubstring("certificate")))
	expectOutage("is not usable yet")

	// A CA that works, without a restart.
	g.Expect(o.UseCA(t.Context(), iss.caPEM)).To(Succeed())
	g.Eventually(authenticate).WithTimeout(10 * time.Second).Should(Succeed())
	current := o.state.Load()
	g.Expect(o.UseCA(t.Context(), iss.caPEM)).To(Succeed())
	g.Expect(o.state.Load()).To(BeIdenticalTo(current), "the same CA keeps the running authenticator")

	o.Disable(errors.New("the CA ConfigMap ns/ca does not exist"))
	expectOutage("the CA ConfigMap ns/ca does not exist")

	// Tokens of other issuers are still rejected, so the chain can name
	// every provider it tried.
	_, ok, err := o.AuthenticateToken(t.Context(), "not-a-jwt")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ok).To(BeFalse())
}

func TestLoadOIDCCA(t *testing.T) {
	iss := newTestIssuer(t)
	tests := []struct {
		name      string
		configMap *corev1.ConfigMap
		wantErr   string
	}{
		{name: "missing", wantErr: "the CA ConfigMap ns/ca does not exist"},
		{name: "without the key", configMap: &corev1.ConfigMap{Data: map[string]string{"other": string(iss.caPEM)}}, wantErr: "the CA ConfigMap ns/ca has no key ca.crt (in data or binaryData)"},
		{name: "not a certificate", configMap: &corev1.ConfigMap{Data: map[string]string{"ca.crt": "garbage"}}, wantErr: "key ca.crt of the CA ConfigMap ns/ca: holds no PEM certificate"},
		{name: "in data", configMap: &corev1.ConfigMap{Data: map[string]string{"ca.crt": string(iss.caPEM)}}},
		{name: "in binaryData", configMap: &corev1.ConfigMap{BinaryData: map[string][]byte{"ca.crt": iss.caPEM}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			if tt.configMap != nil {
				tt.configMap.ObjectMeta = metav1.ObjectMeta{Namespace: "ns", Name: "ca"}
			}
			o, err := NewOIDC(OIDCConfig{IssuerURL: iss.url(), ClientID: "client", UsernameClaim: "sub"})
			g.Expect(err).NotTo(HaveOccurred())
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			err = loadOIDCCA(ctx, tt.configMap, klog.KRef("ns", "ca"), o)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(tt.wantErr))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(o.state.Load().ca).To(Equal(iss.caPEM))
		})
	}
}

func TestOIDCConfigValidate(t *testing.T) {
	valid := OIDCConfig{IssuerURL: "https://issuer.example.com", ClientID: "client", UsernameClaim: "sub", ReservedNamePrefixes: []string{`a"b\c`}}
	g := NewWithT(t)
	g.Expect(valid.Validate()).To(Succeed(), "prefixes are quoted into CEL")
	invalid := valid
	invalid.IssuerURL = "http://issuer.example.com"
	g.Expect(invalid.Validate()).To(MatchError(ContainSubstring("URL scheme must be https")))
	invalid = valid
	invalid.SigningAlgs = []string{"HS256"}
	g.Expect(invalid.Validate()).To(MatchError(ContainSubstring(`unsupported signing algorithm "HS256"`)))
}
