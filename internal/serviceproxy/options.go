package serviceproxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/oidc"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/klog/v2"

	"open-cluster-management.io/cluster-proxy/internal/command"
	"open-cluster-management.io/cluster-proxy/internal/httpserve"
	"open-cluster-management.io/cluster-proxy/internal/kubeconfig"
	"open-cluster-management.io/cluster-proxy/internal/serviceproxy/authn"
	"open-cluster-management.io/cluster-proxy/internal/tlsfiles"
	proxyv1alpha1 "open-cluster-management.io/cluster-proxy/pkg/apis/proxy/v1alpha1"
)

// maxVerbosity is the highest --v the service-proxy runs at.
const maxVerbosity = 7

// DefaultMetricsBindAddress is where the service-proxy serves /metrics by
// default: the port after its health port.
const DefaultMetricsBindAddress = ":8001"

// Options are the settings of `cluster-proxy service-proxy`, with the
// existing addon's flag names and defaults where it has them.
type Options struct {
	// CertFile and KeyFile are the serving certificate and key.
	CertFile, KeyFile string
	// ClientCAFile holds the cluster-proxy CA bundle (during a CA
	// rotation, more than one CA): only callers presenting a client
	// certificate one of them issued are served. These three files are
	// re-read when they change, so a renewal or a CA rotation needs no
	// restart.
	ClientCAFile string
	// AdditionalServiceCAFile is extra trust for Service targets; a missing
	// file is tolerated.
	AdditionalServiceCAFile string
	// BindAddress serves HTTPS; HealthBindAddress serves /healthz and
	// /readyz; MetricsBindAddress serves /metrics ("0" disables).
	BindAddress, HealthBindAddress, MetricsBindAddress string
	// Kubeconfig reaches the managed cluster; empty means in-cluster.
	Kubeconfig string
	// HubKubeconfig reaches the hub, for hub TokenReviews.
	HubKubeconfig string
	// EnableImpersonation authenticates hub tokens and forwards their
	// requests impersonating the hub user.
	EnableImpersonation bool
	// TokenReviewCacheTTL caches review results; 0 disables the cache.
	TokenReviewCacheTTL time.Duration
	// MaxIdleConns, IdleConnTimeout, TLSHandshakeTimeout and
	// ExpectContinueTimeout tune the outbound transport.
	MaxIdleConns                                                int
	IdleConnTimeout, TLSHandshakeTimeout, ExpectContinueTimeout time.Duration
	// DrainTimeout bounds the graceful shutdown; MinDrainDuration is how
	// long the service-proxy stays up not ready before it stops accepting.
	DrainTimeout, MinDrainDuration time.Duration
	// KubeAPIQPS and KubeAPIBurst limit the TokenReview clients.
	KubeAPIQPS   float32
	KubeAPIBurst int

	// OIDCIssuerURL turns on the OpenID Connect provider, third in the
	// chain: ID tokens of this issuer for OIDCClientID are accepted, and
	// their requests forwarded impersonating the user. The other OIDC*
	// fields are the kube-apiserver's --oidc-* flags (authn.OIDCConfig).
	OIDCIssuerURL, OIDCClientID           string
	OIDCUsernameClaim, OIDCUsernamePrefix string
	OIDCGroupsClaim, OIDCGroupsPrefix     string
	OIDCReservedNamePrefixes              []string
	OIDCSigningAlgs                       []string
	OIDCRequiredClaims                    map[string]string
	// OIDCCAConfigMap names the ConfigMap in PodNamespace whose key ca.crt
	// is the issuer's CA, reloaded when it changes; empty trusts the host's
	// roots.
	OIDCCAConfigMap string
	// PodNamespace is the service-proxy's namespace (from $POD_NAMESPACE).
	PodNamespace string
}

// NewOptions returns the existing addon's service-proxy defaults.
func NewOptions() *Options {
	return &Options{
		ClientCAFile:          "/etc/ca/ca.crt",
		BindAddress:           fmt.Sprintf(":%d", proxyv1alpha1.ServiceProxyPort),
		HealthBindAddress:     ":8000",
		MetricsBindAddress:    DefaultMetricsBindAddress,
		EnableImpersonation:   true,
		TokenReviewCacheTTL:   10 * time.Second,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DrainTimeout:          30 * time.Second,
		MinDrainDuration:      10 * time.Second,
		KubeAPIQPS:            50,
		KubeAPIBurst:          100,

		OIDCUsernameClaim:        "sub",
		OIDCReservedNamePrefixes: []string{"system:"},
		OIDCSigningAlgs:          []string{"RS256"},
	}
}

// AddFlags binds the options to flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.CertFile, "cert", o.CertFile, "Serving certificate file; re-read when it changes.")
	fs.StringVar(&o.KeyFile, "key", o.KeyFile, "Serving key file.")
	fs.StringVar(&o.ClientCAFile, "client-ca", o.ClientCAFile, "The cluster-proxy CA bundle: only callers presenting a client certificate one of its CAs issued may use the service-proxy; re-read when it changes.")
	fs.StringVar(&o.AdditionalServiceCAFile, "additional-service-ca", o.AdditionalServiceCAFile, "Additional CA certificates trusted for Service targets (a missing file is ignored).")
	fs.StringVar(&o.BindAddress, "bind-address", o.BindAddress, "Address the HTTPS server listens on.")
	fs.StringVar(&o.HealthBindAddress, "health-bind-address", o.HealthBindAddress, "Address of /healthz and /readyz.")
	fs.StringVar(&o.MetricsBindAddress, "metrics-bind-address", o.MetricsBindAddress, "Address of /metrics (Prometheus, plain HTTP); 0 disables it.")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to the managed cluster kubeconfig; empty means in-cluster (or $KUBECONFIG).")
	fs.StringVar(&o.HubKubeconfig, "hub-kubeconfig", o.HubKubeconfig, "Path to the hub kubeconfig, for authenticating hub tokens (needed with --enable-impersonation).")
	fs.BoolVar(&o.EnableImpersonation, "enable-impersonation", o.EnableImpersonation, "Authenticate hub tokens and forward their requests impersonating the hub user (hub service accounts as cluster:hub:<name>).")
	fs.DurationVar(&o.TokenReviewCacheTTL, "token-review-cache-ttl", o.TokenReviewCacheTTL, "How long token review results are cached; 0 disables the cache.")
	fs.IntVar(&o.MaxIdleConns, "max-idle-conns", o.MaxIdleConns, "Idle connections the outbound transport keeps.")
	fs.DurationVar(&o.IdleConnTimeout, "idle-conn-timeout", o.IdleConnTimeout, "How long an idle outbound connection is kept.")
	fs.DurationVar(&o.TLSHandshakeTimeout, "tls-handshake-timeout", o.TLSHandshakeTimeout, "Outbound TLS handshake timeout.")
	fs.DurationVar(&o.ExpectContinueTimeout, "expect-continue-timeout", o.ExpectContinueTimeout, "Outbound Expect: 100-continue timeout.")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", o.DrainTimeout, "How long open requests may take to finish at shutdown.")
	fs.DurationVar(&o.MinDrainDuration, "min-drain-duration", o.MinDrainDuration, "How long the service-proxy reports not ready before it stops accepting requests.")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "QPS of the TokenReview clients.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Burst of the TokenReview clients.")

	fs.StringVar(&o.OIDCIssuerURL, "oidc-issuer-url", o.OIDCIssuerURL, "The https URL of an OpenID Connect issuer whose ID tokens are accepted (after the managed and the hub TokenReview), their requests forwarded impersonating the user. Needs --oidc-client-id.")
	fs.StringVar(&o.OIDCClientID, "oidc-client-id", o.OIDCClientID, "The client ID the ID tokens must be issued for (their audience).")
	fs.StringVar(&o.OIDCUsernameClaim, "oidc-username-claim", o.OIDCUsernameClaim, "The claim that holds the user name. For \"email\", email_verified must not be false.")
	fs.StringVar(&o.OIDCUsernamePrefix, "oidc-username-prefix", o.OIDCUsernamePrefix, "Prefix of every OIDC user name. Empty: \"<issuer URL>#\", except for the email claim; \"-\": no prefix.")
	fs.StringVar(&o.OIDCGroupsClaim, "oidc-groups-claim", o.OIDCGroupsClaim, "The claim that holds the groups (a string or a list of strings); empty: no groups.")
	fs.StringVar(&o.OIDCGroupsPrefix, "oidc-groups-prefix", o.OIDCGroupsPrefix, "Prefix of every OIDC group.")
	fs.StringSliceVar(&o.OIDCReservedNamePrefixes, "oidc-reserved-name-prefixes", o.OIDCReservedNamePrefixes, "Tokens whose (prefixed) user name or a group starts with one of these are refused; an empty list turns the check off.")
	fs.StringVar(&o.OIDCCAConfigMap, "oidc-ca-configmap", o.OIDCCAConfigMap, "ConfigMap in $POD_NAMESPACE whose key ca.crt (data or binaryData) is the issuer's CA, reloaded when it changes; until it is usable, OIDC tokens are refused. Empty: the host's root CAs.")
	fs.StringSliceVar(&o.OIDCSigningAlgs, "oidc-signing-algs", o.OIDCSigningAlgs, "Signature algorithms ID tokens may use: "+strings.Join(oidc.AllValidSigningAlgorithms(), ", ")+".")
	fs.Var(cliflag.NewMapStringStringNoSplit(&o.OIDCRequiredClaims), "oidc-required-claim", "A claim=value every ID token must carry (a string claim); repeat the flag for more claims.")
}

// Complete fills in the pod namespace from the environment.
func (o *Options) Complete() error {
	if o.PodNamespace == "" {
		o.PodNamespace = command.PodNamespace()
	}
	return nil
}

// Validate reports every invalid option, each naming its flag.
func (o *Options) Validate() error {
	var errs []error
	for flag, v := range map[string]string{"--cert": o.CertFile, "--key": o.KeyFile, "--client-ca": o.ClientCAFile} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", flag))
		}
	}
	if o.EnableImpersonation && o.HubKubeconfig == "" {
		errs = append(errs, errors.New("--enable-impersonation needs --hub-kubeconfig to authenticate hub tokens"))
	}
	for flag, addr := range map[string]string{"--bind-address": o.BindAddress, "--health-bind-address": o.HealthBindAddress} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("invalid %s %q: %w", flag, addr, err))
		}
	}
	if err := command.ValidateMetricsAddress("--metrics-bind-address", o.MetricsBindAddress); err != nil {
		errs = append(errs, err)
	}
	for flag, d := range map[string]time.Duration{
		"--token-review-cache-ttl": o.TokenReviewCacheTTL, "--idle-conn-timeout": o.IdleConnTimeout,
		"--tls-handshake-timeout": o.TLSHandshakeTimeout, "--expect-continue-timeout": o.ExpectContinueTimeout,
		"--drain-timeout": o.DrainTimeout, "--min-drain-duration": o.MinDrainDuration,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("invalid %s %s: must not be negative", flag, d))
		}
	}
	if o.MaxIdleConns < 0 {
		errs = append(errs, fmt.Errorf("invalid --max-idle-conns %d: must not be negative", o.MaxIdleConns))
	}
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst <= 0 {
		errs = append(errs, fmt.Errorf("invalid --kube-api-qps %v / --kube-api-burst %d: both must be positive", o.KubeAPIQPS, o.KubeAPIBurst))
	}
	errs = append(errs, o.validateOIDC()...)
	if klog.V(maxVerbosity + 1).Enabled() {
		errs = append(errs, fmt.Errorf("--v above %d is refused: client-go logs request bodies from --v=8 on, and the service-proxy's TokenReview bodies carry the callers' bearer tokens, which must never reach a log", maxVerbosity))
	}
	return errors.Join(errs...)
}

// validateOIDC checks the --oidc-* flags, each problem naming its flag; with
// no issuer, OIDC is off and only --oidc-client-id is checked.
func (o *Options) validateOIDC() []error {
	if o.OIDCIssuerURL == "" {
		if o.OIDCClientID != "" {
			return []error{errors.New("--oidc-client-id needs --oidc-issuer-url: set both or neither")}
		}
		return nil
	}
	var errs []error
	if o.OIDCClientID == "" {
		errs = append(errs, errors.New("--oidc-issuer-url needs --oidc-client-id: set both or neither"))
	}
	if u, err := url.Parse(o.OIDCIssuerURL); err != nil {
		errs = append(errs, fmt.Errorf("invalid --oidc-issuer-url %q: %w", o.OIDCIssuerURL, err))
	} else if u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("invalid --oidc-issuer-url %q: must be an https URL with a host and no user, query or fragment", o.OIDCIssuerURL))
	}
	if o.OIDCUsernameClaim == "" {
		errs = append(errs, errors.New("--oidc-username-claim must not be empty"))
	}
	for i, prefix := range o.OIDCReservedNamePrefixes {
		if prefix == "" {
			errs = append(errs, fmt.Errorf("invalid --oidc-reserved-name-prefixes: element %d is empty (pass an empty list to turn the check off)", i+1))
		}
	}
	if len(o.OIDCSigningAlgs) == 0 {
		errs = append(errs, errors.New("--oidc-signing-algs must not be empty"))
	}
	for _, alg := range o.OIDCSigningAlgs {
		if !slices.Contains(oidc.AllValidSigningAlgorithms(), alg) {
			errs = append(errs, fmt.Errorf("invalid --oidc-signing-algs %q: supported are %s", alg, strings.Join(oidc.AllValidSigningAlgorithms(), ", ")))
		}
	}
	for claim := range o.OIDCRequiredClaims {
		if claim == "" {
			errs = append(errs, errors.New("invalid --oidc-required-claim: the claim name is empty (expected claim=value)"))
		}
	}
	if o.OIDCCAConfigMap != "" {
		for _, msg := range validation.IsDNS1123Subdomain(o.OIDCCAConfigMap) {
			errs = append(errs, fmt.Errorf("invalid --oidc-ca-configmap %q: %s", o.OIDCCAConfigMap, msg))
		}
		if o.PodNamespace == "" {
			errs = append(errs, fmt.Errorf("--oidc-ca-configmap needs the environment variable %s (the ConfigMap's namespace)", command.PodNamespaceEnv))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	// What the flags cannot show on their own, the JWT authenticator's
	// validation finds.
	config := o.oidcConfig()
	if err := config.Validate(); err != nil {
		return []error{fmt.Errorf("invalid --oidc-* flags: %w", err)}
	}
	return nil
}

// oidcConfig is the OIDC provider's configuration from the flags.
func (o *Options) oidcConfig() authn.OIDCConfig {
	return authn.OIDCConfig{
		IssuerURL:            o.OIDCIssuerURL,
		ClientID:             o.OIDCClientID,
		UsernameClaim:        o.OIDCUsernameClaim,
		UsernamePrefix:       o.OIDCUsernamePrefix,
		GroupsClaim:          o.OIDCGroupsClaim,
		GroupsPrefix:         o.OIDCGroupsPrefix,
		ReservedNamePrefixes: o.OIDCReservedNamePrefixes,
		SigningAlgs:          o.OIDCSigningAlgs,
		RequiredClaims:       o.OIDCRequiredClaims,
	}
}

// Log writes the effective options.
func (o *Options) Log(log logr.Logger) {
	log.Info("service-proxy options",
		"cert", o.CertFile, "key", o.KeyFile, "clientCA", o.ClientCAFile, "additionalServiceCA", o.AdditionalServiceCAFile,
		"bindAddress", o.BindAddress, "healthBindAddress", o.HealthBindAddress, "metricsBindAddress", o.MetricsBindAddress,
		"kubeconfig", o.Kubeconfig, "hubKubeconfig", o.HubKubeconfig, "enableImpersonation", o.EnableImpersonation,
		"tokenReviewCacheTTL", o.TokenReviewCacheTTL, "maxIdleConns", o.MaxIdleConns, "idleConnTimeout", o.IdleConnTimeout,
		"tlsHandshakeTimeout", o.TLSHandshakeTimeout, "expectContinueTimeout", o.ExpectContinueTimeout,
		"drainTimeout", o.DrainTimeout, "minDrainDuration", o.MinDrainDuration,
		"kubeAPIQPS", o.KubeAPIQPS, "kubeAPIBurst", o.KubeAPIBurst,
		"podNamespace", o.PodNamespace,
		"oidcIssuerURL", o.OIDCIssuerURL, "oidcClientID", o.OIDCClientID,
		"oidcUsernameClaim", o.OIDCUsernameClaim, "oidcUsernamePrefix", o.OIDCUsernamePrefix,
		"oidcGroupsClaim", o.OIDCGroupsClaim, "oidcGroupsPrefix", o.OIDCGroupsPrefix,
		"oidcReservedNamePrefixes", o.OIDCReservedNamePrefixes, "oidcSigningAlgs", o.OIDCSigningAlgs,
		"oidcRequiredClaims", requiredClaims(o.OIDCRequiredClaims), "oidcCAConfigMap", o.OIDCCAConfigMap)
}

// requiredClaims lists claim=value pairs in claim order.
func requiredClaims(m map[string]string) []string {
	pairs := make([]string, 0, len(m))
	for claim, value := range m {
		pairs = append(pairs, claim+"="+value)
	}
	sort.Strings(pairs)
	return pairs
}

// Run serves until ctx is done, then drains. The options must be validated.
func Run(ctx context.Context, o *Options) error {
	log := klog.FromContext(ctx)
	// The authenticators' background work (OIDC discovery and key fetching,
	// the CA ConfigMap's informer) and the TLS profile's watch last until
	// the drain is over.
	authnCtx, stopAuthn := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAuthn()
	server, err := o.newServer(authnCtx)
	if err != nil {
		return err
	}
	serving, err := tlsfiles.NewKeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return fmt.Errorf("failed to load --cert and --key: %w", err)
	}
	clientCAs, err := tlsfiles.NewPool(o.ClientCAFile)
	if err != nil {
		return fmt.Errorf("failed to load --client-ca: %w", err)
	}
	tlsProfile, err := o.watchTLSProfile(authnCtx, ctx)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil // stopped before serving
	}
	https := &http.Server{
		Addr: o.BindAddress,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			server.ServeHTTP(w, r.WithContext(klog.NewContext(r.Context(), log)))
		}),
		TLSConfig:         servingTLSConfig(authnCtx, serving, clientCAs, tlsProfile),
		ReadHeaderTimeout: 32 * time.Second,
		MaxHeaderBytes:    1 << 20,
	}
	// Metrics are served until the drain is over.
	metrics, err := command.ServeMetrics(ctx, o.MetricsBindAddress, server.Metrics.Collectors()...)
	if err != nil {
		return fmt.Errorf("failed to serve --metrics-bind-address %s: %w", o.MetricsBindAddress, err)
	}
	defer metrics.Stop()
	listener, err := net.Listen("tcp", o.BindAddress)
	if err != nil {
		return fmt.Errorf("failed to listen on --bind-address %s: %w", o.BindAddress, err)
	}
	return httpserve.Serve(ctx, https, listener, o.HealthBindAddress, httpserve.Drain{MinDuration: o.MinDrainDuration, Timeout: o.DrainTimeout})
}

// newServer builds the handler: the kube-apiserver target, the transports
// and the authentication chain, whose background work (OIDC) runs until ctx
// is done.
func (o *Options) newServer(ctx context.Context) (*Server, error) {
	managed, err := kubeconfig.Load(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	managed.QPS, managed.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	kubeURL, err := url.Parse(managed.Host)
	if err != nil || kubeURL.Host == "" {
		return nil, fmt.Errorf("the managed cluster's configuration has no usable host %q", managed.Host)
	}
	if kubeURL.Scheme == "" {
		kubeURL.Scheme = "https"
	}
	anonymousTLS, err := rest.TLSConfigFor(rest.AnonymousClientConfig(managed))
	if err != nil {
		return nil, fmt.Errorf("failed to build the TLS configuration for the kube-apiserver: %w", err)
	}
	ownTLS, err := rest.TLSConfigFor(managed)
	if err != nil {
		return nil, fmt.Errorf("failed to build the TLS configuration for the kube-apiserver: %w", err)
	}
	own, err := rest.HTTPWrappersForConfig(managed, o.transport(ownTLS))
	if err != nil {
		return nil, fmt.Errorf("failed to build the service-proxy's own kube-apiserver transport: %w", err)
	}

	// Services are trusted with the cluster's CA plus the additional CA.
	serviceTLS := &tls.Config{MinVersion: tls.VersionTLS12}
	if anonymousTLS != nil && anonymousTLS.RootCAs != nil {
		serviceTLS.RootCAs = anonymousTLS.RootCAs.Clone()
	}
	if o.AdditionalServiceCAFile != "" {
		data, err := os.ReadFile(o.AdditionalServiceCAFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// Tolerated: the ConfigMap behind the file is optional.
		case err != nil:
			return nil, fmt.Errorf("failed to read --additional-service-ca %s: %w", o.AdditionalServiceCAFile, err)
		default:
			if serviceTLS.RootCAs == nil {
				serviceTLS.RootCAs = x509.NewCertPool()
			}
			if !serviceTLS.RootCAs.AppendCertsFromPEM(data) {
				return nil, fmt.Errorf("--additional-service-ca %s holds no PEM certificate", o.AdditionalServiceCAFile)
			}
		}
	}

	s := &Server{
		KubeAPIServer: kubeURL,
		Anonymous:     o.transport(anonymousTLS),
		Own:           own,
		Services:      o.transport(serviceTLS),
	}
	s.Authn, err = o.newChain(ctx, managed)
	if err != nil {
		return nil, err
	}
	providers := make([]string, 0, len(s.Authn))
	for _, p := range s.Authn {
		providers = append(providers, p.Name)
	}
	s.Metrics = NewMetrics(providers)
	return s, nil
}

// newChain builds the authentication chain: none when neither hub
// authentication nor OIDC is on (tokens then go through unchanged);
// otherwise the managed TokenReview, then the hub's (impersonating hub
// users), then OIDC (impersonating its users, names as the flags map them).
func (o *Options) newChain(ctx context.Context, managed *rest.Config) (authn.Chain, error) {
	if !o.EnableImpersonation && o.OIDCIssuerURL == "" {
		return nil, nil
	}
	managedClient, err := kubernetes.NewForConfig(managed)
	if err != nil {
		return nil, fmt.Errorf("failed to create the managed cluster client: %w", err)
	}
	chain := authn.Chain{
		{Name: "managed", Token: authn.Cached(&authn.TokenReview{Client: managedClient.AuthenticationV1().TokenReviews()}, o.TokenReviewCacheTTL)},
	}
	if o.EnableImpersonation {
		hubConfig, err := kubeconfig.Load(o.HubKubeconfig)
		if err != nil {
			return nil, err
		}
		hubConfig.QPS, hubConfig.Burst = o.KubeAPIQPS, o.KubeAPIBurst
		hubClient, err := kubernetes.NewForConfig(hubConfig)
		if err != nil {
			return nil, fmt.Errorf("failed to create the hub client: %w", err)
		}
		chain = append(chain, &authn.Provider{Name: "hub", Token: authn.Cached(&authn.TokenReview{Client: hubClient.AuthenticationV1().TokenReviews()}, o.TokenReviewCacheTTL), Impersonate: true, MapUser: authn.HubUser})
	}
	if o.OIDCIssuerURL != "" {
		provider, err := authn.NewOIDC(o.oidcConfig())
		if err != nil {
			return nil, err
		}
		if o.OIDCCAConfigMap == "" {
			if err := provider.UseCA(ctx, nil); err != nil {
				return nil, err
			}
		} else {
			go func() {
				if err := authn.WatchOIDCCA(ctx, managedClient, o.PodNamespace, o.OIDCCAConfigMap, provider); err != nil {
					klog.FromContext(ctx).Error(err, "OIDC tokens are refused: the CA ConfigMap cannot be watched")
				}
			}()
		}
		// Not cached: ID tokens are verified locally, and a cached success
		// would outlive the token's expiry.
		chain = append(chain, &authn.Provider{Name: "oidc", Token: provider, Impersonate: true})
	}
	return chain, nil
}

// transport is the outbound transport: HTTP/1.1 only, so SPDY and WebSocket
// upgrades (exec, attach, port-forward) pass through.
func (o *Options) transport(tlsConfig *tls.Config) *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		MaxIdleConns:          o.MaxIdleConns,
		MaxIdleConnsPerHost:   o.MaxIdleConns,
		IdleConnTimeout:       o.IdleConnTimeout,
		TLSHandshakeTimeout:   o.TLSHandshakeTimeout,
		ExpectContinueTimeout: o.ExpectContinueTimeout,
		ForceAttemptHTTP2:     false,
		TLSNextProto:          map[string]func(string, *tls.Conn) http.RoundTripper{},
	}
}
