package serviceproxy

import (
	"flag"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/spf13/pflag"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// parse returns the options after args, with the flags every run needs.
func parse(t *testing.T, podNamespace string, args ...string) (*Options, error) {
	t.Helper()
	o := NewOptions()
	fs := pflag.NewFlagSet("service-proxy", pflag.ContinueOnError)
	o.AddFlags(fs)
	base := []string{"--cert=tls.crt", "--key=tls.key", "--hub-kubeconfig=hub.kubeconfig"}
	if err := fs.Parse(append(base, args...)); err != nil {
		return nil, err
	}
	o.PodNamespace = podNamespace
	return o, nil
}

const issuer = "https://issuer.example.com"

func TestValidateOIDC(t *testing.T) {
	tests := []struct {
		name         string
		args         []string
		podNamespace string
		// wantParseErr is a flag-parsing error; wantErrs the errors of
		// Validate (each a substring); neither: valid.
		wantParseErr string
		wantErrs     []string
	}{
		{name: "OIDC off"},
		{name: "issuer and client ID", args: []string{"--oidc-issuer-url=" + issuer, "--oidc-client-id=cluster-proxy"}},
		{name: "every flag", podNamespace: "agent", args: []string{
			"--oidc-issuer-url=" + issuer + "/realms/r", "--oidc-client-id=cluster-proxy",
			"--oidc-username-claim=email", "--oidc-username-prefix=-", "--oidc-groups-claim=groups", "--oidc-groups-prefix=oidc:",
			"--oidc-reserved-name-prefixes=system:,kube:", "--oidc-signing-algs=RS256,ES256",
			"--oidc-required-claim=hd=example.com", "--oidc-required-claim=tier=a=b", "--oidc-ca-configmap=oidc-ca",
		}},
		{name: "an empty list of reserved prefixes turns the check off", args: []string{"--oidc-issuer-url=" + issuer, "--oidc-client-id=c", "--oidc-reserved-name-prefixes="}},
		{name: "issuer without client ID", args: []string{"--oidc-issuer-url=" + issuer}, wantErrs: []string{"--oidc-issuer-url needs --oidc-client-id: set both or neither"}},
		{name: "client ID without issuer", args: []string{"--oidc-client-id=c"}, wantErrs: []string{"--oidc-client-id needs --oidc-issuer-url: set both or neither"}},
		{name: "an http issuer", args: []string{"--oidc-issuer-url=http://issuer.example.com", "--oidc-client-id=c"}, wantErrs: []string{`invalid --oidc-issuer-url "http://issuer.example.com": must be an https URL`}},
		{name: "an issuer with a query", args: []string{"--oidc-issuer-url=" + issuer + "?a=b", "--oidc-client-id=c"}, wantErrs: []string{"invalid --oidc-issuer-url"}},
		{name: "an issuer without a host", args: []string{"--oidc-issuer-url=https:///path", "--oidc-client-id=c"}, wantErrs: []string{"invalid --oidc-issuer-url"}},
		{name: "an empty username claim", args: []string{"--oidc-issuer-url=" + issuer, "--oidc-client-id=c", "--oidc-username-claim="}, wantErrs: []string{"--oidc-username-claim must not be empty"}},
		{name: "an empty reserved prefix", args: []string{"--oidc-issuer-url=" + issuer, "--oidc-client-id=c", "--oidc-reserved-name-prefixes=system:,"}, wantErrs: []string{"invalid --oidc-reserved-name-prefixes: element 2 is empty (pass an empty list to turn the check off)"}},
		{name: "an unsupported algorithm", args: []string{"--oidc-issuer-url=" + issuer, "--oidc-client-id=c", "--oidc-signing-algs=RS256,HS256"}, wantErrs: []string{`invalid --oidc-signing-algs "HS256": supported are ES256, ES384, ES512, PS256, PS384, PS512, RS256, RS384, RS512`}},
		{name: "no algorithm", args: []string{"--oidc-issuer-url=" + issuer, "--oidc-client-id=c", "--oidc-signing-algs="}, wantErrs: []string{"--oidc-signing-algs must not be empty"}},
		{name: "a required claim without =", args: []string{"--oidc-required-claim=hd"}, wantParseErr: `invalid argument "hd" for "--oidc-required-claim" flag: malformed pair, expect string=string`},
		{name: "a required claim without a name", args: []string{"--oidc-issuer-url=" + issuer, "--oidc-client-id=c", "--oidc-required-claim==v"}, wantErrs: []string{"invalid --oidc-required-claim: the claim name is empty"}},
		{name: "a CA ConfigMap without $POD_NAMESPACE", args: []string{"--oidc-issuer-url=" + issuer, "--oidc-client-id=c", "--oidc-ca-configmap=oidc-ca"}, wantErrs: []string{"--oidc-ca-configmap needs the environment variable POD_NAMESPACE"}},
		{name: "a CA ConfigMap name that is no name", podNamespace: "agent", args: []string{"--oidc-issuer-url=" + issuer, "--oidc-client-id=c", "--oidc-ca-configmap=Not_A_Name"}, wantErrs: []string{`invalid --oidc-ca-configmap "Not_A_Name"`}},
		{name: "every problem at once", args: []string{"--oidc-issuer-url=http://x", "--oidc-username-claim=", "--oidc-reserved-name-prefixes=,"}, wantErrs: []string{
			"--oidc-issuer-url needs --oidc-client-id", "invalid --oidc-issuer-url", "--oidc-username-claim must not be empty",
			"element 1 is empty", "element 2 is empty",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o, err := parse(t, tt.podNamespace, tt.args...)
			if tt.wantParseErr != "" {
				g.Expect(err).To(MatchError(tt.wantParseErr))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			err = o.Validate()
			if len(tt.wantErrs) == 0 {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(HaveOccurred())
			for _, want := range tt.wantErrs {
				g.Expect(err.Error()).To(ContainSubstring(want))
			}
		})
	}
}

func TestOIDCFlagsToJWTAuthenticator(t *testing.T) {
	notSystem := apiserver.UserValidationRule{Expression: `!user.username.startsWith("system:")`, Message: `the user name must not start with the reserved prefix "system:"`}
	noSystemGroup := apiserver.UserValidationRule{Expression: `user.groups.all(group, !group.startsWith("system:"))`, Message: `no group may start with the reserved prefix "system:"`}
	tests := []struct {
		name string
		args []string
		want apiserver.JWTAuthenticator
	}{
		{
			name: "defaults: sub, prefixed with the issuer and #, system: reserved",
			want: apiserver.JWTAuthenticator{
				Issuer:              apiserver.Issuer{URL: issuer, Audiences: []string{"cluster-proxy"}},
				ClaimMappings:       apiserver.ClaimMappings{Username: apiserver.PrefixedClaimOrExpression{Claim: "sub", Prefix: ptr.To(issuer + "#")}},
				UserValidationRules: []apiserver.UserValidationRule{notSystem, noSystemGroup},
			},
		},
		{
			name: "the email claim has no default prefix",
			args: []string{"--oidc-username-claim=email"},
			want: apiserver.JWTAuthenticator{
				Issuer:              apiserver.Issuer{URL: issuer, Audiences: []string{"cluster-proxy"}},
				ClaimMappings:       apiserver.ClaimMappings{Username: apiserver.PrefixedClaimOrExpression{Claim: "email", Prefix: ptr.To("")}},
				UserValidationRules: []apiserver.UserValidationRule{notSystem, noSystemGroup},
			},
		},
		{
			name: "- turns the prefix off; an empty list the reserved prefixes",
			args: []string{"--oidc-username-prefix=-", "--oidc-reserved-name-prefixes="},
			want: apiserver.JWTAuthenticator{
				Issuer:        apiserver.Issuer{URL: issuer, Audiences: []string{"cluster-proxy"}},
				ClaimMappings: apiserver.ClaimMappings{Username: apiserver.PrefixedClaimOrExpression{Claim: "sub", Prefix: ptr.To("")}},
			},
		},
		{
			name: "groups, prefixes, required claims in claim order, each reserved prefix once",
			args: []string{
				"--oidc-username-claim=preferred_username", "--oidc-username-prefix=oidc:",
				"--oidc-groups-claim=groups", "--oidc-groups-prefix=oidc:",
				"--oidc-required-claim=tier=gold", "--oidc-required-claim=hd=example.com",
				"--oidc-reserved-name-prefixes=system:,kube:,system:",
			},
			want: apiserver.JWTAuthenticator{
				Issuer: apiserver.Issuer{URL: issuer, Audiences: []string{"cluster-proxy"}},
				ClaimMappings: apiserver.ClaimMappings{
					Username: apiserver.PrefixedClaimOrExpression{Claim: "preferred_username", Prefix: ptr.To("oidc:")},
					Groups:   apiserver.PrefixedClaimOrExpression{Claim: "groups", Prefix: ptr.To("oidc:")},
				},
				ClaimValidationRules: []apiserver.ClaimValidationRule{{Claim: "hd", RequiredValue: "example.com"}, {Claim: "tier", RequiredValue: "gold"}},
				UserValidationRules: []apiserver.UserValidationRule{
					notSystem, noSystemGroup,
					{Expression: `!user.username.startsWith("kube:")`, Message: `the user name must not start with the reserved prefix "kube:"`},
					{Expression: `user.groups.all(group, !group.startsWith("kube:"))`, Message: `no group may start with the reserved prefix "kube:"`},
				},
			},
		},
		{
			name: "a groups prefix without a groups claim maps no groups",
			args: []string{"--oidc-groups-prefix=oidc:", "--oidc-reserved-name-prefixes="},
			want: apiserver.JWTAuthenticator{
				Issuer:        apiserver.Issuer{URL: issuer, Audiences: []string{"cluster-proxy"}},
				ClaimMappings: apiserver.ClaimMappings{Username: apiserver.PrefixedClaimOrExpression{Claim: "sub", Prefix: ptr.To(issuer + "#")}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			o, err := parse(t, "", append([]string{"--oidc-issuer-url=" + issuer, "--oidc-client-id=cluster-proxy"}, tt.args...)...)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(o.Validate()).To(Succeed())
			config := o.oidcConfig()
			g.Expect(config.JWTAuthenticator()).To(Equal(tt.want))
		})
	}
}

// TestValidateVerbosity: above --v=7 client-go logs request bodies, which
// for the TokenReviews carry callers' tokens: refused, naming the flag.
func TestValidateVerbosity(t *testing.T) {
	g := NewWithT(t)
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	before := fs.Lookup("v").Value.String()
	t.Cleanup(func() { _ = fs.Set("v", before) })

	o, err := parse(t, "")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fs.Set("v", "7")).To(Succeed())
	g.Expect(o.Validate()).To(Succeed())
	g.Expect(fs.Set("v", "8")).To(Succeed())
	g.Expect(o.Validate()).To(MatchError(ContainSubstring("--v above 7 is refused")))
}

func TestValidateMetricsBindAddress(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		wantErr string
	}{
		{args: nil},
		{args: []string{"--metrics-bind-address=0"}},
		{args: []string{"--metrics-bind-address=127.0.0.1:9100"}},
		{args: []string{"--metrics-bind-address=9100"}, wantErr: `invalid --metrics-bind-address "9100"`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			g := NewWithT(t)
			o, err := parse(t, "", tt.args...)
			g.Expect(err).NotTo(HaveOccurred())
			if tt.wantErr == "" {
				g.Expect(o.Validate()).To(Succeed())
				return
			}
			g.Expect(o.Validate()).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
	g := NewWithT(t)
	g.Expect(NewOptions().MetricsBindAddress).To(Equal(":8001"), "the port after the health port")
}
