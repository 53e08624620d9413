package authn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apiserver/pkg/apis/apiserver"
	apiservervalidation "k8s.io/apiserver/pkg/apis/apiserver/validation"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	authenticationcel "k8s.io/apiserver/pkg/authentication/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/oidc"
)

const (
	// OIDCUsernamePrefixNone as --oidc-username-prefix turns the username
	// prefix off (the kube-apiserver's convention).
	OIDCUsernamePrefixNone = "-"
	// oidcHTTPTimeout bounds every request to the issuer (discovery, keys).
	oidcHTTPTimeout = 15 * time.Second
	// emailClaim is the one username claim that gets no default prefix.
	emailClaim = "email"
)

// OIDCConfig says which ID tokens of an OpenID Connect issuer are accepted
// and who they belong to; its fields are the service-proxy's --oidc-* flags,
// which follow the kube-apiserver's.
type OIDCConfig struct {
	// IssuerURL is the issuer: the tokens' "iss" claim, and where discovery
	// (/.well-known/openid-configuration) is fetched. It must be https.
	IssuerURL string
	// ClientID is the audience the tokens must be issued for.
	ClientID string
	// UsernameClaim holds the user name.
	UsernameClaim string
	// UsernamePrefix is prepended to the user name. Empty means the
	// kube-apiserver's default — "<issuer>#" unless the claim is "email" —
	// and OIDCUsernamePrefixNone means no prefix.
	UsernamePrefix string
	// GroupsClaim holds the groups (a string or a list); empty means none.
	GroupsClaim string
	// GroupsPrefix is prepended to every group.
	GroupsPrefix string
	// ReservedNamePrefixes are prefixes no user name or group may start
	// with after the prefixes above are applied (system:, so a token cannot
	// pass for a Kubernetes identity); empty turns the check off.
	ReservedNamePrefixes []string
	// SigningAlgs are the accepted signature algorithms; empty means RS256.
	SigningAlgs []string
	// RequiredClaims are claims every token must carry with exactly these
	// (string) values.
	RequiredClaims map[string]string
}

// EffectiveUsernamePrefix is the prefix user names get, with the
// kube-apiserver's defaulting applied.
func (c *OIDCConfig) EffectiveUsernamePrefix() string {
	switch c.UsernamePrefix {
	case OIDCUsernamePrefixNone:
		return ""
	case "":
		if c.UsernameClaim == emailClaim {
			return ""
		}
		return c.IssuerURL + "#"
	default:
		return c.UsernamePrefix
	}
}

// JWTAuthenticator is the configuration of the kube-apiserver's JWT
// authenticator that implements c: issuer and audience, claim mappings,
// required claims as claim validation rules (sorted by claim), and reserved
// prefixes as user validation rules (CEL) on the user name and every group.
func (c *OIDCConfig) JWTAuthenticator() apiserver.JWTAuthenticator {
	usernamePrefix := c.EffectiveUsernamePrefix()
	jwt := apiserver.JWTAuthenticator{
		Issuer: apiserver.Issuer{URL: c.IssuerURL, Audiences: []string{c.ClientID}},
		ClaimMappings: apiserver.ClaimMappings{
			Username: apiserver.PrefixedClaimOrExpression{Claim: c.UsernameClaim, Prefix: &usernamePrefix},
		},
	}
	if c.GroupsClaim != "" {
		groupsPrefix := c.GroupsPrefix
		jwt.ClaimMappings.Groups = apiserver.PrefixedClaimOrExpression{Claim: c.GroupsClaim, Prefix: &groupsPrefix}
	}
	claims := make([]string, 0, len(c.RequiredClaims))
	for claim := range c.RequiredClaims {
		claims = append(claims, claim)
	}
	sort.Strings(claims)
	for _, claim := range claims {
		jwt.ClaimValidationRules = append(jwt.ClaimValidationRules, apiserver.ClaimValidationRule{Claim: claim, RequiredValue: c.RequiredClaims[claim]})
	}
	var seen []string
	for _, prefix := range c.ReservedNamePrefixes {
		if slices.Contains(seen, prefix) {
			continue
		}
		seen = append(seen, prefix)
		literal := strconv.Quote(prefix)
		jwt.UserValidationRules = append(jwt.UserValidationRules,
			apiserver.UserValidationRule{
				Expression: "!user.username.startsWith(" + literal + ")",
				Message:    "the user name must not start with the reserved prefix " + literal,
			},
			apiserver.UserValidationRule{
				Expression: "user.groups.all(group, !group.startsWith(" + literal + "))",
				Message:    "no group may start with the reserved prefix " + literal,
			})
	}
	return jwt
}

// Validate compiles the configuration as the JWT authenticator would and
// reports what it refuses (the field names are the authenticator's).
func (c *OIDCConfig) Validate() error {
	_, errs := apiservervalidation.CompileAndValidateJWTAuthenticator(authenticationcel.NewDefaultCompiler(), c.JWTAuthenticator(), nil)
	if err := errs.ToAggregate(); err != nil {
		return fmt.Errorf("the OIDC configuration is invalid: %w", err)
	}
	for _, alg := range c.SigningAlgs {
		if !slices.Contains(oidc.AllValidSigningAlgorithms(), alg) {
			return fmt.Errorf("the OIDC configuration is invalid: unsupported signing algorithm %q (supported: %s)", alg, strings.Join(oidc.AllValidSigningAlgorithms(), ", "))
		}
	}
	return nil
}

// InvalidTokenError is a provider's refusal of a token with a reason worth
// telling the client (an expired ID token, another audience, a reserved
// user name). The chain treats it as a rejection: the next provider is
// tried, and the reason ends up in the *RejectedError.
type InvalidTokenError struct {
	// Reason says what is wrong with the token; it never contains the token.
	Reason string
}

func (e *InvalidTokenError) Error() string { return e.Reason }

// OIDC authenticates the ID tokens of one OpenID Connect issuer with the
// kube-apiserver's JWT authenticator. Tokens of other issuers (and tokens
// that are no JWT) are rejected, so the chain can report them as unknown.
// Its trust in the issuer can change at run time (UseCA) and it can be
// switched off (Disable): while it has no usable issuer it fails closed —
// tokens of its issuer get an error naming the reason.
type OIDC struct {
	config   OIDCConfig
	compiler authenticationcel.Compiler
	// mu serialises UseCA and Disable; readers only load state.
	mu    sync.Mutex
	state atomic.Pointer[oidcState]
}

// oidcState is what OIDC currently authenticates with: a JWT authenticator,
// or the reason there is none.
type oidcState struct {
	token oidc.AuthenticatorTokenWithHealthCheck
	// ca is the PEM the authenticator trusts (nil: the host's roots).
	ca []byte
	// cancel stops the authenticator's background discovery.
	cancel context.CancelFunc
	err    error
}

// NewOIDC returns the provider for config, which must be valid. It fails
// closed until UseCA gives it the issuer's CA.
func NewOIDC(config OIDCConfig) (*OIDC, error) {
	if err := config.Validate(); err != nil {
		return nil, err
	}
	o := &OIDC{config: config, compiler: authenticationcel.NewDefaultCompiler()}
	o.state.Store(&oidcState{err: fmt.Errorf("the CA of OIDC issuer %s is not loaded yet", config.IssuerURL)})
	return o, nil
}

// UseCA (re)creates the authenticator trusting the PEM certificates in ca
// (nil trusts the host's roots) and starts its discovery of the issuer in
// the background, bounded by ctx; the previous authenticator is stopped.
// Calling it again with the same CA keeps the running authenticator. When
// ca holds no certificate, the provider fails closed and the error says
// why.
func (o *OIDC) UseCA(ctx context.Context, ca []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if current := o.state.Load(); current.token != nil && (current.ca == nil) == (ca == nil) && string(current.ca) == string(ca) {
		return nil
	}
	var roots *x509.CertPool
	if ca != nil {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(ca) {
			o.replace(&oidcState{err: errNoCertificate})
			return errNoCertificate
		}
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          10,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	lifecycle, cancel := context.WithCancel(ctx)
	token, err := oidc.New(lifecycle, oidc.Options{
		JWTAuthenticator:     o.config.JWTAuthenticator(),
		Client:               &http.Client{Transport: transport, Timeout: oidcHTTPTimeout},
		Compiler:             o.compiler,
		SupportedSigningAlgs: o.config.SigningAlgs,
	})
	if err != nil {
		cancel()
		err = fmt.Errorf("failed to create the OIDC authenticator: %w", err)
		o.replace(&oidcState{err: err})
		return err
	}
	o.replace(&oidcState{token: token, ca: ca, cancel: cancel})
	return nil
}

// Disable makes the provider fail closed, naming reason, until the next
// UseCA.
func (o *OIDC) Disable(reason error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.replace(&oidcState{err: reason})
}

// replace installs next and stops the authenticator it replaces. o.mu must
// be held.
func (o *OIDC) replace(next *oidcState) {
	if previous := o.state.Swap(next); previous != nil && previous.cancel != nil {
		previous.cancel()
	}
}

// AuthenticateToken verifies an ID token of the issuer. A token that is no
// JWT of this issuer is rejected; an invalid one (signature, expiry,
// audience, required claims, reserved names) is an *InvalidTokenError;
// while the issuer is unusable (CA missing, discovery not done) a token of
// it gets an error naming why. The user is in system:authenticated.
func (o *OIDC) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	if !o.issuedBy(token) {
		return nil, false, nil
	}
	state := o.state.Load()
	if state.token == nil {
		return nil, false, fmt.Errorf("OIDC issuer %s is not usable: %w", o.config.IssuerURL, state.err)
	}
	if err := state.token.HealthCheck(); err != nil {
		return nil, false, fmt.Errorf("OIDC issuer %s is not usable yet: %w", o.config.IssuerURL, err)
	}
	resp, ok, err := state.token.AuthenticateToken(ctx, token)
	if err != nil {
		return nil, false, &InvalidTokenError{Reason: strings.TrimPrefix(err.Error(), "oidc: ")}
	}
	if !ok || resp == nil || resp.User == nil {
		return nil, false, nil
	}
	groups := resp.User.GetGroups()
	if !slices.Contains(groups, user.AllAuthenticated) {
		groups = append(slices.Clone(groups), user.AllAuthenticated)
	}
	return &authenticator.Response{
		Audiences: resp.Audiences,
		User:      &user.DefaultInfo{Name: resp.User.GetName(), UID: resp.User.GetUID(), Groups: groups, Extra: resp.User.GetExtra()},
	}, true, nil
}

// issuedBy says whether token claims (unverified) to be of o's issuer.
func (o *OIDC) issuedBy(token string) bool {
	issuer, err := untrustedIssuer(token)
	return err == nil && issuer == o.config.IssuerURL
}

// untrustedIssuer returns the unverified "iss" claim of a compact JWT, as
// the JWT authenticator reads it to pick the authenticator.
func untrustedIssuer(token string) (string, error) {
	if strings.HasPrefix(strings.TrimSpace(token), "{") {
		return "", errors.New("the token is not a compact JWT")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", errors.New("the token is not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("failed to decode the token's payload: %w", err)
	}
	var claims struct {
		Issuer string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", fmt.Errorf("failed to decode the token's claims: %w", err)
	}
	// The JWT authenticator coalesces Google's legacy issuer the same way.
	if claims.Issuer == "accounts.google.com" {
		return "https://accounts.google.com", nil
	}
	return claims.Issuer, nil
}
