package authn

import (
	"context"
	"errors"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// fixed answers every token the same way and counts its calls.
type fixed struct {
	user  user.Info
	err   error
	calls int
}

func (f *fixed) AuthenticateToken(context.Context, string) (*authenticator.Response, bool, error) {
	f.calls++
	if f.err != nil || f.user == nil {
		return nil, false, f.err
	}
	return &authenticator.Response{User: f.user}, true, nil
}

func TestChain(t *testing.T) {
	alice := &user.DefaultInfo{Name: "alice"}
	hubSA := &user.DefaultInfo{Name: "system:serviceaccount:ns:sa", Groups: []string{"system:serviceaccounts"}}
	outage := errors.New("connection refused")
	tests := []struct {
		name          string
		managed, hub  *fixed
		wantProvider  string
		wantUser      string
		wantRejected  []string
		wantErr       string
		wantHubCalled bool
		// wantOutcomes are the observed outcomes, "<provider>=<outcome>".
		wantOutcomes []string
	}{
		{name: "the managed cluster knows the token", managed: &fixed{user: alice}, hub: &fixed{user: hubSA}, wantProvider: "managed", wantUser: "alice",
			wantOutcomes: []string{"managed=authenticated"}},
		{name: "a managed rejection falls through to the hub", managed: &fixed{}, hub: &fixed{user: hubSA}, wantProvider: "hub", wantUser: "cluster:hub:system:serviceaccount:ns:sa", wantHubCalled: true,
			wantOutcomes: []string{"managed=rejected", "hub=authenticated"}},
		{name: "both reject", managed: &fixed{}, hub: &fixed{}, wantRejected: []string{"managed", "hub"}, wantHubCalled: true,
			wantOutcomes: []string{"managed=rejected", "hub=rejected"}},
		{name: "a managed outage stops the chain", managed: &fixed{err: outage}, hub: &fixed{user: hubSA}, wantErr: "the managed authenticator failed: connection refused",
			wantOutcomes: []string{"managed=error"}},
		{name: "a hub outage after a managed rejection", managed: &fixed{}, hub: &fixed{err: outage}, wantErr: "the hub authenticator failed: connection refused", wantHubCalled: true,
			wantOutcomes: []string{"managed=rejected", "hub=error"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			chain := Chain{
				{Name: "managed", Token: tt.managed},
				{Name: "hub", Token: tt.hub, Impersonate: true, MapUser: HubUser},
			}
			var outcomes []string
			res, err := chain.Authenticate(t.Context(), "token", func(provider string, outcome Outcome) {
				outcomes = append(outcomes, provider+"="+string(outcome))
			})
			g.Expect(outcomes).To(Equal(tt.wantOutcomes))
			hubCalled := tt.hub.calls > 0
			g.Expect(hubCalled).To(Equal(tt.wantHubCalled), "whether the hub was asked")
			switch {
			case tt.wantErr != "":
				g.Expect(err).To(MatchError(tt.wantErr))
				var rejected *RejectedError
				g.Expect(errors.As(err, &rejected)).To(BeFalse(), "an outage is not a rejection")
			case tt.wantRejected != nil:
				g.Expect(err).To(MatchError(&RejectedError{Tried: tt.wantRejected}))
			default:
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(res.Provider.Name).To(Equal(tt.wantProvider))
				g.Expect(res.User.GetName()).To(Equal(tt.wantUser))
			}
		})
	}
}

func TestHubUser(t *testing.T) {
	g := NewWithT(t)
	sa := HubUser(&user.DefaultInfo{Name: "system:serviceaccount:ns:sa", Groups: []string{"system:serviceaccounts:ns"}})
	g.Expect(sa.GetName()).To(Equal("cluster:hub:system:serviceaccount:ns:sa"))
	g.Expect(sa.GetGroups()).To(Equal([]string{"system:serviceaccounts:ns"}))
	g.Expect(HubUser(&user.DefaultInfo{Name: "alice"}).GetName()).To(Equal("alice"), "hub users keep their names")
}

func TestCached(t *testing.T) {
	g := NewWithT(t)
	f := &fixed{user: &user.DefaultInfo{Name: "alice"}}
	cached := Cached(f, 10*time.Second)
	for range 3 {
		_, ok, err := cached.AuthenticateToken(t.Context(), "token")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(ok).To(BeTrue())
	}
	g.Expect(f.calls).To(Equal(1))
	g.Expect(Cached(f, 0)).To(BeIdenticalTo(f), "a TTL of 0 disables the cache")
}

// refusing refuses every token with an *InvalidTokenError.
type refusing struct{ reason string }

func (r refusing) AuthenticateToken(context.Context, string) (*authenticator.Response, bool, error) {
	return nil, false, &InvalidTokenError{Reason: r.reason}
}

func TestChainInvalidToken(t *testing.T) {
	g := NewWithT(t)
	alice := &user.DefaultInfo{Name: "alice"}
	chain := Chain{
		{Name: "managed", Token: &fixed{}},
		{Name: "oidc", Token: refusing{reason: "verify token: token is expired"}, Impersonate: true},
	}
	var outcomes []Outcome
	_, err := chain.Authenticate(t.Context(), "token", func(_ string, outcome Outcome) { outcomes = append(outcomes, outcome) })
	g.Expect(outcomes).To(Equal([]Outcome{Rejected, Rejected}), "an invalid token is a rejection")
	g.Expect(err).To(MatchError(&RejectedError{Tried: []string{"managed", "oidc"}, Reasons: []string{"oidc: verify token: token is expired"}}))
	g.Expect(err).To(MatchError("the token was rejected by every authenticator tried: managed, oidc (oidc: verify token: token is expired)"))

	// An invalid token for one provider falls through to the next.
	next := &fixed{user: alice}
	chain = Chain{{Name: "oidc", Token: refusing{reason: "expected audience"}}, {Name: "last", Token: next}}
	res, err := chain.Authenticate(t.Context(), "token", nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Provider.Name).To(Equal("last"))
}
