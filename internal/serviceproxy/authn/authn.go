// Package authn authenticates the bearer tokens the service-proxy receives
// for the kube-apiserver target: a chain of providers tried in order —
// the managed cluster's TokenReview, then the hub's, then an OpenID Connect
// issuer's ID tokens — where only a rejection falls through to the next
// provider and any other failure stops the chain, so an outage never turns
// into a different identity.
package authn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/token/cache"
	"k8s.io/apiserver/pkg/authentication/user"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
)

// HubUserPrefix starts the managed-cluster user name of a hub service
// account: cluster:hub:system:serviceaccount:<namespace>:<name>.
const HubUserPrefix = "cluster:hub:"

// serviceAccountPrefix starts every service account's user name.
const serviceAccountPrefix = "system:serviceaccount:"

// Provider is one way of authenticating a token.
type Provider struct {
	// Name names the provider in logs, metrics and errors: "managed",
	// "hub", "oidc".
	Name string
	// Token authenticates; (nil, false, nil) is a rejection.
	Token authenticator.Token
	// Impersonate is set when a request authenticated here is forwarded
	// with the service-proxy's own credentials, impersonating the user
	// (MapUser(user)); otherwise the client's token is forwarded unchanged.
	Impersonate bool
	// MapUser turns the provider's user into the managed cluster's; nil
	// keeps it.
	MapUser func(user.Info) user.Info
}

// Result is who a token belongs to.
type Result struct {
	// Provider is the provider that authenticated the token.
	Provider *Provider
	// User is the user as the managed cluster sees it (MapUser applied).
	User user.Info
}

// RejectedError is returned when every provider rejected the token.
type RejectedError struct {
	// Tried names the providers, in order.
	Tried []string
	// Reasons are the reasons providers gave (*InvalidTokenError), each
	// "<provider>: <reason>".
	Reasons []string
}

func (e *RejectedError) Error() string {
	msg := "the token was rejected by every authenticator tried: " + strings.Join(e.Tried, ", ")
	if len(e.Reasons) > 0 {
		msg += " (" + strings.Join(e.Reasons, "; ") + ")"
	}
	return msg
}

// Outcome is what one provider made of a token.
type Outcome string

// The outcomes of a provider, also the values of the service-proxy's
// authentication metric's result label.
const (
	// Authenticated: the provider knows the token's user.
	Authenticated Outcome = "authenticated"
	// Rejected: the provider does not accept the token; the chain tries the
	// next provider.
	Rejected Outcome = "rejected"
	// Failed: the provider could not decide (an outage); the chain stops.
	Failed Outcome = "error"
)

// Observer is told, in chain order, the outcome of each provider that was
// asked about a token.
type Observer func(provider string, outcome Outcome)

// Chain tries its providers in order.
type Chain []*Provider

// Authenticate returns the first provider's result that accepts token. A
// rejection (or an *InvalidTokenError) tries the next provider; any other
// error stops at once and is returned naming the provider. When all reject,
// the error is a *RejectedError. observe, when not nil, is told each asked
// provider's outcome.
func (c Chain) Authenticate(ctx context.Context, token string, observe Observer) (*Result, error) {
	if observe == nil {
		observe = func(string, Outcome) {}
	}
	var tried, reasons []string
	for _, p := range c {
		resp, ok, err := p.Token.AuthenticateToken(ctx, token)
		var invalid *InvalidTokenError
		switch {
		case errors.As(err, &invalid):
			reasons = append(reasons, p.Name+": "+invalid.Reason)
			ok = false
		case err != nil:
			observe(p.Name, Failed)
			return nil, fmt.Errorf("the %s authenticator failed: %w", p.Name, err)
		}
		tried = append(tried, p.Name)
		if !ok || resp == nil || resp.User == nil {
			observe(p.Name, Rejected)
			continue
		}
		observe(p.Name, Authenticated)
		u := resp.User
		if p.MapUser != nil {
			u = p.MapUser(u)
		}
		return &Result{Provider: p, User: u}, nil
	}
	return nil, &RejectedError{Tried: tried, Reasons: reasons}
}

// Cached wraps token with a cache of its results (successes and rejections,
// never errors) for ttl; a ttl of zero returns token unchanged.
func Cached(token authenticator.Token, ttl time.Duration) authenticator.Token {
	if ttl <= 0 {
		return token
	}
	return cache.New(token, false, ttl, ttl)
}

// TokenReview authenticates tokens with a kube-apiserver's TokenReview API.
type TokenReview struct {
	// Client creates TokenReviews.
	Client authenticationv1client.TokenReviewInterface
}

// AuthenticateToken asks the kube-apiserver who token belongs to. A review
// that says "not authenticated" is a rejection; a failed request is an
// error.
func (t *TokenReview) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	review, err := t.Client.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return nil, false, fmt.Errorf("failed to create a TokenReview: %w", err)
	}
	if !review.Status.Authenticated {
		return nil, false, nil
	}
	if review.Status.Error != "" && review.Status.User.Username == "" {
		return nil, false, errors.New("the TokenReview failed: " + review.Status.Error)
	}
	extra := map[string][]string{}
	for k, v := range review.Status.User.Extra {
		extra[k] = v
	}
	return &authenticator.Response{User: &user.DefaultInfo{
		Name:   review.Status.User.Username,
		UID:    review.Status.User.UID,
		Groups: review.Status.User.Groups,
		Extra:  extra,
	}}, true, nil
}

// HubUser maps a hub user to the managed cluster's: hub service accounts get
// HubUserPrefix, so they never pass for the managed cluster's own service
// accounts; other users and every group keep their names.
func HubUser(u user.Info) user.Info {
	name := u.GetName()
	if strings.HasPrefix(name, serviceAccountPrefix) {
		name = HubUserPrefix + name
	}
	return &user.DefaultInfo{Name: name, UID: u.GetUID(), Groups: u.GetGroups(), Extra: u.GetExtra()}
}
